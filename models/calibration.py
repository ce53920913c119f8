"""Calibration of probabilities: equal-width probability bins and the expected calibration error.

The one implementation behind the churn backtest's `ece` metric (`training.customer_backtest`),
the report's calibration figure (`training.report`) and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

CALIBRATION_BINS = 10
"""Equal-width bins over [0, 1]: 0-0.1, 0.1-0.2, ..., 0.9-1 (1.0 falls in the last one)."""


@dataclass(frozen=True)
class CalibrationBins:
    """The occupied bins, lowest probability first (empty bins are left out)."""

    bin: NDArray[np.int64]
    """Bin number, 0 .. n_bins - 1."""
    count: NDArray[np.int64]
    """Rows in the bin."""
    predicted: NDArray[np.float64]
    """Mean predicted probability of the bin's rows."""
    observed: NDArray[np.float64]
    """Share of the bin's rows whose label is 1 (the observed rate)."""


def calibration_bins(
    label: ArrayLike, probability: ArrayLike, n_bins: int = CALIBRATION_BINS
) -> CalibrationBins:
    """Rows grouped into `n_bins` equal-width bins of `probability` (0..1; values outside are
    put in the first or last bin), with each bin's mean prediction and observed rate of
    `label` (1 = the event happened, e.g. churned). A NaN probability lands in the first bin
    and makes that bin's prediction NaN."""
    label = np.asarray(label)
    probability = np.asarray(probability)
    bins = np.clip((probability * n_bins).astype(int), 0, n_bins - 1)
    occupied = np.unique(bins)
    count = np.empty(len(occupied), dtype=np.int64)
    predicted = np.empty(len(occupied), dtype=np.float64)
    observed = np.empty(len(occupied), dtype=np.float64)
    for position, number in enumerate(occupied):
        inside = bins == number
        count[position] = inside.sum()
        observed[position] = label[inside].mean()
        predicted[position] = probability[inside].mean()
    return CalibrationBins(
        bin=occupied.astype(np.int64), count=count, predicted=predicted, observed=observed
    )


def expected_calibration_error(
    label: ArrayLike, probability: ArrayLike, n_bins: int = CALIBRATION_BINS
) -> float:
    """Mean |observed rate - mean prediction| over the `calibration_bins`, weighted by the
    bins' sizes; 0 is perfectly calibrated, 0.0 for no rows."""
    bins = calibration_bins(label, probability, n_bins)
    total = 0.0
    # summed bin by bin, lowest first: the order (and so the last bits) the backtests and
    # benchmarks have always reported
    for count, observed, predicted in zip(bins.count, bins.observed, bins.predicted, strict=True):
        total += count * abs(observed - predicted)
    return float(total / max(len(np.asarray(probability)), 1))
