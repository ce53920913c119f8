"""RFM scores and segments, satisfaction and loyalty formulas on hand-made feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.loyalty import (
    SEGMENT_GRID,
    SEGMENTS,
    RFMScorer,
    loyalty_score,
    satisfaction_index,
    segment,
)


def _features(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "days_since_last_order": rng.uniform(0, 300, n),
            "orders": rng.integers(1, 20, n),
            "total_spend": rng.gamma(2.0, 50.0, n),
        }
    )


def test_grid_uses_exactly_the_named_segments() -> None:
    assert {name for row in SEGMENT_GRID for name in row} == set(SEGMENTS)
    assert all(len(row) == 5 for row in SEGMENT_GRID) and len(SEGMENT_GRID) == 5


def test_rfm_scores_are_quintiles_in_the_right_direction() -> None:
    features = _features()
    rfm = RFMScorer().fit(features).transform(features)
    for column in ("rfm_recency", "rfm_frequency", "rfm_monetary"):
        assert set(rfm[column]) <= {1, 2, 3, 4, 5}
    assert rfm["rfm_recency"].value_counts().max() <= 25  # continuous values: even quintiles
    recent = features["days_since_last_order"].idxmin()
    stale = features["days_since_last_order"].idxmax()
    assert rfm.loc[recent, "rfm_recency"] == 5 and rfm.loc[stale, "rfm_recency"] == 1
    richest = features["total_spend"].idxmax()
    assert rfm.loc[richest, "rfm_monetary"] == 5


def test_segment_examples() -> None:
    r, f, m = (
        np.array([5, 5, 1, 1, 3, 2]),
        np.array([5, 1, 5, 1, 3, 1]),
        np.array([5, 1, 5, 1, 3, 2]),
    )
    assert list(segment(r, f, m)) == [
        "Champions",
        "New",
        "Can't lose them",
        "Lost",
        "Need attention",
        "Hibernating",
    ]


def test_unknown_spend_is_scored_in_the_middle() -> None:
    features = _features()
    scorer = RFMScorer().fit(features)
    unpriced = features.head(1).assign(total_spend=np.nan)
    assert scorer.transform(unpriced)["rfm_monetary"].iloc[0] == 3


def test_rfm_round_trip() -> None:
    features = _features()
    scorer = RFMScorer().fit(features)
    again = RFMScorer.from_dict(scorer.to_dict())
    pd.testing.assert_frame_equal(scorer.transform(features), again.transform(features))


def test_satisfaction_is_neutral_without_feedback_and_moves_with_it() -> None:
    rows = pd.DataFrame(
        {
            "ratings": [0, 10, 10, 0, 0],
            "rating_mean": [np.nan, 5.0, 1.0, np.nan, np.nan],
            "complaints": [0, 0, 0, 2, 0],
            "complaints_last_90d": [0, 0, 0, 2, 0],
            "return_rate": [0.0, 0.0, 0.0, 0.0, 0.5],
        }
    )
    score = satisfaction_index(rows)
    assert score[0] == 50.0
    assert score[1] > 85 and score[2] < 15
    assert score[3] == pytest.approx(50 - 50 * 0.6)
    assert score[4] == pytest.approx(50 - 50 * 0.25)
    # a single five-star rating counts for less than ten
    one = satisfaction_index(pd.DataFrame({"ratings": [1], "rating_mean": [5.0]}))
    assert 50 < one[0] < score[1]
    assert satisfaction_index(pd.DataFrame({"orders": [3]}))[0] == 50.0


def test_loyalty_score_bounds_and_direction() -> None:
    best = pd.DataFrame({"rfm_recency": [5], "rfm_frequency": [5], "rfm_monetary": [5]})
    worst = pd.DataFrame({"rfm_recency": [1], "rfm_frequency": [1], "rfm_monetary": [1]})
    assert loyalty_score(best, np.array([0.0]), np.array([100.0]))[0] == 100.0
    assert loyalty_score(worst, np.array([1.0]), np.array([0.0]))[0] == 0.0
    low_churn = loyalty_score(best, np.array([0.1]), np.array([50.0]))[0]
    high_churn = loyalty_score(best, np.array([0.9]), np.array([50.0]))[0]
    assert low_churn - high_churn == pytest.approx(100 * 0.2 * 0.8)


def test_one_time_buyers_score_lowest_frequency_when_they_are_most_customers() -> None:
    """60% one-time buyers make the lower quintile edges all 1: those customers must get F = 1,
    and a recent one-time buyer with a small first order is 'New' (not 'Loyal')."""
    rng = np.random.default_rng(1)
    n = 1000
    features = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "days_since_last_order": rng.uniform(0, 300, n),
            "orders": np.where(rng.uniform(size=n) < 0.6, 1, rng.integers(2, 12, n)),
            "total_spend": rng.gamma(2.0, 50.0, n),
        }
    )
    scorer = RFMScorer().fit(features)
    rfm = scorer.transform(features)
    once = features["orders"] == 1
    assert (rfm.loc[once, "rfm_frequency"] == 1).all()
    assert (rfm.loc[~once, "rfm_frequency"] > 1).all()
    newcomer = pd.DataFrame(
        {"customer_id": ["N"], "days_since_last_order": [1.0], "orders": [1], "total_spend": [5.0]}
    )
    assert scorer.transform(newcomer)["segment"].iloc[0] == "New"
    assert {"New", "Promising"} <= set(rfm["segment"])
