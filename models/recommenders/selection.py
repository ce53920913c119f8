"""Model selection: fit every candidate on a validation window before `as_of` and choose the
personal and cross-sell winners.

The same code runs for every shop; nothing here knows a data set:
1. the validation window is the last W days before `as_of`, with W = `horizon_days` (the
   serving horizon) capped at a quarter of the shop's history, so there is always history to
   learn from; models are fitted on data before `as_of - W` and judged on purchases in
   `[as_of - W, as_of)`, never on anything at or after `as_of` (`validation`); a window with
   fewer than 200 validation customers is widened to 2W or 3W, or replaced by a holdout of
   each customer's last order (`validation_scheme`);
2. candidates (popularity, trending at several half-lives, own-history repeat purchase,
   implicit item kNN, co-purchase, latent taste classes, EASE where the catalog is small,
   implicit ALS and BPR with sampled hyper-parameters) are fitted in a seeded order until the
   time budget is used; the grids are expressed in multiples of W, not in days picked for one
   shop (`candidates`);
3. a greedy blend over the best candidates adds a member only when it improves validation
   NDCG on both halves of the validation customers and by more than one standard error of the
   paired per-customer gain (guards against tuning noise); a shared list starts it only when
   it beats the best personal candidate on both halves (`greedy_blend`); a learned
   re-ranker over the best families replaces it when it does better on both halves
   (`rerank_training`);
4. two protocols are selected separately: "discovery" (items the customer never bought;
   bought items excluded) and "repeat" (all items, repeats allowed); the default
   `exclude_purchased` rule is then learned from the two winners on the same window
   (`default_exclusion`); cross-sell is chosen leave-one-out on the window's baskets
   (`cross_sell`). A protocol with no relevant item on validation (discovery, where customers
   only bought again what they had bought) takes the other's winner (`fallback` in its report);
5. the winners are refitted on all data before `as_of` (`winners.fit_winner`). A winner loses
   to trending on validation at most within noise (trending is itself a candidate, and beats a
   personal start only on both halves); the report records every candidate's validation
   metrics, the validation scheme and why the winner won;
6. with a cross-sell model, each protocol's next-need weight (what goes with a purchase posted
   since training, in that customer's next answer) is chosen on the same window (`next_need`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.interactions import catalog_item_ids
from features.shop import Shop
from models.recommenders.base import Recommender
from models.recommenders.candidates import OWN_ITEM_FAMILIES, CandidateSpec, candidate_specs
from models.recommenders.cross_sell import select_cross_sell
from models.recommenders.default_exclusion import DefaultExclusion, learn_default_exclusion
from models.recommenders.greedy_blend import blend_scores, greedy_blend
from models.recommenders.next_need import choose_next_need_weight, next_need_cases
from models.recommenders.rerank import HISTORY_HALF_LIFE
from models.recommenders.rerank_training import rerank_cost, try_reranker
from models.recommenders.validation import (
    ValidationData,
    rounded,
    score_block,
    validation_window_days,
)
from models.recommenders.validation_scheme import CUSTOMER_HOLDOUT, choose_scheme
from models.recommenders.winners import WinnerSpec, assemble_winner

PROTOCOLS = ("discovery", "repeat")
PERSONAL_BUDGET_SHARE = 0.6
"""Personal candidates start only while this share of the time budget is unused. The budget
is this process's CPU time from the start of the candidate search: building the validation
data (its matrices, co-purchase counts and truths) comes before it, and other programs on the
machine do not use it up (at load 9, in wall-clock seconds, the build took 52 s of a 30 s
budget and the Complete Journey's winners became shared popularity lists; at load 15 only one
personal candidate ran)."""


@dataclass
class SelectionResult:
    """What selection chose and why: validation metrics per candidate and per protocol."""

    window_days: float
    validation_cut: pd.Timestamp
    winners: dict[str, WinnerSpec]
    cross_sell_winner: CandidateSpec | None
    """None when selection was asked for lists only (`SelectionSettings.cross_sell` False)."""
    trending: CandidateSpec
    """The best popularity/trending baseline of the repeat protocol (the bundle's fallback)."""
    report: dict[str, Any] = field(default_factory=dict)
    rankers: dict[str, Any] = field(default_factory=dict)
    """Per protocol whose winner is a re-ranker: the classifier trained on the latest window."""
    next_need_weights: dict[str, float] = field(default_factory=dict)
    """Per protocol, the weight of what goes with a just-bought item in a fresh answer
    (`next_need`); empty when no cross-sell model was chosen (lists only)."""
    default_exclusion: DefaultExclusion = DefaultExclusion("none")
    """The shop's default `exclude_purchased` rule, learned on the validation window."""


@dataclass
class _Fitted:
    """The candidates fitted on the validation window: models and score blocks by name."""

    specs: dict[str, CandidateSpec]
    models: dict[str, Recommender] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)


