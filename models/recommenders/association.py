"""Co-purchase association ("customers who bought this also bought") from order baskets.

From the co-purchase counts C (orders containing both items) and the order count N:
    association(i -> j) = C_ij / (C_ii + shrinkage) / P(j) ** lift_exponent,  P(j) = C_jj / N
`lift_exponent` 0 is confidence P(j | i) (favours best sellers), 1 is lift (favours rare
items); shrinkage damps items seen in few orders. Pairs seen in fewer than `min_orders`
orders are dropped, and each item keeps its `neighbours` strongest partners."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.recommenders.base import ItemRowsRecommender


class CoPurchaseRecommender(ItemRowsRecommender):
    """Lift-style association within orders; scores a basket or a customer's history."""

    strategy = "co_purchase"
    _array_names = ("association_",)

    def __init__(
        self,
        lift_exponent: float = 0.5,
        shrinkage: float = 10.0,
        min_orders: int = 2,
        neighbours: int = 100,
    ) -> None:
        self.lift_exponent = lift_exponent
        self.shrinkage = shrinkage
        self.min_orders = min_orders
        self.neighbours = neighbours

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        if co_purchase is None:
            raise ValueError(
                "CoPurchaseRecommender needs co_purchase counts: pass "
                "features.interactions.co_purchase_counts(shop, as_of, item_ids) to fit()"
            )
        counts = sp.csr_matrix(co_purchase, dtype=np.float64)
        if counts.shape != (matrix.shape[1], matrix.shape[1]):
            raise ValueError(f"co_purchase must be items x items, got {counts.shape}")
        orders_with = counts.diagonal()
        n_orders = max(float(orders_with.max()), 1.0) if counts.nnz else 1.0
        # N is unknown here; the largest item order count is a stand-in whose only effect is a
        # constant factor on every score (rankings do not change).
        share = np.maximum(orders_with / n_orders, 1e-12)
        pairs = counts.tocoo()
        keep = (pairs.row != pairs.col) & (pairs.data >= self.min_orders)
        rows, cols, data = pairs.row[keep], pairs.col[keep], pairs.data[keep]
        values = data / (orders_with[rows] + self.shrinkage) / share[cols] ** self.lift_exponent
        association = sp.csr_matrix((values, (rows, cols)), shape=counts.shape, dtype=np.float32)
        self.association_ = _keep_top_per_row(association, self.neighbours)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        history = user_items.multiply(user_items > 0).tocsr()
        return np.asarray((history @ self.association_).toarray(), dtype=np.float32)

    def _item_matrix(self) -> sp.csr_matrix:
        return self.association_


def _keep_top_per_row(matrix: sp.csr_matrix, per_row: int) -> sp.csr_matrix:
    """The `per_row` largest entries of each row (all of them when the row is shorter)."""
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    if per_row <= 0 or lengths.max(initial=0) <= per_row:
        return matrix
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > 0):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        if stop - start <= per_row:
            keep[start:stop] = True
        else:
            best = np.argpartition(-matrix.data[start:stop], per_row - 1)[:per_row]
            keep[start + best] = True
    coo = matrix.tocoo()
    return sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape, dtype=np.float32
    )
