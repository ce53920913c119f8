"""Folding posted events into a factor model: the customer's vector re-solved from the updated
row is implicit's own `recalculate_user`, and a blend scores updated rows through it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from models.recommenders import ALSRecommender, BlendRecommender, ItemKNNRecommender
from models.recommenders.base import row_normalise
from models.recommenders.fresh_row import with_next_need
from tests.models.test_recommender_contract import checkerboard


def _fitted_als() -> tuple[ALSRecommender, sp.csr_matrix]:
    interactions, co_purchase = checkerboard()
    model = ALSRecommender(factors=4, regularization=0.1, iterations=10, alpha=3.0)
    return model.fit(interactions, co_purchase), sp.csr_matrix(interactions.matrix)


def test_recalculated_vector_is_implicits_recalculate_user() -> None:
    model, matrix = _fitted_als()
    # Two customers, each with an item of the other group added (bought since the fit).
    updated = sp.lil_matrix(matrix[[0, 13]])
    updated[0, 9] = 1.0
    updated[1, 2] = 2.0
    updated = sp.csr_matrix(updated, dtype=np.float32)
    theirs = AlternatingLeastSquares(
        factors=4, regularization=0.1, alpha=3.0, iterations=1, random_state=0
    )
    theirs.item_factors = model.item_factors_.copy()
    theirs.user_factors = model.user_factors_.copy()
    expected = theirs.recalculate_user(np.array([0, 13]), updated)
    ours = model._recalculated(updated)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        model.updated_scores(np.array([0, 13]), updated),
        expected @ model.item_factors_.T,
        rtol=1e-4,
        atol=1e-5,
    )
    # The stored vectors are untouched and still answer `scores`.
    stored = model.scores(np.array([0]), matrix[[0]])
    np.testing.assert_allclose(stored[0], model.user_factors_[0] @ model.item_factors_.T)


def test_blend_scores_updated_rows_through_its_members() -> None:
    model, matrix = _fitted_als()
    interactions, co_purchase = checkerboard()
    knn = ItemKNNRecommender("cosine", neighbours=20).fit(interactions, co_purchase)
    blend = BlendRecommender.from_fitted([model, knn], [1.0, 0.5])
    updated = sp.csr_matrix(matrix[[3]] + sp.csr_matrix(([2.0], ([0], [10])), shape=(1, 16)))
    expected = row_normalise(model.updated_scores(np.array([3]), updated)) + np.float32(
        0.5
    ) * row_normalise(knn.scores(np.array([3]), updated))
    np.testing.assert_allclose(blend.updated_scores(np.array([3]), updated), expected, rtol=1e-6)
    assert not np.allclose(blend.scores(np.array([3]), updated), expected)


def test_next_need_adds_normalised_basket_scores_and_weight_zero_changes_nothing() -> None:
    scores = np.array([[2.0, -4.0, 1.0, 0.0]], dtype=np.float32)
    columns, basket = np.array([1, 3]), np.array([0.5, 2.0], dtype=np.float32)
    assert with_next_need(scores, columns, basket, 0.0) is scores
    assert with_next_need(scores, columns[:0], basket[:0], 1.0) is scores
    np.testing.assert_allclose(
        with_next_need(scores, columns, basket, 0.5),
        [[0.5, -1.0 + 0.125, 0.25, 0.5]],
        rtol=1e-6,
    )