def _fit_candidates(
    data: ValidationData,
    specs: list[CandidateSpec],
    deadline: Callable[[], bool],
    report: dict[str, Any],
    say: Callable[[str], None],
    keep_one_of_each: bool = True,
) -> _Fitted:
    """Fit and score every candidate in order (a personal one only before the `deadline`,
    except, with `keep_one_of_each`, the first of the own-item families and the first of the
    others, which always run: a slow or busy machine must not leave either protocol with
    shared lists alone, and an own-item model ranks nothing new for discovery); records each
    one's validation metrics, or why it was skipped, in `report`."""
    fitted = _Fitted({spec.name: spec for spec in specs})
    for spec in specs:
        kind = spec.family in OWN_ITEM_FAMILIES
        tried = any(
            fitted.specs[name].personalised
            and (fitted.specs[name].family in OWN_ITEM_FAMILIES) == kind
            for name in fitted.models
        )
        if spec.personalised and (tried or not keep_one_of_each) and deadline():
            report["skipped"].append(spec.name)
            continue
        fit_started = time.perf_counter()
        matrix = data.matrix(spec.half_life)
        try:
            model = spec.make().fit(
                matrix, data.co_purchase, data.item_categories, data.customer_attributes
            )
        except (ValueError, MemoryError) as error:
            report["skipped"].append(f"{spec.name}: {error}")
            continue
        fitted.scores[spec.name] = score_block(model, data, matrix)
        fitted.models[spec.name] = model
        entry: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - fit_started, 3)}
        if getattr(model, "use_customer_attributes", False):
            entry["attributes_used"] = list(getattr(model, "attributes_used_", []))
        for protocol in filter(data.judged, PROTOCOLS):
            entry[protocol] = rounded(data.ndcg(fitted.scores[spec.name], protocol))
        report["candidates"][spec.name] = entry
        figures = ", ".join(
            f"{protocol} ndcg {entry[protocol]['ndcg']:.4f}"
            for protocol in filter(data.judged, PROTOCOLS)
        )
        say(f"  {spec.name}: {figures} ({entry['fit_seconds']} s)")
    return fitted


@dataclass(frozen=True)
class SelectionSettings:
    """How selection searches: its seed, time budget (seconds), the serving horizon W is
    capped to (days), at most how many validation customers are scored, and whether a
    cross-sell model is chosen too (False: personal lists only, as a backtest needs)."""

    seed: int = 0
    time_budget_s: float = 300.0
    horizon_days: float = 90.0
    max_customers: int = 5_000
    cross_sell: bool = True


