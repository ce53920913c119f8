"""Item-item nearest neighbours from implicit (cosine or BM25 weighted co-occurrence)."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.recommenders.base import ItemRowsRecommender


class ItemKNNRecommender(ItemRowsRecommender):
    """implicit's item-item kNN: score = customer's history x item similarity (top `neighbours`).

    `similarity`: "cosine" or "bm25" (with `bm25_k1`, `bm25_b`); `binary` reads every purchase
    as 1 (ignores quantity, recency and ratings), both when fitting and when scoring."""

    strategy = "item_knn"
    _array_names = ("similarity_",)

    def __init__(
        self,
        similarity: Literal["cosine", "bm25"] = "cosine",
        neighbours: int = 50,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        binary: bool = False,
    ) -> None:
        self.similarity = similarity
        self.binary = binary
        self.neighbours = neighbours
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        if self.similarity == "cosine":
            model = CosineRecommender(K=self.neighbours, num_threads=1)
        elif self.similarity == "bm25":
            model = BM25Recommender(
                K=self.neighbours, K1=self.bm25_k1, B=self.bm25_b, num_threads=1
            )
        else:
            raise ValueError(f"similarity must be 'cosine' or 'bm25', got {self.similarity!r}")
        positive = self._input(matrix)
        with threadpool_limits(1), warnings.catch_warnings():
            # implicit converts its own intermediate COO matrix and warns about it.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(positive, show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.setdiag(0)
        similarity.eliminate_zeros()
        self.similarity_ = similarity

    def _input(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        positive = sp.csr_matrix(matrix.multiply(matrix > 0), dtype=np.float32)
        if self.binary:
            positive.data[:] = 1.0
        return positive

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        history = self._input(user_items)
        return np.asarray((history @ self.similarity_).toarray(), dtype=np.float32)

    def _item_matrix(self) -> sp.csr_matrix:
        return self.similarity_

    def _basket_weights(self, weights: np.ndarray) -> np.ndarray:
        return np.ones_like(weights) if self.binary else weights
