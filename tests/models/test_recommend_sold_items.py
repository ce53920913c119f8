"""Latent classes over categories share a category's demand among the items still sold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import load_shop
from models.recommenders import (
    BlendRecommender,
    LatentClassRecommender,
    PopularityRecommender,
    Recommender,
)
from models.recommenders.bundle import fit_recommender_bundle
from tests.models.test_recommender_contract import CATEGORIES, ITEMS_PER_GROUP, checkerboard

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")


def _fitted() -> LatentClassRecommender:
    interactions, _ = checkerboard()
    return LatentClassRecommender(n_classes=2, level="category", smoothing=0.1).fit(
        interactions, item_categories=CATEGORIES
    )


def _sold(*gone: int) -> np.ndarray:
    sold = np.ones(len(CATEGORIES), dtype=bool)
    sold[list(gone)] = False
    return sold


def test_the_items_still_sold_take_their_category_share() -> None:
    model = _fitted()
    before = model.item_share_.copy()
    adjusted = model.for_available(_sold(0, 1))
    assert isinstance(adjusted, LatentClassRecommender) and adjusted is not model
    assert np.array_equal(model.item_share_, before)  # the original is left alone
    left = CATEGORIES == "left"
    sold_left = left & _sold(0, 1)
    assert adjusted.item_share_[sold_left].sum() == pytest.approx(1.0, abs=1e-5)
    assert adjusted.item_share_[~left].sum() == pytest.approx(1.0, abs=1e-5)
    # Every left item is scaled by the same factor (the gone ones keep their relative share).
    ratio = adjusted.item_share_[left] / before[left]
    assert np.allclose(ratio, 1.0 / before[sold_left].sum(), rtol=1e-5)
    # A left customer's scores for the left items still sold go up by that factor.
    interactions, _ = checkerboard()
    row = np.array([0])
    old = model.scores(row, interactions.matrix[:1])[0]
    new = adjusted.scores(row, interactions.matrix[:1])[0]
    assert np.allclose(new[sold_left], old[sold_left] * ratio[0], rtol=1e-5)
    assert np.allclose(new[~left], old[~left], rtol=1e-5)


def test_the_adjusted_shares_are_saved(tmp_path: Path) -> None:
    adjusted = _fitted().for_available(_sold(2))
    adjusted.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, LatentClassRecommender)
    assert np.array_equal(loaded.item_share_, adjusted.item_share_)


def test_item_level_models_and_everything_sold_change_nothing() -> None:
    interactions, _ = checkerboard()
    item_level = LatentClassRecommender(n_classes=2, smoothing=0.1).fit(interactions)
    assert item_level.for_available(_sold(0)) is item_level
    model = _fitted()
    every = model.for_available(_sold())
    assert np.allclose(every.item_share_, model.item_share_)


def test_a_blend_passes_availability_to_its_members() -> None:
    interactions, _ = checkerboard()
    latent = _fitted()
    popularity = PopularityRecommender().fit(interactions)
    blend = BlendRecommender.from_fitted([latent, popularity], [1.0, 0.1])
    adjusted = blend.for_available(_sold(ITEMS_PER_GROUP))
    assert isinstance(adjusted, BlendRecommender) and adjusted is not blend
    assert blend.members[0] is latent  # the original blend keeps its members
    assert adjusted.members[1] is popularity
    member = adjusted.members[0]
    assert isinstance(member, LatentClassRecommender)
    assert not np.allclose(member.item_share_, latent.item_share_)
    plain = BlendRecommender.from_fitted([popularity], [1.0])
    assert plain.for_available(_sold(0)) is plain


def test_the_bundle_tells_its_models_what_is_sold_at_as_of(
    sample_shop_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[tuple[str, np.ndarray]] = []
    original = Recommender.for_available

    def spy(self: Recommender, available: np.ndarray) -> Recommender:
        told.append((type(self).__name__, np.asarray(available).copy()))
        return original(self, available)

    monkeypatch.setattr(Recommender, "for_available", spy)
    shop = load_shop(sample_shop_dir, as_of=pd.Timestamp("2026-01-01", tz="UTC")).shop
    bundle = fit_recommender_bundle(shop.before(AS_OF), AS_OF, seed=0, time_budget_s=2.0)
    assert {"ItemKNNRecommender", "TrendingRecommender"} <= {name for name, _ in told}
    for _, available in told:
        assert np.array_equal(available, np.asarray(bundle.rules.available, dtype=bool))