def select_models(
    shop: Shop,
    as_of: pd.Timestamp,
    settings: SelectionSettings = SelectionSettings(),
    item_ids: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> SelectionResult:
    """Choose the personal and cross-sell models on the validation window before `as_of`.

    Deterministic for given settings (the time budget can only cut the candidate list short).
    Raises ValueError when the window holds no purchases of known customers."""
    started = time.perf_counter()
    seed, time_budget_s = settings.seed, settings.time_budget_s
    say = log or (lambda message: None)
    items = catalog_item_ids(shop) if item_ids is None else item_ids
    window = validation_window_days(shop, as_of, settings.horizon_days)
    scheme = choose_scheme(shop, as_of, window, settings.max_customers, seed)
    data = ValidationData(shop, as_of, window, items, settings.max_customers, seed, scheme)
    if len(data.eval_rows) == 0:
        raise ValueError(
            f"no customer with history bought in the validation window [{data.cut}, {as_of}), "
            "and none has two orders to hold the last one out: pass an earlier-starting shop "
            "or a shorter horizon_days"
        )
    say(f"validation: {scheme.reason}; {len(data.eval_rows)} customers judged from {data.cut}")
    specs = candidate_specs(len(items), seed, bool(data.customer_attributes.names))
    report: dict[str, Any] = {"candidates": {}, "skipped": []}
    report["preparation_seconds"] = round(time.perf_counter() - started, 2)
    search_started = time.process_time()

    def past_deadline() -> bool:
        return time.process_time() - search_started > PERSONAL_BUDGET_SHARE * time_budget_s

    # A budget of 0 asks for the baselines alone; any other budget keeps one of each kind.
    fitted = _fit_candidates(data, specs, past_deadline, report, say, time_budget_s > 0)
    winners: dict[str, WinnerSpec] = {}
    rankers: dict[str, Any] = {}
    judged_rerankers: dict[str, Recommender] = {}
    winner_scores: dict[str, np.ndarray] = {}
    for protocol in filter(data.judged, PROTOCOLS):
        winners[protocol], why = greedy_blend(data, fitted.scores, fitted.specs, protocol, report)
        remaining = time_budget_s - (time.perf_counter() - started)
        outcome = None
        # The re-ranker learns one window before the cut: a holdout has no such window.
        rerank_fits = data.scheme.name != CUSTOMER_HOLDOUT
        if rerank_fits and rerank_cost(data, fitted.specs, report, protocol) < remaining:
            outcome = try_reranker(data, fitted.models, fitted.specs, protocol, report, why, seed)
        if outcome is not None:
            (
                winners[protocol],
                rankers[protocol],
                why,
                judged_rerankers[protocol],
                winner_scores[protocol],
            ) = outcome
        else:
            winner_scores[protocol] = blend_scores(fitted.scores, winners[protocol])
        report[f"{protocol}_winner"] = {"model": winners[protocol].label, **why}
        say(f"{protocol} winner: {winners[protocol].label} ({why['reason']})")
    for protocol in PROTOCOLS:
        if not data.judged(protocol):
            winners[protocol], report[f"{protocol}_winner"] = _unjudged_winner(
                protocol, winners, rankers, judged_rerankers, winner_scores, report
            )
            say(f"{protocol} winner: {winners[protocol].label} (fallback)")
    default = learn_default_exclusion(data, winner_scores["repeat"], winner_scores["discovery"])
    del winner_scores
    report["default_exclusion"] = default.as_report()
    say(f"default exclude_purchased: {default.rule} ({default.reason})")
    cross_sell: CandidateSpec | None = None
    next_need_weights: dict[str, float] = {}
    if settings.cross_sell:
        cross_sell, cross_sell_at_cut, report["cross_sell"] = select_cross_sell(data, seed)
        next_need_weights = _next_need_weights(
            data, winners, fitted, judged_rerankers, cross_sell_at_cut, report, seed, say
        )
    report["validation_window_days"] = round(window, 3)
    report["validation_cut"] = data.cut.isoformat()
    report["validation_customers"] = int(len(data.eval_rows))
    report["validation_scheme"] = scheme.as_report()
    report["selection_seconds"] = round(time.perf_counter() - started, 2)
    trending = fitted.specs[report["repeat_winner"]["best_baseline"]]
    return SelectionResult(
        window, data.cut, winners, cross_sell, trending, report, rankers, next_need_weights, default
    )


def _unjudged_winner(
    protocol: str,
    winners: dict[str, WinnerSpec],
    rankers: dict[str, Any],
    judged_rerankers: dict[str, Recommender],
    winner_scores: dict[str, np.ndarray],
    report: dict[str, Any],
) -> tuple[WinnerSpec, dict[str, Any]]:
    """The winner of a protocol no validation customer has a relevant item for (`discovery`
    when everyone only bought again what they had bought before): the other protocol's
    winner, the model that best predicted what these customers buy, served with this
    protocol's exclusion rule. Copies its ranker, judged model and scores under `protocol`;
    returns the winner and its report entry (`fallback` True, with why)."""
    other = next(p for p in PROTOCOLS if p != protocol and p in winners)
    tables: tuple[dict[str, Any], ...] = (rankers, judged_rerankers, winner_scores)
    for table in tables:
        if other in table:
            table[protocol] = table[other]
    reason = (
        f"no validation customer bought an item relevant to {protocol} (nothing to judge it "
        f"on): the {other} winner {winners[other].label} is used, with {protocol}'s rule"
    )
    entry = {"model": winners[other].label, "fallback": True, "fallback_of": other}
    best_baseline = report[f"{other}_winner"]["best_baseline"]
    return winners[other], entry | {"best_baseline": best_baseline, "reason": reason}


def _next_need_weights(
    data: ValidationData,
    winners: dict[str, WinnerSpec],
    fitted: _Fitted,
    judged_rerankers: dict[str, Recommender],
    cross_sell: Recommender,
    report: dict[str, Any],
    seed: int,
    say: Callable[[str], None],
) -> dict[str, float]:
    """Per protocol, the next-need weight of its winner as fitted at the validation cut (a
    re-ranker with the classifier it was judged with), recorded in `report["next_need"]`."""
    started = time.perf_counter()
    cases = next_need_cases(data, seed)
    weights: dict[str, float] = {}
    entries: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        winner = winners[protocol]
        half_life: float | None
        if protocol in judged_rerankers:
            champion, half_life = judged_rerankers[protocol], HISTORY_HALF_LIFE
        else:
            members = [fitted.models[name] for name in winner.member_names]
            champion, half_life = assemble_winner(winner, members, data.matrix, seed)
        history = data.matrix(half_life).matrix
        weights[protocol], entries[protocol] = choose_next_need_weight(
            data, cases, champion, history, cross_sell, protocol, seed
        )
        say(f"{protocol} next-need weight {weights[protocol]:g} ({entries[protocol]['reason']})")
    report["next_need"] = entries | {"seconds": round(time.perf_counter() - started, 2)}
    return weights
