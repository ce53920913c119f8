"""Recommendations for an anonymous session: the items a visitor viewed or carted, in order.

No customer id, so no history: the answer is item-based only. Each session item's row of the
bundle's item x item matrix (the cross-sell model's, chosen on held-out basket completion, when
it is item-based; else the similar-items model's item kNN) is weighted by recency in the list,
`0.5 ** (places from the end / SESSION_HALF_LIFE)`: the last item weighs 1, the one
`SESSION_HALF_LIFE` places before it 0.5. An item listed twice adds both weights. The session's
own items never come back; unavailable items never appear; places left over are filled with
trending items. A session of only unknown items gets trending items (strategy `trending`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from models.recommenders.base import ItemRowsRecommender, weighted_rows_sum

if TYPE_CHECKING:
    from models.recommenders.bundle import Recommendation, RecommenderBundle

SESSION_HALF_LIFE = 3.0
"""Places in the session list after which an item's weight halves."""

SESSION_STRATEGY = "session_item_based"
"""The strategy an answer from the session's items names."""


@dataclass(frozen=True)
class SessionAnswer:
    """The recommendation and the session's item ids the bundle does not know (in order)."""

    recommendation: Recommendation
    unknown_items: list[str]


def recency_weights(n: int) -> np.ndarray:
    """float32 weight of each of `n` places, oldest first: the last weighs 1."""
    places_from_end = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, places_from_end / SESSION_HALF_LIFE).astype(np.float32)


def session_recommendation(
    bundle: RecommenderBundle, item_ids: Sequence[str], k: int = 10
) -> SessionAnswer:
    """Top-k items for a session of `item_ids` (viewed or carted, oldest first)."""
    positions = [bundle._column(item) for item in item_ids]
    unknown = [str(item) for item, column in zip(item_ids, positions, strict=True) if column < 0]
    weights = recency_weights(len(item_ids))
    known = np.array([column >= 0 for column in positions], dtype=bool)
    columns = np.array(positions, dtype=np.int64)[known]
    if len(columns) == 0:
        return SessionAnswer(bundle._cold(k, None, note="empty or unknown session"), unknown)
    session, place = np.unique(columns, return_inverse=True)
    summed = np.zeros(len(session), dtype=np.float32)
    np.add.at(summed, place, weights[known])
    scored, scores = _item_scores(bundle, session, summed)
    items, values = bundle._top_of_row(bundle._filler, scored, scores, session, k)
    answer = bundle._answer(items, values, "cross_sell", k)
    return SessionAnswer(replace(answer, strategy=SESSION_STRATEGY), unknown)


def _item_scores(
    bundle: RecommenderBundle, session: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`weights @ M[session]` of the item x item matrix M as (sorted columns, float32 scores)."""
    for role in ("cross_sell", "similar"):
        model = bundle.basket_model(role)
        if isinstance(model, ItemRowsRecommender):
            return weighted_rows_sum(model._item_matrix(), session, weights)
    similar = np.asarray(
        bundle.basket_model("similar")._similarity_scores(session), dtype=np.float32
    )
    return np.arange(similar.shape[1]), (weights[:, None] * similar).sum(axis=0)
