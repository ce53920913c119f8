"""The churn bags fitted side by side (joblib threads) give the very same model as one by one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.churn import ChurnModel, _bag_workers


def test_thread_budget_splits_between_bags() -> None:
    assert _bag_workers(5, 1) == (1, 1)
    assert _bag_workers(5, 2) == (2, 1)
    assert _bag_workers(2, 4) == (2, 2)
    assert _bag_workers(1, 4) == (1, 4)


def test_parallel_bags_equal_sequential_bags() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "days_since_last_order": rng.random(600) * 200,
            "orders": rng.integers(1, 9, 600),
            "complaints": rng.integers(0, 3, 600),
            "rating_mean": rng.random(600) * 4 + 1,
        }
    )
    churned = (frame["days_since_last_order"] / 200 + rng.normal(0, 0.3, 600) > 0.5).astype(int)
    one = ChurnModel(max_iter=40, n_bags=4, n_threads=1).fit(frame, churned)
    two = ChurnModel(max_iter=40, n_bags=4, n_threads=2).fit(frame, churned)
    np.testing.assert_array_equal(one.predict_proba(frame), two.predict_proba(frame))
