"""Baselines that every learned model must beat: popularity, trending, own purchase history."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.recommenders.base import Recommender


class PopularityRecommender(Recommender):
    """Items ranked by the number of customers who bought them (the same for everyone)."""

    strategy = "popularity"
    personalised = False
    knows_similar_items = False
    _array_names = ("item_scores_",)

    def __init__(self) -> None:
        pass

    def _fit(self, matrix: sp.csr_matrix, co_purchase: sp.csr_matrix | None) -> None:
        self.item_scores_ = np.bincount(
            matrix.indices[matrix.data > 0], minlength=matrix.shape[1]
        ).astype(np.float32)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(customer_rows), self.n_items_)).copy()


class TrendingRecommender(PopularityRecommender):
    """Items ranked by recency-weighted sales: the column sums of the confidence matrix.

    Fit it on interactions built with a short half-life (see `build_interactions`)."""

    strategy = "trending"

    def _fit(self, matrix: sp.csr_matrix, co_purchase: sp.csr_matrix | None) -> None:
        positive = matrix.multiply(matrix > 0)
        self.item_scores_ = np.asarray(positive.sum(axis=0), dtype=np.float32).ravel()


class RepeatPurchaseRecommender(Recommender):
    """The customer's own recency-weighted purchases first, then popular items.

    score = own confidence / the customer's largest confidence + popularity_weight * share of
    the most popular item's sales. `popularity_weight` large ranks by popularity with the own
    history as tie-breaker; small puts every item bought before first."""

    strategy = "repeat_purchase"
    knows_similar_items = False
    _array_names = ("item_scores_",)

    def __init__(self, popularity_weight: float = 1.0) -> None:
        self.popularity_weight = popularity_weight

    def _fit(self, matrix: sp.csr_matrix, co_purchase: sp.csr_matrix | None) -> None:
        positive = matrix.multiply(matrix > 0)
        totals = np.asarray(positive.sum(axis=0), dtype=np.float32).ravel()
        self.item_scores_ = totals / max(float(totals.max()), 1e-12)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        own = user_items.toarray()
        own = np.maximum(own, 0.0)
        scale = own.max(axis=1, keepdims=True)
        own = np.divide(own, scale, out=np.zeros_like(own), where=scale > 0)
        return own + np.float32(self.popularity_weight) * self.item_scores_[None, :]
