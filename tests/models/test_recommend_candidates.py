"""The candidate table: names (shown in MLflow, reports and BENCHMARKS.md) derived from typed
specs stay exactly as they were, in the same seeded order; cross-sell is defined once."""

from __future__ import annotations

from models.recommenders import ItemKNNRecommender, TrendingRecommender
from models.recommenders.bundle import fallback_half_life
from models.recommenders.candidates import (
    CROSS_SELL_CANDIDATES,
    DEFAULT_CROSS_SELL,
    SIMILAR_ITEMS,
    baseline_specs,
    candidate_specs,
)

ALIVE_NAMES = [
    "repeat_cycle_alive_s1_p0.1_hW",
    "repeat_cycle_alive_s1_p0.1_hinf",
    "repeat_frequency_o10_p0.1",
    "repeat_frequency_o30_p0.1",
]
"""The time-aware "still buys it" re-purchase candidates and the decayed own-order frequencies,
tried first after the baselines."""
DUE_NAMES = ["repeat_cycle_due_s3_p0.1_hW", "repeat_cycle_due_s3_p0.1_hinf"]
"""The "due before the next order" ones, after the other instant candidates."""
SEED_0_NAMES = [
    "popularity", "trending_h0.17", "trending_h0.33", "trending_h0.67", "trending_h1",
    "trending_h2", "trending_h4", *ALIVE_NAMES, "latent_class_k30_item",
    "latent_class_k10_category",
    "repeat_purchase_p0.3_hinf", "category_affinity_s5_hW", "repeat_purchase_p30_hW",
    "category_affinity_s1_hW", "latent_class_k10_item", "latent_class_k10_category_attributes",
    "latent_class_k30_category", "repeat_purchase_p3_hinf", "repeat_purchase_p3_hW",
    "category_affinity_s5_hinf", "repeat_purchase_p30_hinf", "co_purchase_l0_hW",
    "category_affinity_s1_hinf", "co_purchase_l0_hinf", "latent_class_k10_item_attributes",
    "repeat_purchase_p0.3_hW", "co_purchase_l0.5_hW", "latent_class_k30_category_attributes",
    "co_purchase_l0.5_hinf", "latent_class_k30_item_attributes", *DUE_NAMES,
    "item_knn_cosine_k200_binary",
    "ease_l2000", "item_knn_cosine_k50_hW", "ease_l500", "item_knn_bm25_k100_hinf", "ease_l100",
    "item_knn_cosine_k200_hinf", "item_knn_cosine_k50_binary", "item_knn_bm25_k100_hW",
    "item_knn_cosine_k50_hinf", "item_knn_cosine_k200_hW", "als_f16_r0.1_a5", "als_f128_r1_a5",
    "als_f128_r0.1_a1", "als_f16_r0.01_a20", "bpr_f32",
]  # fmt: skip
"""`candidate_specs(100, seed=0, with_attributes=True)` as the name-parsing version made it, with
the time-aware re-purchase candidates (added later) around the other instant ones."""


def test_names_and_order_are_those_the_reports_show() -> None:
    specs = candidate_specs(100, seed=0, with_attributes=True)
    assert [spec.name for spec in specs] == SEED_0_NAMES
    large = candidate_specs(6_000, seed=0)
    assert len(large) == 44 and not [s for s in large if s.family == "ease"]


def test_a_spec_makes_its_model_and_says_its_role() -> None:
    specs = {spec.name: spec for spec in candidate_specs(100, seed=0)}
    knn = specs["item_knn_cosine_k50_hW"].make()
    assert isinstance(knn, ItemKNNRecommender) and knn.neighbours == 50
    assert specs["item_knn_cosine_k50_hW"].half_life == 1.0
    assert specs["item_knn_cosine_k50_hinf"].half_life is None
    assert not specs["trending_h0.33"].personalised and specs["ease_l100"].personalised


def test_cross_sell_candidates_are_defined_once() -> None:
    names = [candidate.name for candidate in CROSS_SELL_CANDIDATES]
    assert names == [
        "co_purchase_l0",
        "co_purchase_l0.5",
        "co_purchase_l1",
        "item_knn_cosine_k200",
        "trending_h0.33",
    ]
    assert DEFAULT_CROSS_SELL.name == "co_purchase_l0.5"
    assert SIMILAR_ITEMS.name == "item_knn_cosine_k200" and SIMILAR_ITEMS.half_life is None
    assert isinstance(CROSS_SELL_CANDIDATES[-1].make(), TrendingRecommender)


def test_fallback_half_life_is_the_baselines_as_its_name_shows_it() -> None:
    halves = {spec.name: fallback_half_life(spec) for spec in baseline_specs()}
    assert halves == {
        "popularity": None,
        "trending_h0.17": 0.17,
        "trending_h0.33": 0.33,
        "trending_h0.67": 0.67,
        "trending_h1": 1.0,
        "trending_h2": 2.0,
        "trending_h4": 4.0,
    }
