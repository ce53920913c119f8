"""The candidate table: every model selection may try, as typed specs (family, parameters, role).

A candidate's name ("trending_h0.33", "repeat_purchase_p3_hW", "co_purchase_l0.5") is derived
from its spec; it is what MLflow, reports and BENCHMARKS.md show, never read back. Selection,
the bundle and the training report read the specs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.recommenders.association import CoPurchaseRecommender
from models.recommenders.base import Recommender
from models.recommenders.ease import EASERecommender
from models.recommenders.factorization import ALSRecommender, BPRRecommender
from models.recommenders.latent import LatentClassRecommender
from models.recommenders.neighbours import ItemKNNRecommender
from models.recommenders.popularity import (
    CategoryAffinityRecommender,
    PopularityRecommender,
    RepeatPurchaseRecommender,
    TrendingRecommender,
)
from models.recommenders.repeat_cycle import RepeatCycleRecommender, RepeatFrequencyRecommender

Family = Literal[
    "popularity",
    "trending",
    "repeat_purchase",
    "repeat_cycle",
    "repeat_frequency",
    "category_affinity",
    "co_purchase",
    "item_knn",
    "latent_class",
    "ease",
    "als",
    "bpr",
]
Role = Literal["baseline", "personal", "cross_sell"]
"""baseline: the same list for everyone (popularity, trending), judged beside the personal
models; personal: reads the customer's history; cross_sell: scores an anonymous basket."""

