"""The one ECE and calibration-bin implementation: a hand computation, and the same numbers as
the two copies it replaced (the backtest's loop and the report's bincount)."""

from __future__ import annotations

import numpy as np

from models.calibration import calibration_bins, expected_calibration_error
from training.customer_backtest import churn_metrics


def test_ece_equals_a_hand_computation() -> None:
    label = np.array([0, 1, 1, 0, 1])
    probability = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    # bins: 0.05 -> 0; 0.15, 0.12 -> 1; 0.95 and 1.0 (clipped) -> 9
    # |observed - predicted| x rows: 1 x |0 - 0.05| + 2 x |1 - 0.135| + 2 x |0.5 - 0.975|
    hand = (0.05 + 2 * 0.865 + 2 * 0.475) / 5
    assert abs(expected_calibration_error(label, probability) - hand) < 1e-12
    bins = calibration_bins(label, probability)
    assert bins.bin.tolist() == [0, 1, 9]
    assert bins.count.tolist() == [1, 2, 2]
    np.testing.assert_allclose(bins.predicted, [0.05, 0.135, 0.975])
    np.testing.assert_allclose(bins.observed, [0.0, 1.0, 0.5])


def test_ece_is_zero_when_calibrated_and_for_no_rows() -> None:
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def _previous_backtest_ece(churned: np.ndarray, probability: np.ndarray) -> float:
    # training.customer_backtest.expected_calibration_error as it was before the merge
    bins = np.clip((np.asarray(probability) * 10).astype(int), 0, 9)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(churned[inside].mean() - probability[inside].mean())
    return float(total / max(len(probability), 1))


def test_same_numbers_as_the_implementations_it_replaces() -> None:
    rng = np.random.default_rng(7)
    for size in (1, 13, 1000, 20_001):
        probability = rng.random(size) ** 2
        label = (rng.random(size) < probability).astype(np.int64)
        # bit for bit: the backtests' and benchmarks' ECE must not move
        assert expected_calibration_error(label, probability) == _previous_backtest_ece(
            label, probability
        )
        assert churn_metrics(label, probability)["ece"] == _previous_backtest_ece(
            label, probability
        )
        # the report's figure computed its points with bincount
        binned = np.clip((probability * 10).astype(int), 0, 9)
        counts = np.bincount(binned, minlength=10)
        present = counts > 0
        bins = calibration_bins(label, probability)
        np.testing.assert_array_equal(bins.count, counts[present])
        np.testing.assert_allclose(
            bins.predicted,
            np.bincount(binned, weights=probability, minlength=10)[present] / counts[present],
        )
        np.testing.assert_allclose(
            bins.observed,
            np.bincount(binned, weights=label, minlength=10)[present] / counts[present],
        )
