"""A tiny servable recommender bundle with obvious answers, built by hand in milliseconds.

The contract test's checkerboard (`tests.models.test_recommender_contract`): customers c00..c11
buy items i00..i07, customers c12..c23 items i08..i15. Personal answers come from ALS (so a
posted event must re-solve the customer's vector to change them), baskets, sessions and similar
items from item kNN. Served as the `recommender` of a `ModelSource` with the doubles' scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.recommenders import ALSRecommender, ItemKNNRecommender, TrendingRecommender
from models.recommenders.bundle import RecommenderBundle
from models.recommenders.rules import BusinessRules
from serving.availability import BundleRecommender
from serving.model_store import CustomerScoreTable, LoadedModel, Role, ServingModels
from tests.models.test_recommender_contract import ITEMS_PER_GROUP, checkerboard
from tests.serving.doubles import score_frame

AS_OF = pd.Timestamp("2025-12-31", tz="UTC")


def checkerboard_bundle() -> RecommenderBundle:
    """The checkerboard as a bundle (ALS for personal answers, item kNN for the rest)."""
    interactions, co_purchase = checkerboard()
    als = ALSRecommender(factors=2, regularization=0.1, iterations=15, alpha=10.0)
    personal = als.fit(interactions, co_purchase)
    knn = ItemKNNRecommender("cosine", neighbours=20).fit(interactions, co_purchase)
    n_items = interactions.n_items
    rules = BusinessRules(
        categories=np.array(["left"] * ITEMS_PER_GROUP + ["right"] * ITEMS_PER_GROUP),
        available=np.ones(n_items, dtype=bool),
        repeat_rates=np.zeros(n_items, dtype=np.float32),
    )
    return RecommenderBundle(
        as_of=AS_OF,
        item_ids=interactions.item_ids,
        customer_ids=interactions.customer_ids,
        history={"hinf": sp.csr_matrix(interactions.matrix)},
        purchased=sp.csr_matrix(interactions.matrix),
        models={
            "discovery": personal,
            "repeat": personal,
            "cross_sell": knn,
            "similar": knn,
            "trending": TrendingRecommender().fit(interactions),
        },
        model_history=dict.fromkeys(("discovery", "repeat", "cross_sell", "similar"), "hinf")
        | {"trending": "hinf"},
        strategies={
            "discovery": "als",
            "repeat": "als",
            "cross_sell": "item_knn",
            "similar": "item_knn",
            "trending": "trending",
        },
        rules=rules,
    )


class CheckerboardSource:
    """A `ModelSource` serving the checkerboard bundle (precomputed lists of depth 10; the
    next-need weight as given, 0: the champion alone, None: the bundle's `trained_weights`,
    as if training had chosen them)."""

    def __init__(
        self,
        next_need_weight: float | None = 0.0,
        trained_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.bundle = checkerboard_bundle()
        self.bundle.next_need_weights = dict(trained_weights or {})
        self.next_need_weight = next_need_weight

    def champion_versions(self) -> dict[Role, str]:
        """Version 1 of each role."""
        return {"recommender": "1", "churn": "1", "loyalty": "1"}

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """The bundle as the server serves one, with the doubles' churn and loyalty scores."""
        loaded_at = datetime.now(UTC).isoformat()
        return ServingModels(
            recommender=BundleRecommender(
                self.bundle, precompute_k=10, next_need_weight=self.next_need_weight
            ),
            recommender_as_of=AS_OF,
            churn=CustomerScoreTable.from_frame(score_frame(), AS_OF),
            loyalty=CustomerScoreTable.from_frame(score_frame(), AS_OF),
            versions={
                role: LoadedModel(role, f"checkerboard.{role}", version, loaded_at=loaded_at)
                for role, version in versions.items()
            },
        )
