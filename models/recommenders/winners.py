"""A selected model (one candidate, a blend of candidates or a re-ranker over them) and its
refit on all the data before `as_of`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.attributes import CustomerAttributes
from features.interactions import Interactions
from models.recommenders.base import Recommender
from models.recommenders.blend import BlendRecommender
from models.recommenders.candidates import CandidateSpec
from models.recommenders.rerank import HISTORY_HALF_LIFE, RerankRecommender


@dataclass(frozen=True)
class WinnerSpec:
    """A selected model: member candidates and blend weights (or a re-ranker over them)."""

    members: tuple[CandidateSpec, ...]
    weights: tuple[float, ...]
    rerank: bool = False
    exclude_seen: bool = False
    """For a re-ranker: candidates leave out items the customer already bought (discovery)."""

    @property
    def member_names(self) -> tuple[str, ...]:
        """The members' candidate names, in order."""
        return tuple(member.name for member in self.members)

    @property
    def label(self) -> str:
        """e.g. "trending_h0.33" or "blend(trending_h0.33*1+repeat_purchase_p1_hW*0.1)"."""
        if self.rerank:
            return "rerank(" + "+".join(self.member_names) + ")"
        if len(self.members) == 1:
            return self.members[0].name
        parts = [f"{m}*{w:g}" for m, w in zip(self.member_names, self.weights, strict=True)]
        return "blend(" + "+".join(parts) + ")"


def fit_winner(
    winner: WinnerSpec,
    matrices: Callable[[float | None], Interactions],
    co_purchase: sp.csr_matrix,
    categories: np.ndarray,
    seed: int,
    ranker: Any = None,
    repeat_rates: np.ndarray | None = None,
    customer_attributes: CustomerAttributes | None = None,
) -> tuple[Recommender, float | None]:
    """Fit the winner's members on the full data; returns the model and its serving half-life
    (the half-life of its personal members, in multiples of W; None when they use no decay).
    `matrices(half_life)` gives the history at that half-life; `customer_attributes` are those
    of the matrices' customers, in row order.

    A re-ranker winner needs `ranker` (the classifier selection trained on the latest window)
    and `repeat_rates` (per item, at the same `as_of` as the matrices); it reads history with
    a half-life of W."""
    fitted = [
        member.make().fit(matrices(member.half_life), co_purchase, categories, customer_attributes)
        for member in winner.members
    ]
    return assemble_winner(winner, fitted, matrices, seed, ranker, repeat_rates)


def assemble_winner(
    winner: WinnerSpec,
    fitted: list[Recommender],
    matrices: Callable[[float | None], Interactions],
    seed: int,
    ranker: Any = None,
    repeat_rates: np.ndarray | None = None,
) -> tuple[Recommender, float | None]:
    """The winner made of its members already fitted (`fitted`, in `winner.members` order):
    the one member, their blend, or the re-ranker over them (`ranker`, `repeat_rates` and the
    history `matrices` as in `fit_winner`); with its serving half-life as `fit_winner` gives.
    Selection uses it for the winner as fitted at the validation cut."""
    if winner.rerank:
        reranker = RerankRecommender(
            fitted,
            list(winner.member_names),
            exclude_seen=winner.exclude_seen,
            random_state=seed,
            classifier=ranker,
        )
        return reranker.fit(matrices(HISTORY_HALF_LIFE), repeat_rates=repeat_rates), (
            HISTORY_HALF_LIFE
        )
    serving_half_life: float | None = None
    for member in winner.members:
        if member.personalised:
            serving_half_life = member.half_life
    if len(fitted) == 1:
        return fitted[0], serving_half_life
    return BlendRecommender.from_fitted(fitted, list(winner.weights)), serving_half_life
