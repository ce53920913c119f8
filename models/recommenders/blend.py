"""A weighted blend of fitted recommenders: sum of weight x row-normalised member scores.

Each member's scores are divided by the row's largest absolute value, so weights compare
shares of each member's own scale. Weights are chosen on a validation window by
`models.recommenders.greedy_blend` (never on the period the blend is judged on)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.attributes import CustomerAttributes
from models.recommenders.base import Recommender, row_normalise


class BlendRecommender(Recommender):
    """Weighted sum of row-normalised member scores; members are fitted recommenders."""

    strategy = "blend"

    def __init__(
        self, members: list[Recommender] | None = None, weights: list[float] | None = None
    ) -> None:
        self.members = list(members or [])
        self.weights = [float(w) for w in (weights or [1.0] * len(self.members))]
        if self.members and len(self.weights) != len(self.members):
            raise ValueError("BlendRecommender needs one weight per member")

    def get_params(self) -> dict[str, Any]:
        """Parameters that are plain values (members are saved as sub-directories)."""
        return {"weights": list(self.weights)}

    @property
    def knows_similar_items(self) -> bool:  # type: ignore[override]
        return any(m.knows_similar_items for m in self.members)

    @property
    def personalised(self) -> bool:  # type: ignore[override]
        pairs = zip(self.members, self.weights, strict=True)
        return any(member.personalised and weight != 0 for member, weight in pairs)

    def fit(
        self,
        interactions: Any,
        co_purchase: sp.csr_matrix | None = None,
        item_categories: np.ndarray | None = None,
        customer_attributes: CustomerAttributes | None = None,
    ) -> BlendRecommender:
        """Fit every member on the same interactions (see `from_fitted` for members fitted on
        different matrices)."""
        for member in self.members:
            member.fit(interactions, co_purchase, item_categories, customer_attributes)
        self.n_items_ = interactions.n_items
        return self

    @classmethod
    def from_fitted(cls, members: list[Recommender], weights: list[float]) -> BlendRecommender:
        """A blend of already fitted members (all over the same item columns)."""
        blend = cls(members, weights)
        sizes = {m.n_items_ for m in members}
        if len(sizes) != 1:
            raise ValueError(f"blend members disagree on the number of items: {sizes}")
        blend.n_items_ = sizes.pop()
        return blend

    def for_available(self, available: np.ndarray) -> Recommender:
        """The blend with each member told what is sold (`Recommender.for_available`): a
        copy when a member changes, else self."""
        members = [member.for_available(available) for member in self.members]
        if all(new is old for new, old in zip(members, self.members, strict=True)):
            return self
        twin = copy.copy(self)
        twin.members = members
        return twin

    def _scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._total(customer_rows, user_items, updated=False)

    def _updated_scores(self, customer_rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self._total(customer_rows, user_items, updated=True)

    def _total(
        self, customer_rows: np.ndarray, user_items: sp.csr_matrix, updated: bool
    ) -> np.ndarray:
        """The weighted sum of the members' normalised scores (`updated_scores` of each
        member when the rows changed since the fit), with the weights as trained."""
        total = np.zeros((len(customer_rows), self.n_items_), dtype=np.float32)
        for member, weight in zip(self.members, self.weights, strict=True):
            if weight != 0:
                score = member.updated_scores if updated else member.scores
                total += np.float32(weight) * row_normalise(score(customer_rows, user_items))
        return total

    def _similarity_scores(self, item_rows: np.ndarray) -> np.ndarray:
        total = np.zeros((len(item_rows), self.n_items_), dtype=np.float32)
        for member, weight in zip(self.members, self.weights, strict=True):
            if weight != 0 and member.knows_similar_items:
                total += np.float32(weight) * row_normalise(member._similarity_scores(item_rows))
        return total

    def _extra_meta(self, directory: Path) -> dict[str, Any]:
        for index, member in enumerate(self.members):
            member.save(directory / f"member_{index}")
        return {"members": len(self.members)}

    def _load_extra(self, meta: dict[str, Any], directory: Path) -> None:
        self.members = [
            Recommender.load(directory / f"member_{index}") for index in range(meta["members"])
        ]
