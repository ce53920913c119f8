"""Cross-sell selection: leave-one-out on validation-window orders (hide one item of a basket,
score the rest as an anonymous basket) over the cross-sell candidates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recommenders.base import Recommender
from models.recommenders.candidates import (
    CROSS_SELL_CANDIDATES,
    DEFAULT_CROSS_SELL,
    CandidateSpec,
)
from models.recommenders.evaluation import metrics_from_columns
from models.recommenders.validation import K, ValidationData, rounded

MAX_BASKETS = 2_000
"""At most this many validation orders are held out (a seeded sample)."""
BASKET_SIZES = (2, 30)
"""Orders with this many distinct known items (inclusive) are held out."""


def _held_out_baskets(
    data: ValidationData, seed: int
) -> tuple[sp.csr_matrix, dict[int, set[int]]] | None:
    """(baskets x items: the rest of each sampled order, the hidden item of each), or None
    when the window holds no order of two or more known items."""
    window = data.window_lines
    cols = pd.Index(data.item_ids).get_indexer(window["item_id"].astype(str))
    lines = pd.DataFrame({"order": window["order_id"].astype(str).to_numpy(), "col": cols})
    lines = lines.loc[lines["col"] >= 0].drop_duplicates()
    sizes = lines.groupby("order")["col"].transform("size")
    lines = lines.loc[(sizes >= BASKET_SIZES[0]) & (sizes <= BASKET_SIZES[1])]
    rng = np.random.default_rng(seed)
    orders = lines["order"].unique()
    if len(orders) == 0:
        return None
    orders = rng.choice(orders, size=min(MAX_BASKETS, len(orders)), replace=False)
    lines = lines.loc[lines["order"].isin(orders)].sample(frac=1.0, random_state=seed)
    hidden = lines.drop_duplicates("order")
    rest = lines.drop(hidden.index)
    order_index = pd.Index(hidden["order"])
    basket = sp.csr_matrix(
        (
            np.ones(len(rest), dtype=np.float32),
            (order_index.get_indexer(rest["order"]), rest["col"].to_numpy()),
        ),
        shape=(len(hidden), len(data.item_ids)),
    )
    return basket, {i: {int(c)} for i, c in enumerate(hidden["col"].to_numpy())}


def select_cross_sell(
    data: ValidationData, seed: int
) -> tuple[CandidateSpec, Recommender, dict[str, Any]]:
    """The cross-sell candidate with the best leave-one-out NDCG@K (the larger name on ties),
    that candidate as fitted at the validation cut, and the report of every candidate's
    metrics."""
    held_out = _held_out_baskets(data, seed)
    if held_out is None:
        reason = "no multi-item orders in the window; default kept"
        model = DEFAULT_CROSS_SELL.make().fit(
            data.matrix(DEFAULT_CROSS_SELL.half_life), data.co_purchase
        )
        return DEFAULT_CROSS_SELL, model, {"reason": reason}
    basket, relevant = held_out
    results: dict[str, dict[str, float]] = {}
    models: dict[str, Recommender] = {}
    for candidate in CROSS_SELL_CANDIDATES:
        model = candidate.make().fit(data.matrix(candidate.half_life), data.co_purchase)
        items, _ = model.recommend(np.full(basket.shape[0], -1), basket, k=K, exclude=basket)
        results[candidate.name] = rounded(metrics_from_columns(items, relevant, K))
        models[candidate.name] = model
    winner = max(CROSS_SELL_CANDIDATES, key=lambda c: (results[c.name]["ndcg"], c.name))
    return (
        winner,
        models[winner.name],
        {
            "winner": winner.name,
            "baskets": basket.shape[0],
            "candidates": results,
            "reason": f"best leave-one-out NDCG@{K} on validation-window orders",
        },
    )
