"""A customer's history row with what they did since the model's data folded in.

Serving scores a customer who posted events since training from this row instead of the one in
the bundle (`RecommenderBundle.recommend_for`): each item bought since adds `PURCHASE_WEIGHT`
to its cell, as one order line of quantity 1 bought at `as_of` adds to the confidence matrix
(`features.interactions`: recency weight 1, 1 + ln 1 = 1); each view or cart adds its weight
of `INTERACTION_WEIGHTS`, a fraction of a purchase. Those fractions are a judgement, not a fit:
training never sees views or carts (the shop's files hold none), so no backtest chose them;
docs/serving.md says so.

`with_next_need` adds what goes with the items just bought: the cross-sell model's answer for
them as a basket, weighted by the serving setting `PATRONAGE_NEXT_NEED_WEIGHT`. The champion's
blend was chosen for the next purchase of a customer with months of history, where one order
moves little; a purchase minutes ago says more about the next need than that (the complementary
pairs a shop plants or has), and the cross-sell model was chosen on exactly that: completing a
basket from the rest of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from models.recommenders.base import row_normalise

PURCHASE_WEIGHT = 1.0
"""What an item bought since `as_of` adds to the customer's confidence for it."""

INTERACTION_WEIGHTS: Mapping[str, float] = {"view": 0.1, "cart": 0.3}
"""What one view or one cart of an item adds, as a fraction of a purchase: a cart is a stronger
sign of intent than a view, both weaker than buying."""


def fresh_cells(
    n_items: int, bought: np.ndarray, interacted: np.ndarray, kinds: list[str]
) -> sp.csr_matrix:
    """A (1, n_items) float32 row: `PURCHASE_WEIGHT` per item column in `bought` (repeats add
    up) plus the weight of each interaction (`interacted` columns, `kinds` aligned with them).
    Raises ValueError for a kind without a weight."""
    unknown = sorted(set(kinds) - set(INTERACTION_WEIGHTS))
    if unknown:
        raise ValueError(
            f"no weight for interaction kind(s) {', '.join(unknown)}; "
            f"known: {', '.join(INTERACTION_WEIGHTS)}"
        )
    columns = np.concatenate([np.asarray(bought, np.int64), np.asarray(interacted, np.int64)])
    weights = np.concatenate(
        [
            np.full(len(bought), PURCHASE_WEIGHT, dtype=np.float32),
            np.array([INTERACTION_WEIGHTS[kind] for kind in kinds], dtype=np.float32),
        ]
    )
    row = sp.csr_matrix(
        (weights, (np.zeros(len(columns), dtype=np.int64), columns)), shape=(1, n_items)
    )
    row.sum_duplicates()
    return row


def with_next_need(
    scores: np.ndarray, columns: np.ndarray, basket_scores: np.ndarray, weight: float
) -> np.ndarray:
    """One customer's (1, n_items) scores plus `weight` times the basket scores of the items
    just bought (`columns`, `basket_scores`: the cross-sell model's sparse answer), each row
    divided by its largest absolute value first so that the weight means the same for every
    model. `weight` 0 returns `scores` unchanged."""
    if weight <= 0 or len(columns) == 0:
        return scores
    dense = np.zeros((1, scores.shape[1]), dtype=np.float32)
    dense[0, columns] = basket_scores
    return row_normalise(scores) + np.float32(weight) * row_normalise(dense)
