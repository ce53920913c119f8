"""Business rules: exclusion of bought items, repeatability, availability, category, diversity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.recommenders.rules import BusinessRules, repeat_purchase_rates


def _rules(**overrides) -> BusinessRules:
    settings = dict(
        categories=np.array(["dairy", "dairy", "bakery", "bakery", ""]),
        available=np.array([True, True, True, False, True]),
        repeat_rates=np.array([0.9, 0.1, 0.5, 0.5, 0.0], dtype=np.float32),
        repeat_threshold=0.25,
    )
    settings.update(overrides)
    return BusinessRules(**settings)


PURCHASED = sp.csr_matrix(np.array([[1, 1, 0, 0, 0]], dtype=np.float32))


def test_repeat_rates_are_learned_and_shrunk() -> None:
    counts = sp.csr_matrix(np.array([[3, 1, 0], [2, 1, 0], [1, 1, 0]], dtype=np.float32))
    rates = repeat_purchase_rates(counts, prior_strength=0.0)
    assert rates.tolist() == pytest.approx([2 / 3, 0.0, 2 / 6])  # unbought: the shop-wide share
    shrunk = repeat_purchase_rates(counts, prior_strength=5.0)
    overall = 2 / 6
    assert shrunk[0] == pytest.approx((2 + 5 * overall) / (3 + 5))
    assert shrunk[2] == pytest.approx(overall)  # never bought: the shop-wide share


def test_exclusion_modes() -> None:
    rules = _rules()
    everything = rules.blocked(PURCHASED, "all")[0]
    non_repeatable = rules.blocked(PURCHASED, "non-repeatable")[0]
    nothing = rules.blocked(PURCHASED, "none")[0]
    assert everything.tolist() == [True, True, False, True, False]
    assert non_repeatable.tolist() == [False, True, False, True, False]  # item 0 repeats
    assert nothing.tolist() == [False, False, False, True, False]  # item 3 unavailable
    with pytest.raises(ValueError, match="exclude_purchased"):
        rules.blocked(PURCHASED, "some")  # type: ignore[arg-type]


def test_category_override_of_repeatability() -> None:
    rules = _rules(repeatable_categories={"dairy": False})
    assert rules.blocked(PURCHASED, "non-repeatable")[0, 0]
    rules = _rules(repeatable_categories={"dairy": True})
    assert not rules.blocked(PURCHASED, "non-repeatable")[0, 1]


def test_basket_items_and_category_filter() -> None:
    basket = sp.csr_matrix(np.array([[0, 0, 1, 0, 0]], dtype=np.float32))
    blocked = _rules().blocked(PURCHASED, "none", basket=basket, category="bakery")[0]
    assert blocked.tolist() == [True, True, True, True, True]
    blocked = _rules().blocked(PURCHASED, "none", category="dairy")[0]
    assert blocked.tolist() == [False, False, True, True, True]


def test_diversity_caps_each_category() -> None:
    rules = _rules(max_per_category=1)
    items = np.array([[0, 1, 2, 3, 4]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    kept, kept_scores = rules.diversify(items, scores, k=4)
    assert kept[0].tolist() == [0, 2, 4, -1]  # one dairy, one bakery, unknown category free
    assert np.isneginf(kept_scores[0, 3])
