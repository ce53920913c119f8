"""Customer attributes (gender, age band, ...) as evidence of a customer's taste class.

Two tastes: "left" customers buy mostly items 0..9, "right" customers items 10..19. The
attribute `segment` follows the taste for 90% of customers; `shoe_size` is drawn at random and
says nothing. Two customers have a history that cannot tell the tastes apart (one item of
each side): only their segment can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.attributes import customer_attributes
from features.interactions import Interactions
from features.shop import Shop
from models.recommenders import LatentClassRecommender, Recommender
from models.recommenders.candidates import candidate_specs

N_CUSTOMERS = 600
ITEMS = 20
LEFT = np.arange(ITEMS) < ITEMS // 2
AMBIGUOUS_A, AMBIGUOUS_B, AMBIGUOUS_UNKNOWN = 0, 1, 2
"""Rows whose history is one left and one right item; segment a (left), b (right), none."""


def _customers() -> tuple[Interactions, Shop]:
    rng = np.random.default_rng(3)
    taste = rng.integers(0, 2, size=N_CUSTOMERS)  # 0 = left, 1 = right
    rows, cols = [], []
    for row in range(N_CUSTOMERS):
        if row in (AMBIGUOUS_A, AMBIGUOUS_B, AMBIGUOUS_UNKNOWN):
            items = [3, 13]
        else:
            side = taste[row] if rng.random() < 0.85 else 1 - taste[row]
            items = list(side * ITEMS // 2 + rng.choice(ITEMS // 2, size=2, replace=False))
        rows += [row] * len(items)
        cols += items
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(N_CUSTOMERS, ITEMS)
    )
    ids = np.array([f"c{i:03d}" for i in range(N_CUSTOMERS)])
    follows = rng.random(N_CUSTOMERS) < 0.9
    segment = np.where(follows == (taste == 0), "a", "b").astype(object)
    segment[[AMBIGUOUS_A, AMBIGUOUS_B, AMBIGUOUS_UNKNOWN]] = ["a", "b", None]
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signed_up_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "segment": segment,
            "shoe_size": rng.choice(["38", "40", "42", "44"], size=N_CUSTOMERS),
        }
    )
    empty = pd.DataFrame()
    shop = Shop(purchases=empty, feedback=empty, items=empty, customers=customers)
    interactions = Interactions(matrix, ids, np.array([f"i{j:02d}" for j in range(ITEMS)]))
    return interactions, shop


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, Shop]:
    return _customers()


def _fit(data: tuple[Interactions, Shop], use: bool = True) -> LatentClassRecommender:
    interactions, shop = data
    attributes = customer_attributes(shop, interactions.customer_ids)
    return LatentClassRecommender(n_classes=2, smoothing=0.1, use_customer_attributes=use).fit(
        interactions, customer_attributes=attributes
    )


def _left_minus_right(model: Recommender, interactions: Interactions, row: int) -> float:
    scores = model.scores(np.array([row]), interactions.matrix[[row]])[0]
    return float(scores[LEFT].sum() - scores[~LEFT].sum())


def test_only_attributes_that_go_with_the_classes_are_used(data) -> None:
    assert _fit(data).attributes_used_ == ["segment"]


def test_the_segment_decides_for_a_customer_whose_history_cannot(data) -> None:
    interactions, _ = data
    model = _fit(data)
    plain = _left_minus_right(_fit(data, use=False), interactions, AMBIGUOUS_A)
    # Same history (one item of each side); the segment moves the balance each way.
    assert _left_minus_right(model, interactions, AMBIGUOUS_A) > plain + 0.1
    assert _left_minus_right(model, interactions, AMBIGUOUS_B) < plain - 0.1
    assert _left_minus_right(model, interactions, AMBIGUOUS_B) < 0


def test_an_unknown_value_or_an_unknown_customer_adds_no_evidence(data) -> None:
    interactions, _ = data
    model = _fit(data)
    basket = interactions.matrix[[AMBIGUOUS_UNKNOWN]]
    unknown_value = model.scores(np.array([AMBIGUOUS_UNKNOWN]), basket)
    anonymous = model.scores(np.array([-1]), basket)
    assert np.allclose(unknown_value, anonymous)


def test_switched_off_or_not_given_the_model_ignores_attributes(data) -> None:
    interactions, _ = data
    off = _fit(data, use=False)
    without = LatentClassRecommender(n_classes=2, smoothing=0.1).fit(interactions)
    rows = np.arange(10)
    assert off.attributes_used_ == []
    assert np.array_equal(
        off.scores(rows, interactions.matrix[rows]), without.scores(rows, interactions.matrix[rows])
    )


def test_save_load_keeps_the_attribute_evidence(data, tmp_path: Path) -> None:
    interactions, _ = data
    model = _fit(data)
    model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, LatentClassRecommender)
    assert loaded.attributes_used_ == ["segment"]
    rows = np.arange(N_CUSTOMERS)
    assert np.array_equal(
        loaded.scores(rows, interactions.matrix), model.scores(rows, interactions.matrix)
    )


def test_a_model_saved_before_attributes_existed_still_loads(data, tmp_path: Path) -> None:
    interactions, _ = data
    model = LatentClassRecommender(n_classes=2, smoothing=0.1).fit(interactions)
    model.save(tmp_path / "model")
    with np.load(tmp_path / "model" / "arrays.npz") as stored:
        new_arrays = ("customer_values_", "attribute_log_")
        old = {k: stored[k] for k in stored.files if k not in new_arrays}
    np.savez(tmp_path / "model" / "arrays.npz", **old)  # type: ignore[arg-type]
    loaded = Recommender.load(tmp_path / "model")
    rows = np.arange(10)
    history = interactions.matrix[rows]
    assert np.array_equal(loaded.scores(rows, history), model.scores(rows, history))


def test_attribute_rows_must_match_the_matrix(data) -> None:
    interactions, shop = data
    short = customer_attributes(shop, interactions.customer_ids[:10])
    with pytest.raises(ValueError, match="one row per customer row"):
        LatentClassRecommender(use_customer_attributes=True).fit(
            interactions, customer_attributes=short
        )


def test_attribute_candidates_only_when_the_shop_describes_its_customers() -> None:
    plain = [spec.name for spec in candidate_specs(100, seed=0)]
    described = [spec.name for spec in candidate_specs(100, seed=0, with_attributes=True)]
    assert not [name for name in plain if name.endswith("_attributes")]
    added = sorted(set(described) - set(plain))
    assert added == sorted(f"{name}_attributes" for name in plain if name.startswith("latent"))


def test_near_twins_leave_room_for_other_models_in_the_blend_pool() -> None:
    from models.recommenders.candidates import spec
    from models.recommenders.greedy_blend import BLEND_POOL, blend_pool

    repeat = [spec("repeat_purchase", 1.0, popularity_weight=w) for w in (0.3, 3.0, 30.0)]
    latent = [spec("latent_class", n_classes=k, level=level, random_state=0,
                   use_customer_attributes=attributes)
              for k in (10, 30) for level in ("item", "category")
              for attributes in (False, True)]  # fmt: skip
    ranked = repeat + latent
    ranked += [spec("als", 1.0, factors=16, regularization=0.1, alpha=5.0, iterations=15)]
    ranked += [spec("category_affinity", 1.0, smoothing=5.0), spec("trending", 1 / 3, "baseline")]
    ranked += [spec("popularity", None, "baseline")]
    ranked += [spec("item_knn", 1.0, similarity="cosine", neighbours=50)]
    ranked += [spec("co_purchase", 1.0, lift_exponent=0.0)]
    pool = [candidate.name for candidate in blend_pool(ranked)]
    assert pool == [
        "repeat_purchase_p0.3_hW",
        "repeat_purchase_p3_hW",
        "latent_class_k10_item",
        "latent_class_k10_item_attributes",
        "als_f16_r0.1_a5",
        "category_affinity_s5_hW",
        "trending_h0.33",
        "popularity",
    ]
    assert len(pool) == BLEND_POOL
