"""Folding posted events into a factor model: the customer's vector re-solved from the updated
row is implicit's own `recalculate_user`, and a blend scores updated rows through it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from models.recommenders import ALSRecommender, BlendRecommender, ItemKNNRecommender
from models.recommenders.base import row_normalise
from models.recommenders.fresh_row import RANK_DEPTH, rank_scaled, with_next_need
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


def test_next_need_adds_normalised_basket_scores_to_the_champions_places() -> None:
    scores = np.array([[2.0, -4.0, 1.0, 0.0, -np.inf]], dtype=np.float32)
    columns, basket = np.array([1, 3]), np.array([0.5, 2.0], dtype=np.float32)
    assert with_next_need(scores, columns, basket, 0.0) is scores
    assert with_next_need(scores, columns[:0], basket[:0], 1.0) is scores
    places = [1.0, 10 / 13, 10 / 11, 10 / 12]  # the champion places them 1st, 4th, 2nd, 3rd
    np.testing.assert_allclose(
        with_next_need(scores, columns, basket, 0.5),
        [[places[0], places[1] + 0.125, places[2], places[3] + 0.5, -np.inf]],
        rtol=1e-6,
    )


def test_next_need_means_the_same_whatever_the_champions_score_scale() -> None:
    """A champion's scores by any increasing transform (a flat top ten or a steep one) give
    the same sum: the weight does not depend on the model that won."""
    rng = np.random.default_rng(3)
    scores = rng.random((1, 300)).astype(np.float32)
    columns = np.sort(rng.choice(300, size=20, replace=False))
    basket = rng.random(20).astype(np.float32)
    flat = (0.99 + 0.01 * scores).astype(np.float32)
    steep = np.exp(8 * scores).astype(np.float32)
    expected = with_next_need(scores, columns, basket, 0.3)
    for rescaled in (flat, steep, 5 * scores):
        np.testing.assert_allclose(with_next_need(rescaled, columns, basket, 0.3), expected)


def test_places_beyond_the_exact_depth_keep_the_champions_order() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(2, RANK_DEPTH + 500)).astype(np.float32)
    scores[1, :7] = -np.inf
    scaled = rank_scaled(scores)
    for row in range(2):
        finite = np.isfinite(scores[row])
        order = np.argsort(-scores[row][finite], kind="stable")
        assert (np.diff(scaled[row][finite][order]) <= 0).all()  # never out of order
        assert np.isneginf(scaled[row][~finite]).all()
        assert scaled[row].max() == 1.0
        assert len(np.unique(scaled[row][finite][order[:RANK_DEPTH]])) == RANK_DEPTH
