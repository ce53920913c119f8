"""Matrix factorisation from implicit: ALS and BPR, BLAS pinned to one thread.

Learned factors are kept as numpy arrays, so scoring and persistence need no implicit object.
A customer unknown at fit time (row -1) with a basket gets factors folded in by ridge least
squares on the item factors (the same projection ALS makes for a user). A known customer whose
row changed since the fit (`updated_scores`: events posted since) gets their vector solved
again from the updated row: ALS exactly as implicit's `recalculate_user`, BPR (which has no
closed-form step) as the mean factors of the row's items, like an unknown customer."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.recommenders.base import Recommender


class _FactorRecommender(Recommender):
    """An implicit factorisation model whose constructor parameters are implicit's own.

    Subclasses name the implicit model (`_implicit_model`) and, when it wants other input than
    the confidence matrix, `_training_matrix`; fitting and scoring are shared."""

    _array_names = ("user_factors_", "item_factors_")
    regularization: float
    user_factors_: np.ndarray
    item_factors_: np.ndarray

    @abstractmethod
    def _implicit_model(self) -> Any:
        """A new, unfitted implicit model built from `get_params()` (names are implicit's)."""

    def _training_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """What the implicit model is fitted on: the customers x items confidence matrix."""
        return matrix

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        training = self._training_matrix(matrix)
        # implicit checks the BLAS thread count when the model is built: build it pinned too.
        with threadpool_limits(1):
            model = self._implicit_model()
            model.fit(training, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _item_gram(self, regularization: float) -> np.ndarray:
        """YᵀY + regularization·I in float64, Y the item factors: fixed once fitted, so computed
        once per model and value and reused by every request (YᵀY alone is 0.2 GFLOP for
        50,000 items x 64 factors, about 20 ms a request)."""
        cached = self.__dict__.get("_gram")
        if cached is None or cached[0] is not self.item_factors_ or cached[1] != regularization:
            items = self.item_factors_.astype(np.float64)
            gram = items.T @ items + regularization * np.eye(items.shape[1])
            cached = (self.item_factors_, regularization, gram)
            self._gram = cached
        return cached[2]  # type: ignore[no-any-return]

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        items = self.item_factors_.astype(np.float64)
        gram = self._item_gram(max(self.regularization, 1e-3))
        right = np.asarray(user_items @ items)
        return np.linalg.solve(gram, right.T).T.astype(np.float32)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        users = np.zeros((len(customer_rows), self.item_factors_.shape[1]), dtype=np.float32)
        known = (customer_rows >= 0) & (customer_rows < len(self.user_factors_))
        users[known] = self.user_factors_[customer_rows[known]]
        unknown = ~known
        if unknown.any():
            users[unknown] = self._fold_in(user_items[np.flatnonzero(unknown)])
        return users @ self.item_factors_.T

    def _recalculated(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Each row's customer vector solved again from that row alone, the item factors fixed
        (what the model's own training step does for a customer); default: `_fold_in`."""
        return self._fold_in(user_items)

    def _updated_scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._recalculated(user_items) @ self.item_factors_.T

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors_, axis=1) + 1e-12
        unit = self.item_factors_ / norms[:, None]
        return unit[item_rows] @ unit.T


class ALSRecommender(_FactorRecommender):
    """implicit's alternating least squares on confidence `1 + alpha * matrix`."""

    strategy = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _recalculated(self, user_items: sp.csr_matrix) -> np.ndarray:
        """implicit's `recalculate_user` (its exact Cholesky step, not the conjugate gradient
        of training): with confidences c = alpha * r and Y the item factors, per customer
        x = (YᵀY + λI + Σ (|c_i| - 1) y_i y_iᵀ)⁻¹ Σ_{c_i > 0} c_i y_i, in float64."""
        gram = self._item_gram(self.regularization)
        if not isinstance(user_items, sp.csr_matrix):  # a request passes CSR: no copy
            user_items = sp.csr_matrix(user_items)
        vectors = np.zeros((user_items.shape[0], gram.shape[0]), dtype=np.float64)
        for row in range(user_items.shape[0]):
            start, stop = user_items.indptr[row], user_items.indptr[row + 1]
            columns = user_items.indices[start:stop]
            confidence = self.alpha * user_items.data[start:stop].astype(np.float64)
            factors = self.item_factors_[columns].astype(np.float64)
            left = gram + (factors.T * (np.abs(confidence) - 1.0)) @ factors
            right = factors[confidence > 0].T @ confidence[confidence > 0]
            vectors[row] = np.linalg.solve(left, right)
        return vectors.astype(np.float32)

    def _implicit_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(**self.get_params())


class BPRRecommender(_FactorRecommender):
    """implicit's Bayesian personalised ranking (item bias folded into the factors).

    An unknown customer's factors are the mean factors of the items in their basket (BPR's
    factors are not least-squares fits, so the ALS projection does not apply)."""

    strategy = "bpr"

    def _fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        weights = user_items.multiply(user_items > 0).tocsr()
        totals = np.asarray(weights.sum(axis=1)).ravel()
        mean = np.asarray(weights @ self.item_factors_) / np.maximum(totals, 1e-12)[:, None]
        return mean.astype(np.float32)

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(**self.get_params())

    def _training_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The cells of positive confidence only: BPR ranks every stored cell as a liked item."""
        return matrix.multiply(matrix > 0).tocsr()
