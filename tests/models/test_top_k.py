"""`top_k` and `row_normalise` (models/recommenders/base.py) against plain references: a stable
full sort (best first, ties to the lower column, -inf never returned) and the masked maximum.
Random rows cover the block pre-selection's cases: wide catalogs, heavy ties, mostly -inf."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommenders.base import TOP_K_BLOCK, row_normalise, top_k


def _reference_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(scores, order, axis=1)
    return np.where(np.isneginf(values), -1, order), values


def _reference_normalise(scores: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(scores), np.abs(scores), 0.0)
    scale = finite.max(axis=1, keepdims=True)
    return np.divide(scores, scale, out=np.zeros_like(scores), where=scale > 0)


def _rows(rng: np.random.Generator, kind: str, n_rows: int, n_cols: int) -> np.ndarray:
    if kind == "distinct":
        return rng.random((n_rows, n_cols)).astype(np.float32)
    if kind == "ties":
        return rng.integers(0, 4, (n_rows, n_cols)).astype(np.float32)
    scores = rng.random((n_rows, n_cols)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.98] = -np.inf  # blocked items
    scores[0] = -np.inf  # a customer with nothing left to recommend
    return scores


@pytest.mark.parametrize("kind", ["distinct", "ties", "mostly_blocked"])
@pytest.mark.parametrize("n_cols", [7, 40 * TOP_K_BLOCK, 40 * TOP_K_BLOCK + 37])
def test_top_k_equals_a_stable_full_sort(kind: str, n_cols: int) -> None:
    rng = np.random.default_rng(n_cols)
    for k in (1, 3, 10):
        scores = _rows(rng, kind, 6, n_cols)
        items, values = top_k(scores, k)
        expected_items, expected_values = _reference_top_k(scores, min(k, n_cols))
        np.testing.assert_array_equal(items[:, : min(k, n_cols)], expected_items)
        np.testing.assert_array_equal(values[:, : min(k, n_cols)], expected_values)
        for row in range(len(scores)):  # one row alone (a request's) takes its own path
            one_items, one_values = top_k(scores[row : row + 1], k)
            np.testing.assert_array_equal(one_items, items[row : row + 1])
            np.testing.assert_array_equal(one_values, values[row : row + 1])


def test_top_k_never_returns_nan() -> None:
    scores = np.random.default_rng(1).random((3, 40 * TOP_K_BLOCK)).astype(np.float32)
    scores[:, :5] = np.nan
    items, _ = top_k(scores, 10)
    assert not np.isin(items, np.arange(5)).any()
    one, _ = top_k(scores[:1], 10)
    np.testing.assert_array_equal(one, items[:1])


def test_row_normalise_uses_the_largest_finite_value() -> None:
    scores = np.random.default_rng(2).normal(size=(5, 300)).astype(np.float32)
    scores[1, 3] = np.inf
    scores[2, 4] = np.nan
    scores[3] = 0.0
    np.testing.assert_array_equal(row_normalise(scores), _reference_normalise(scores))