FAMILY_CLASSES: dict[Family, type[Recommender]] = {
    "popularity": PopularityRecommender,
    "trending": TrendingRecommender,
    "repeat_purchase": RepeatPurchaseRecommender,
    "repeat_cycle": RepeatCycleRecommender,
    "repeat_frequency": RepeatFrequencyRecommender,
    "category_affinity": CategoryAffinityRecommender,
    "co_purchase": CoPurchaseRecommender,
    "item_knn": ItemKNNRecommender,
    "latent_class": LatentClassRecommender,
    "ease": EASERecommender,
    "als": ALSRecommender,
    "bpr": BPRRecommender,
}
HISTORY_VARIANTS: frozenset[Family] = frozenset(
    {"repeat_purchase", "repeat_cycle", "category_affinity", "co_purchase", "item_knn"}
)
"""Families tried on two histories (half-life W and no decay); their personal candidates' names
end in "_hW" or "_hinf"."""
INSTANT_FAMILIES: frozenset[Family] = frozenset(
    {"repeat_purchase", "repeat_cycle", "category_affinity", "co_purchase", "latent_class"}
)
"""A sparse product or less to fit (own history, category shares, co-purchase, latent classes
on a capped sample): tried before the neighbour models, so a tight budget keeps them."""
OWN_ITEM_FAMILIES: frozenset[Family] = frozenset(
    {"repeat_purchase", "repeat_cycle", "repeat_frequency"}
)
"""Families that rank the customer's own items (and popularity after them): with bought items
excluded, as discovery judges, they are a popularity list."""
EASE_MAX_ITEMS = 5_000
"""EASE inverts a dense items x items matrix: above this many items it is too slow to tune."""


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate: its model family, constructor parameters, role, and the half-life of the
    history matrix it reads (a multiple of the validation window W; None: no recency decay)."""

    family: Family
    params: tuple[tuple[str, Any], ...]
    half_life: float | None
    role: Role = "personal"

    @property
    def personalised(self) -> bool:
        """True when the candidate reads the customer's own history (not a baseline)."""
        return self.role != "baseline"

    def personal_for(self, protocol: str) -> bool:
        """True when the candidate's lists under `protocol` depend on the customer's own
        history: a personal candidate, except an own-item one (`OWN_ITEM_FAMILIES`) under
        `discovery`, where bought items are left out and its list is a popularity list."""
        if protocol == "discovery" and self.family in OWN_ITEM_FAMILIES:
            return False
        return self.personalised

    @property
    def name(self) -> str:
        """The name reports, MLflow and BENCHMARKS.md show, e.g. "repeat_purchase_p3_hW"."""
        name = _NAMERS[self.family](self.kwargs, self.half_life)
        if self.family in HISTORY_VARIANTS and self.role == "personal":
            if not self.kwargs.get("binary", False):
                name += "_hW" if self.half_life else "_hinf"
        return name

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor parameters as keyword arguments."""
        return dict(self.params)

    def make(self) -> Recommender:
        """A fresh, unfitted model of this candidate."""
        return FAMILY_CLASSES[self.family](**self.kwargs)


def spec(
    family: Family, half_life: float | None = None, role: Role = "personal", **params: Any
) -> CandidateSpec:
    """A `CandidateSpec` with its parameters given as keyword arguments."""
    return CandidateSpec(family, tuple(params.items()), half_life, role)


_NAMERS: dict[Family, Any] = {
    "popularity": lambda p, h: "popularity",
    "trending": lambda p, h: f"trending_h{h:.2g}",
    "repeat_purchase": lambda p, h: f"repeat_purchase_p{p['popularity_weight']:g}",
    "repeat_cycle": lambda p, h: (
        f"repeat_cycle_{'due' if p['next_order_due'] else 'alive'}_s{p['shape']:g}"
        f"_p{p['popularity_weight']:g}"
    ),
    "repeat_frequency": lambda p, h: (
        f"repeat_frequency_o{p['half_life_orders']:g}_p{p['popularity_weight']:g}"
    ),
    "category_affinity": lambda p, h: f"category_affinity_s{p['smoothing']:g}",
    "co_purchase": lambda p, h: f"co_purchase_l{p['lift_exponent']:g}",
    "item_knn": lambda p, h: (
        f"item_knn_{p['similarity']}_k{p['neighbours']}" + ("_binary" * p.get("binary", False))
    ),
    "latent_class": lambda p, h: (
        f"latent_class_k{p['n_classes']}_{p['level']}"
        + ("_attributes" * p["use_customer_attributes"])
    ),
    "ease": lambda p, h: f"ease_l{p['l2']:g}",
    "als": lambda p, h: f"als_f{p['factors']}_r{p['regularization']:g}_a{p['alpha']:g}",
    "bpr": lambda p, h: f"bpr_f{p['factors']}",
}

CROSS_SELL_CANDIDATES: tuple[CandidateSpec, ...] = (
    *(spec("co_purchase", None, "cross_sell", lift_exponent=e) for e in (0.0, 0.5, 1.0)),
    spec("item_knn", None, "cross_sell", similarity="cosine", neighbours=200),
    spec("trending", 1 / 3, "cross_sell"),
)
"""Basket models, judged leave-one-out on validation-window orders."""
DEFAULT_CROSS_SELL = CROSS_SELL_CANDIDATES[1]
"""co_purchase_l0.5: kept when the validation window holds no multi-item order."""
SIMILAR_ITEMS = CROSS_SELL_CANDIDATES[3]
"""item_knn_cosine_k200 on the undecayed history: the model behind "similar items"."""


def baseline_specs() -> list[CandidateSpec]:
    """Popularity, then trending at half-lives from W/6 to 4W."""
    baselines = [spec("popularity", None, "baseline")]
    for fraction in (1 / 6, 1 / 3, 2 / 3, 1.0, 2.0, 4.0):
        baselines.append(spec("trending", fraction, "baseline"))
    return baselines


def history_variant_specs() -> list[CandidateSpec]:
    """Own-history, item-neighbour, category and co-purchase models, each at half-life W and
    without decay (item kNN also on binary purchases)."""
    cheap: list[CandidateSpec] = []
    for half_life in (1.0, None):
        for weight in (0.3, 3.0, 30.0):
            cheap.append(spec("repeat_purchase", half_life, popularity_weight=weight))
        for neighbours in (50, 200):
            cheap.append(spec("item_knn", half_life, similarity="cosine", neighbours=neighbours))
        cheap.append(spec("item_knn", half_life, similarity="bm25", neighbours=100))
        for smoothing in (1.0, 5.0):
            cheap.append(spec("category_affinity", half_life, smoothing=smoothing))
        for exponent in (0.0, 0.5):
            cheap.append(spec("co_purchase", half_life, lift_exponent=exponent))
    for neighbours in (50, 200):
        cheap.append(
            spec("item_knn", None, similarity="cosine", neighbours=neighbours, binary=True)
        )
    return cheap


def repeat_cycle_specs(next_order_due: bool) -> list[CandidateSpec]:
    """Time-aware re-purchase (`repeat_cycle`) at half-life W and without decay, a small
    popularity fill: "still buys it" with memoryless gaps (Gamma shape 1), or with
    `next_order_due` "due before the next order" with regular gaps (shape 3)."""
    shape = 3.0 if next_order_due else 1.0
    return [
        spec(
            "repeat_cycle",
            half_life,
            shape=shape,
            popularity_weight=0.1,
            next_order_due=next_order_due,
        )
        for half_life in (1.0, None)
    ]


def repeat_frequency_specs() -> list[CandidateSpec]:
    """Time-aware item weighting (`repeat_frequency`): own orders decayed with a half-life of
    10 and of 30 of the customer's own orders, a small popularity fill. It reads the timing,
    not the history's weights, so it is tried on the undecayed history only."""
    return [
        spec("repeat_frequency", None, half_life_orders=orders, popularity_weight=0.1)
        for orders in (10.0, 30.0)
    ]


