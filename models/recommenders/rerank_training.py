"""Re-ranker trials: train a re-ranker one window earlier, judge it against the blend on the
validation window, and when it wins there, retrain its classifier on the latest window."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.attributes import customer_attributes
from features.interactions import InteractionsBuilder, co_purchase_counts, purchase_counts
from features.shop import Shop
from models.recommenders.base import Recommender
from models.recommenders.candidates import CandidateSpec
from models.recommenders.rerank import HISTORY_HALF_LIFE, RerankRecommender
from models.recommenders.rules import repeat_purchase_rates
from models.recommenders.validation import (
    K,
    ValidationData,
    purchases_between,
    rows_of,
    score_block,
)
from models.recommenders.winners import WinnerSpec

RERANK_MEMBERS = 5
"""A re-ranker reads the best candidate of each of this many best model families."""


def rerank_members(
    fitted: list[CandidateSpec], report: dict[str, Any], protocol: str
) -> list[CandidateSpec]:
    """The best candidate of each of the `RERANK_MEMBERS` best model families on `protocol`."""
    ranked = sorted(fitted, key=lambda c: -report["candidates"][c.name][protocol]["ndcg"])
    members: list[CandidateSpec] = []
    for candidate in ranked:
        if candidate.family not in {m.family for m in members}:
            members.append(candidate)
        if len(members) == RERANK_MEMBERS:
            break
    return members


def rerank_cost(
    data: ValidationData,
    specs: dict[str, CandidateSpec],
    report: dict[str, Any],
    protocol: str,
) -> float:
    """Seconds a re-ranker trial is expected to take: members fitted twice more, their
    matrices built again, and two classifier fits (a generous guess, so the budget holds)."""
    members = rerank_members([specs[n] for n in report["candidates"]], report, protocol)
    fits = sum(report["candidates"][m.name]["fit_seconds"] for m in members)
    return 2.0 * fits + 2 * data.prepare_seconds + (len(members) + 3) * data.build_seconds + 30.0


def window_labels(
    shop: Shop,
    start: pd.Timestamp,
    end: pd.Timestamp,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
) -> sp.csr_matrix:
    """Binary customers x items: 1 when the customer bought the item in [start, end)."""
    window = purchases_between(shop, start, end)
    rows = pd.Index(customer_ids).get_indexer(window["customer_id"].astype(str))
    cols = pd.Index(item_ids).get_indexer(window["item_id"].astype(str))
    known = (rows >= 0) & (cols >= 0)
    labels = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=(len(customer_ids), len(item_ids)),
    )
    labels.sum_duplicates()
    labels.data[:] = 1.0
    return labels


def _earlier_classifier(
    data: ValidationData, members: list[CandidateSpec], exclude_seen: bool, seed: int
) -> Any:
    """The classifier of a re-ranker whose members and history end one window before the
    validation cut, trained on the purchases of the window between."""
    earlier_cut = data.cut - pd.Timedelta(days=data.window_days)
    shop_before = data.shop.before(data.cut)
    builder = InteractionsBuilder(shop_before, earlier_cut, item_ids=data.item_ids)
    co_purchase = co_purchase_counts(shop_before, earlier_cut, data.item_ids)
    attributes = customer_attributes(shop_before, builder.customer_ids)
    fitted = []
    for member in members:
        days = None if member.half_life is None else member.half_life * data.window_days
        fitted.append(
            member.make().fit(builder.build(days), co_purchase, data.item_categories, attributes)
        )
    history = builder.build(HISTORY_HALF_LIFE * data.window_days)
    counts = purchase_counts(shop_before, earlier_cut, data.item_ids)
    labels = window_labels(data.shop, earlier_cut, data.cut, history.customer_ids, data.item_ids)
    reranker = RerankRecommender(
        fitted, [m.name for m in members], exclude_seen=exclude_seen, random_state=seed
    )
    reranker.fit(
        history,
        labels=labels,
        repeat_rates=repeat_purchase_rates(rows_of(counts, history.customer_ids)),
    )
    return reranker.classifier_


def _winning_reason(overall: float, blend_why: dict[str, Any]) -> str:
    return (
        f"re-ranker validation NDCG@{K} {overall:.4f} beats the blend "
        f"{blend_why['validation_ndcg']:.4f} on both halves of the validation customers "
        f"(best popularity/trending {blend_why['best_baseline']} "
        f"{blend_why['baseline_ndcg']:.4f})"
    )


def try_reranker(
    data: ValidationData,
    fitted: dict[str, Recommender],
    specs: dict[str, CandidateSpec],
    protocol: str,
    report: dict[str, Any],
    blend_why: dict[str, Any],
    seed: int,
) -> tuple[WinnerSpec, Any, dict[str, Any], RerankRecommender, np.ndarray] | None:
    """Train a re-ranker one window earlier, judge it on the validation window; when it beats
    the blend there (on both halves), retrain its classifier on the validation window.

    Returns the winner, the classifier to serve it with, why, the re-ranker as judged (the
    members at the validation cut, the classifier of the window before: it never saw the
    validation window) and its validation score block (over `data.eval_rows`); None when the
    blend stays (`report["rerank"][protocol]` says why)."""
    members = rerank_members([specs[n] for n in fitted], report, protocol)
    names = [m.name for m in members]
    exclude_seen = protocol == "discovery"
    entry: dict[str, Any] = {"members": names}
    report.setdefault("rerank", {})[protocol] = entry
    try:
        started = time.perf_counter()
        classifier = _earlier_classifier(data, members, exclude_seen, seed)
        # The same classifier on validation-time members and history.
        history = data.matrix(HISTORY_HALF_LIFE)
        rates = repeat_purchase_rates(data.bought)
        judged = RerankRecommender(
            [fitted[n] for n in names],
            names,
            exclude_seen=exclude_seen,
            random_state=seed,
            classifier=classifier,
        ).fit(history, repeat_rates=rates)
        scores = score_block(judged, data, history)
        halves = [data.ndcg(scores, protocol, h)["ndcg"] for h in data.halves]
        overall = data.ndcg(scores, protocol)["ndcg"]
        entry.update(
            validation_ndcg=round(overall, 5),
            validation_halves=[round(h, 5) for h in halves],
            blend_validation_ndcg=blend_why["validation_ndcg"],
        )
        if not all(r > b for r, b in zip(halves, blend_why["validation_halves"], strict=True)):
            entry["chosen"] = False
            entry["seconds"] = round(time.perf_counter() - started, 2)
            return None
        # Retrain the classifier on the latest window (validation) for serving.
        labels = window_labels(data.shop, data.cut, data.as_of, history.customer_ids, data.item_ids)
        final = RerankRecommender(
            [fitted[n] for n in names], names, exclude_seen=exclude_seen, random_state=seed
        )
        final_classifier = final.fit(history, labels=labels, repeat_rates=rates).classifier_
        entry["chosen"] = True
        entry["seconds"] = round(time.perf_counter() - started, 2)
    except ValueError as error:
        entry["error"] = str(error)
        return None
    winner = WinnerSpec(tuple(members), (1.0,) * len(members), True, exclude_seen)
    why = dict(blend_why)
    why.update(
        validation_ndcg=round(overall, 5),
        validation_halves=[round(h, 5) for h in halves],
        reason=_winning_reason(overall, blend_why),
    )
    return winner, final_classifier, why, judged, scores
