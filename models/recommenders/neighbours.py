"""Item-item nearest neighbours from implicit (cosine or BM25 weighted co-occurrence)."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.recommenders.base import Recommender


class ItemKNNRecommender(Recommender):
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

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        return self.similarity_[item_rows].toarray()

    def basket_scores(
        self, columns: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`scores` of one anonymous basket, as (item columns, sorted; float32 scores); every
        other column scores 0. `columns` ascending and unique, `weights` their quantities."""
        self._check_fitted()
        weights = np.asarray(weights, dtype=np.float32)
        positive = weights > 0
        weights = np.ones(positive.sum(), np.float32) if self.binary else weights[positive]
        return weighted_rows_sum(self.similarity_, np.asarray(columns)[positive], weights)

    def similar_scores(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """`_similarity_scores` of one item as (item columns, sorted; float32 scores); other
        columns score 0."""
        self._check_fitted()
        return weighted_rows_sum(self.similarity_, np.array([column]), np.ones(1, np.float32))


def weighted_rows_sum(
    matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`weights @ matrix[rows]` for one sparse row vector, as (columns, float32 values): only
    the columns those rows reach, each listed once and sorted (a sum of exactly 0 is kept).

    The same numbers as SciPy's `csr @ csr` or `.toarray()` followed by a cast to float32, bit
    for bit: SciPy adds each column's terms, from 0, in the order of the left row's entries
    (ascending columns: pass `rows` ascending) and of `matrix`'s stored entries, and so does
    this. Costs O(entries of those rows), not O(columns)."""
    rows = np.asarray(rows, dtype=np.int64)
    dtype = np.promote_types(np.float32, matrix.dtype)  # SciPy's product type
    weights = np.asarray(weights, dtype=dtype)
    starts, stops = matrix.indptr[rows], matrix.indptr[rows + 1]
    if len(rows) == 1 and matrix.has_canonical_format:  # one row, no duplicates: nothing to add
        start, stop = int(starts[0]), int(stops[0])
        values = weights[0] * matrix.data[start:stop].astype(dtype, copy=False)
        return matrix.indices[start:stop].astype(np.int64), values.astype(np.float32)
    reached = [np.empty(0, dtype=np.int64)]
    terms = [np.empty(0, dtype=dtype)]
    for weight, start, stop in zip(weights, starts, stops, strict=True):
        reached.append(matrix.indices[start:stop].astype(np.int64))
        terms.append(weight * matrix.data[start:stop].astype(dtype, copy=False))
    columns, position = np.unique(np.concatenate(reached), return_inverse=True)
    sums = np.zeros(len(columns), dtype=dtype)
    np.add.at(sums, position, np.concatenate(terms))  # term by term, in order
    return columns, sums.astype(np.float32)