def latent_and_ease_specs(n_items: int, seed: int, with_attributes: bool) -> list[CandidateSpec]:
    """Latent taste classes (item or category level, with the customers' attributes when the
    shop has them), then EASE when the catalog has at most `EASE_MAX_ITEMS` items."""
    specs: list[CandidateSpec] = []
    for n_classes in (10, 30):
        for level in ("item", "category"):
            for attributes in (False, True) if with_attributes else (False,):
                specs.append(
                    spec(
                        "latent_class",
                        n_classes=n_classes,
                        level=level,
                        random_state=seed,
                        use_customer_attributes=attributes,
                    )
                )
    if n_items <= EASE_MAX_ITEMS:
        specs += [spec("ease", l2=l2) for l2 in (100.0, 500.0, 2000.0)]
    return specs


def factor_model_specs(rng: np.random.Generator, seed: int) -> list[CandidateSpec]:
    """Four ALS settings drawn from a grid (half-life W), then one BPR setting."""
    grid = [
        (factors, reg, alpha)
        for factors in (16, 32, 64, 128)
        for reg in (0.01, 0.1, 1.0)
        for alpha in (1.0, 5.0, 20.0)
    ]
    specs: list[CandidateSpec] = []
    for index in rng.permutation(len(grid))[:4]:
        factors, reg, alpha = grid[index]
        specs.append(
            spec(
                "als",
                1.0,
                factors=factors,
                regularization=reg,
                alpha=alpha,
                iterations=15,
                random_state=seed,
            )
        )
    for factors in rng.permutation([32, 64])[:1]:
        specs.append(spec("bpr", factors=int(factors), iterations=100, random_state=seed))
    return specs


def candidate_specs(n_items: int, seed: int, with_attributes: bool = False) -> list[CandidateSpec]:
    """Every personal-protocol candidate: baselines, then the time-aware "still buys it"
    re-purchase models and the decayed own-order frequencies (cheap, tried first so that a
    tight budget keeps them: on a 68k-item grocery catalogue a 30 s budget fitted only three
    personal candidates), then
    own-history/category/co-purchase models (a seeded order), the "due before the next order"
    re-purchase models, item neighbours and EASE, matrix factorisation (a seeded order within
    each of the last two tiers). `with_attributes` (the shop's
    customers table describes its customers) adds latent-class variants that also read the
    customers' attributes."""
    rng = np.random.default_rng(seed)
    cheap = history_variant_specs() + latent_and_ease_specs(n_items, seed, with_attributes)
    factor_models = factor_model_specs(rng, seed)
    instant = [c for c in cheap if c.family in INSTANT_FAMILIES]
    neighbour = [c for c in cheap if c not in instant]
    ordered = repeat_cycle_specs(next_order_due=False) + repeat_frequency_specs()
    ordered += [instant[i] for i in rng.permutation(len(instant))]
    ordered += repeat_cycle_specs(next_order_due=True)
    ordered += [neighbour[i] for i in rng.permutation(len(neighbour))]
    return baseline_specs() + ordered + factor_models
