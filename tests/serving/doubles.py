"""Test doubles for unit tests of the HTTP plumbing (auth, errors, swaps). Never served.

A tiny catalog whose right answers are obvious: items i0..i9 ranked by popularity i0 first;
customer c1 bought i0, so c1's personal list starts at i1. The end-to-end tests use real models.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pandas as pd

from serving.model_store import (
    CustomerScoreTable,
    LoadedModel,
    RecommendationList,
    Role,
    ServingModels,
    SessionList,
)

ITEMS = tuple(f"i{n}" for n in range(10))
AS_OF = pd.Timestamp("2025-12-31", tz="UTC")


class TinyRecommender:
    """Popularity order i0 > i1 > ...; known customers c1..c3 (c1 bought i0)."""

    def __init__(self, tag: str = "v1") -> None:
        self.tag = tag
        self.purchased = {"c1": {"i0"}, "c2": set(), "c3": {"i5"}}

    def _top(self, k: int, exclude: set[str], strategy: str) -> RecommendationList:
        items = [i for i in ITEMS if i not in exclude][:k]
        scores = [1.0 - ITEMS.index(i) / 10 for i in items]
        return RecommendationList(tuple(items), tuple(scores), strategy)

    def recommend_for(
        self,
        customer_id: str,
        k: int,
        category: str | None,
        exclude_purchased: str,
        extra_purchased: Sequence[str],
        extra_interactions: Sequence[tuple[str, str]] = (),
    ) -> RecommendationList:
        """Known customers: popularity minus their purchases; unknown: `trending`, a note.
        Views and carts change nothing here."""
        if customer_id not in self.purchased:
            answer = self._top(k, set(extra_purchased), "trending")
            return RecommendationList(answer.item_ids, answer.scores, "trending", "new customer")
        bought = self.purchased[customer_id] | set(extra_purchased)
        exclude = set() if exclude_purchased == "none" else bought
        return self._top(k, exclude, f"tiny-{self.tag}")

    def left_out_when_bought(
        self, item_ids: Sequence[str], exclude_purchased: str
    ) -> frozenset[str]:
        """Every bought item of the catalog leaves the list, except under `none`."""
        return frozenset() if exclude_purchased == "none" else frozenset(ITEMS) & set(item_ids)

    def cross_sell(
        self, item_ids: Sequence[str], customer_id: str | None, k: int
    ) -> RecommendationList:
        """Popularity minus the basket."""
        return self._top(k, set(item_ids), f"tiny-basket-{self.tag}")

    def session(self, item_ids: Sequence[str], k: int) -> SessionList:
        """Popularity minus the session's items; ids outside `ITEMS` are unknown."""
        unknown = tuple(i for i in item_ids if i not in ITEMS)
        return SessionList(self._top(k, set(item_ids), f"tiny-session-{self.tag}"), unknown)

    def similar(self, item_id: str, k: int) -> RecommendationList:
        """Neighbours in catalog order; KeyError for unknown items."""
        if item_id not in ITEMS:
            raise KeyError(item_id)
        return self._top(k, {item_id}, f"tiny-similar-{self.tag}")


def score_frame() -> pd.DataFrame:
    """Scores of c1..c3."""
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "churn_probability": [0.1, 0.5, 0.9],
            "churn_risk": ["low", "medium", "high"],
            "churn_reasons": [
                [],
                ["no order for 40 days"],
                ["no order for 94 days", "2 complaints"],
            ],
            "loyalty_score": [90.0, 50.0, 10.0],
            "segment": ["Champions", "Need attention", "Lost"],
            "p_alive": [0.99, 0.7, 0.2],
            "expected_orders_90d": [3.2, 1.1, 0.1],
            "predicted_clv_365d": [400.0, 120.0, float("nan")],
            "expected_next_order_at": pd.to_datetime(["2026-01-10", "2026-02-01", None], utc=True),
            "avg_days_between_orders": [20.0, 45.0, None],
            "satisfaction": [0.9, 0.6, 0.1],
            "last_order_at": pd.to_datetime(["2025-12-20", "2025-11-01", "2025-06-01"], utc=True),
        }
    )


class TinySource:
    """A registry stand-in: versions can be bumped and loads made to fail or to block."""

    def __init__(self) -> None:
        self.version = "1"
        self.fail_next_load = False
        self.load_gate: threading.Event | None = None
        self.loads = 0

    def champion_versions(self) -> dict[Role, str]:
        """The same version for the three roles."""
        return {"recommender": self.version, "churn": self.version, "loyalty": self.version}

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """A fresh snapshot tagged with the version."""
        if self.load_gate is not None:
            self.load_gate.wait(10)
        if self.fail_next_load:
            self.fail_next_load = False
            raise RuntimeError("corrupt artifact (simulated)")
        self.loads += 1
        loaded_at = datetime.now(UTC).isoformat()
        names = {"recommender": "rec", "churn": "churn", "loyalty": "loyalty"}
        return ServingModels(
            recommender=TinyRecommender(tag=f"v{versions['recommender']}"),
            recommender_as_of=AS_OF,
            churn=CustomerScoreTable.from_frame(score_frame(), AS_OF),
            loyalty=CustomerScoreTable.from_frame(score_frame(), AS_OF),
            versions={
                role: LoadedModel(
                    role, names[role], version, metrics={"auc": 0.8}, loaded_at=loaded_at
                )
                for role, version in versions.items()
            },
            strategies={"churn": "tiny-churn", "loyalty": "tiny-loyalty"},
        )
