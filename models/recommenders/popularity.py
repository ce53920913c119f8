"""Baselines that every learned model must beat: popularity, trending, own purchase history."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recommenders.base import Recommender, one_hot_columns, positive_entries


def buyers_per_item(matrix: sp.csr_matrix) -> np.ndarray:
    """int64 per item column: how many customers (rows) have a positive entry for it."""
    return np.bincount(matrix.indices[matrix.data > 0], minlength=matrix.shape[1])


def sales_per_item(matrix: sp.csr_matrix) -> np.ndarray:
    """float32 per item column: the sum of its positive entries (recency-weighted sales when
    the matrix is a confidence matrix with a half-life)."""
    positive = matrix.multiply(matrix > 0)
    return np.asarray(positive.sum(axis=0), dtype=np.float32).ravel()


def best_seller_shares(matrix: sp.csr_matrix) -> np.ndarray:
    """Each item's sales as a share of the best seller's (1.0 for it; 0 in an empty shop)."""
    totals = sales_per_item(matrix)
    return totals / max(float(totals.max()), 1e-12)


def own_shares(user_items: sp.csr_matrix) -> np.ndarray:
    """Each customer's row (dense) divided by its largest cell: 1.0 for what they bought most,
    0 for items never bought (negative confidence counts as none)."""
    own = np.maximum(user_items.toarray(), 0.0)
    scale = own.max(axis=1, keepdims=True)
    return np.divide(own, scale, out=np.zeros_like(own), where=scale > 0)


class PopularityRecommender(Recommender):
    """Items ranked by the number of customers who bought them (the same for everyone)."""

    strategy = "popularity"
    personalised = False
    knows_similar_items = False
    _array_names = ("item_scores_",)

    def __init__(self) -> None:
        pass

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        self.item_scores_ = buyers_per_item(matrix).astype(np.float32)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(customer_rows), self.n_items_)).copy()


class TrendingRecommender(PopularityRecommender):
    """Items ranked by recency-weighted sales: the column sums of the confidence matrix.

    Fit it on interactions built with a short half-life (see `build_interactions`)."""

    strategy = "trending"

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        self.item_scores_ = sales_per_item(matrix)


class RepeatPurchaseRecommender(Recommender):
    """The customer's own recency-weighted purchases first, then popular items.

    score = own confidence / the customer's largest confidence + popularity_weight * share of
    the most popular item's sales. `popularity_weight` large ranks by popularity with the own
    history as tie-breaker; small puts every item bought before first."""

    strategy = "repeat_purchase"
    knows_similar_items = False
    _array_names: ClassVar[tuple[str, ...]] = ("item_scores_",)  # the repeat families add theirs

    def __init__(self, popularity_weight: float = 1.0) -> None:
        self.popularity_weight = popularity_weight

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        self.item_scores_ = best_seller_shares(matrix)

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return (
            own_shares(user_items) + np.float32(self.popularity_weight) * self.item_scores_[None, :]
        )


class CategoryAffinityRecommender(Recommender):
    """Popular items of the categories this customer buys most.

    score(c, i) = P(category of i | customer c) * P(i | its category), with the customer's
    category shares (from their confidence) smoothed towards the shop-wide shares by
    `smoothing` pseudo-purchases. Without categories (or with one) it is popularity."""

    strategy = "category_affinity"
    knows_similar_items = True
    _array_names = ("item_category_", "category_share_", "item_share_")

    def __init__(self, smoothing: float = 2.0) -> None:
        self.smoothing = smoothing

    def _fit(
        self,
        matrix: sp.csr_matrix,
        co_purchase: sp.csr_matrix | None,
        item_categories: np.ndarray | None,
    ) -> None:
        labels = (
            np.zeros(matrix.shape[1], dtype=object)
            if item_categories is None
            else np.asarray(item_categories, dtype=object)
        )
        codes, _ = pd.factorize(pd.Series(labels).fillna(""))
        self.item_category_ = codes.astype(np.int64)
        # An unsold item still has a tiny chance.
        buyers = buyers_per_item(matrix).astype(np.float64) + 0.5
        per_category = np.bincount(self.item_category_, weights=buyers)
        self.item_share_ = (buyers / per_category[self.item_category_]).astype(np.float32)
        self.category_share_ = (per_category / per_category.sum()).astype(np.float32)

    def _customer_category_shares(self, user_items: sp.csr_matrix) -> np.ndarray:
        positive = positive_entries(user_items)
        totals = np.asarray((positive @ self._to_category()).toarray())
        # Shares of the customer's purchases, smoothed towards the shop-wide shares.
        counts = totals / np.maximum(totals.sum(axis=1, keepdims=True), 1e-12)
        counts *= np.minimum(np.diff(positive.indptr), 50)[:, None]
        smoothed = counts + self.smoothing * self.category_share_[None, :]
        return smoothed / smoothed.sum(axis=1, keepdims=True)

    def _to_category(self) -> sp.csr_matrix:
        """The items x categories 0/1 matrix, built once per fitted or loaded model (not per
        request)."""
        cached = self.__dict__.get("_to_category_of")
        if cached is None or cached[0] is not self.item_category_:
            n_categories = len(self.category_share_)
            cached = (self.item_category_, one_hot_columns(self.item_category_, n_categories))
            self.__dict__["_to_category_of"] = cached
        return cached[1]

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        shares = self._customer_category_shares(user_items)
        return shares[:, self.item_category_] * self.item_share_[None, :]

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        same = self.item_category_[item_rows][:, None] == self.item_category_[None, :]
        return np.where(same, self.item_share_[None, :], 0.0).astype(np.float32)
