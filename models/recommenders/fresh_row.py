"""A customer's history row with what they did since the model's data folded in.

Serving scores a customer who posted events since training from this row instead of the one in
the bundle (`RecommenderBundle.recommend_for`): each item bought since adds `PURCHASE_WEIGHT`
to its cell, as one order line of quantity 1 bought at `as_of` adds to the confidence matrix
(`features.interactions`: recency weight 1, 1 + ln 1 = 1); each view or cart adds its weight
of `INTERACTION_WEIGHTS`, a fraction of a purchase. Those fractions are a judgement, not a fit:
training never sees views or carts (the shop's files hold none), so no backtest chose them;
docs/serving.md says so.

`with_next_need` adds what goes with the items just bought: the cross-sell model's answer for
them as a basket, at the weight training chose for the shop on its validation window
(`models.recommenders.next_need`). The champion's blend was chosen for the next purchase of a
customer with months of history, where one order moves little; a purchase minutes ago may say
more about the next need (the complementary pairs a shop plants or has), and the cross-sell
model was chosen on exactly that: completing a basket from the rest of it.

The champion's scores enter that sum by their places, not their values (`rank_scaled`): the
scale of a champion's scores (a repeat-purchase count, a latent-class probability, a blend of
row-normalised members) differs from model to model, and a top ten of nearly equal scores made
one weight mean little for one champion and much for another. On places, a weight means the
same for every champion: what the basket's best item gains, in units of the champion's own
first place.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from models.recommenders.base import row_normalise, top_k

PURCHASE_WEIGHT = 1.0
"""What an item bought since `as_of` adds to the customer's confidence for it."""

INTERACTION_WEIGHTS: Mapping[str, float] = {"view": 0.1, "cart": 0.3}
"""What one view or one cart of an item adds, as a fraction of a purchase: a cart is a stronger
sign of intent than a view, both weaker than buying."""


def fresh_entries(
    bought: np.ndarray, interacted: np.ndarray, kinds: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The fresh cells as (int64 item columns, float32 weights), one entry per event and in
    their order: `PURCHASE_WEIGHT` per column in `bought` (repeats listed again), then the
    weight of each interaction (`interacted` columns, `kinds` aligned with them). Raises
    ValueError for a kind without a weight."""
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
    return columns, weights


def fresh_cells(
    n_items: int, bought: np.ndarray, interacted: np.ndarray, kinds: list[str]
) -> sp.csr_matrix:
    """A (1, n_items) float32 row of `fresh_entries` (repeats add up). Raises ValueError for a
    kind without a weight."""
    columns, weights = fresh_entries(bought, interacted, kinds)
    row = sp.csr_matrix(
        (weights, (np.zeros(len(columns), dtype=np.int64), columns)), shape=(1, n_items)
    )
    row.sum_duplicates()
    return row


def updated_row(
    history: sp.csr_matrix, row: int, columns: np.ndarray, weights: np.ndarray
) -> sp.csr_matrix:
    """One customer's (1, n_items) float32 CSR row: `history[row]` (a row of zeros for -1)
    plus the fresh cells (`fresh_entries`), cells summing to 0 left out.

    The numbers of `history[row] + fresh_cells(...)` cast to float32, bit for bit (the fresh
    weights summed in float32 in their order, then added to the history in its wider type),
    built with numpy and one CSR constructor: SciPy's slicing, sum and casts of one-row
    matrices cost about 1 ms of a 2 ms fresh answer."""
    n_items = history.shape[1]
    wide = np.promote_types(history.dtype, np.float32)
    fresh = np.zeros(n_items, dtype=np.float32)
    np.add.at(fresh, columns, weights)
    total = np.zeros(n_items, dtype=wide)
    if row >= 0:
        start, stop = history.indptr[row], history.indptr[row + 1]
        np.add.at(total, history.indices[start:stop], history.data[start:stop])
    reached = np.unique(columns)
    total[reached] += fresh[reached].astype(wide)
    cells = np.flatnonzero(total)
    return sp.csr_matrix(
        (total[cells].astype(np.float32), cells.astype(np.int32), np.array([0, len(cells)])),
        shape=(1, n_items),
    )


LIST_LENGTH = 10
"""`rank_scaled` gives the champion's r-th place LIST_LENGTH / (LIST_LENGTH + r - 1): 1 for the
first, 0.53 for the tenth, 0.09 for the hundredth. The length of a list as shown (and as
validation judges it, NDCG@10) sets how fast a place loses value; a scale, not a fit."""
RANK_DEPTH = 1000
"""Places are counted exactly for each row's first RANK_DEPTH items (a partial sort: a full one
of 50,000 scores costs about 3 ms); later items keep the champion's order below them."""


def rank_scaled(scores: np.ndarray) -> np.ndarray:
    """(n, n_items) float32 scores replaced by their places in each row: the r-th best of the
    first `RANK_DEPTH` gets `LIST_LENGTH / (LIST_LENGTH + r - 1)` (ties: the lower column first,
    as `top_k`), every later item a value in [0, the last of those) rising with its score (a
    NaN 0); -inf (a blocked item) stays -inf. The champion's order is kept."""
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_items = scores.shape
    depth = min(RANK_DEPTH, n_items)
    if depth == 0:
        return scores.copy()
    columns, values = top_k(scores, depth)
    place_value = LIST_LENGTH / (LIST_LENGTH + np.arange(depth, dtype=np.float32))
    floor = np.float32(LIST_LENGTH / (LIST_LENGTH + depth))
    finite = np.isfinite(scores)
    lowest = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    last = np.where(np.isfinite(values[:, -1:]), values[:, -1:], lowest)
    spread = last - lowest
    with np.errstate(invalid="ignore", over="ignore"):
        rest = np.divide(
            scores - lowest, spread, out=np.zeros_like(scores), where=finite & (spread > 0)
        )
    scaled = (floor * np.clip(rest, 0.0, 1.0)).astype(np.float32)
    scaled[np.isneginf(scores)] = -np.inf
    ranked = columns >= 0
    row_of = np.repeat(np.arange(n_rows), depth).reshape(n_rows, depth)
    scaled[row_of[ranked], columns[ranked]] = np.broadcast_to(place_value, columns.shape)[ranked]
    return scaled


def with_next_need(
    scores: np.ndarray, columns: np.ndarray, basket_scores: np.ndarray, weight: float
) -> np.ndarray:
    """One customer's (1, n_items) scores (blocked items at -inf) by their places
    (`rank_scaled`) plus `weight` times the basket scores of the items just bought (`columns`,
    `basket_scores`: the cross-sell model's sparse answer) divided by their largest absolute
    value, so that the weight means the same for every champion and every cross-sell model.
    `weight` 0 returns `scores` unchanged."""
    if weight <= 0 or len(columns) == 0:
        return scores
    dense = np.zeros((1, scores.shape[1]), dtype=np.float32)
    dense[0, columns] = basket_scores
    return rank_scaled(scores) + np.float32(weight) * row_normalise(dense)
