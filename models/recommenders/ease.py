"""EASE (Steck 2019): a closed-form linear item-item model, for catalogs that fit in memory.

B = I - P / diag(P) with P = (X^T X + lambda I)^-1 and a zero diagonal; scores = X B. The
dense items x items inverse limits it to `max_items` items (20k items is 1.6 GB in float32)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.recommenders.base import Recommender


class EASERecommender(Recommender):
    """Embarrassingly shallow autoencoder on the binarised purchase matrix."""

    strategy = "ease"
    _array_names = ("weights_",)

    def __init__(self, l2: float = 500.0, max_items: int = 20_000, binary: bool = True) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.binary = binary

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        n_items = matrix.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n_items} x {n_items} matrix; the catalog has more than "
                f"max_items={self.max_items} items: use item_knn or als instead"
            )
        data = self._input(matrix)
        with threadpool_limits(1):
            gram = np.asarray((data.T @ data).toarray(), dtype=np.float64)
            gram[np.diag_indices(n_items)] += self.l2
            inverse = np.linalg.inv(gram)
        weights = inverse / (-np.diag(inverse))
        weights[np.diag_indices(n_items)] = 0.0
        self.weights_ = weights.astype(np.float32)

    def _input(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        positive = matrix.multiply(matrix > 0).tocsr().astype(np.float32)
        if self.binary:
            positive.data[:] = 1.0
        return positive

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._input(user_items) @ self.weights_, dtype=np.float32)

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        return self.weights_[item_rows]
