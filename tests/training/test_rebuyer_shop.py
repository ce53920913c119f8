"""`patronage train` on a shop of pure re-buyers: no customer ever buys an item new to them
after their first order, so the validation window holds nothing for the discovery role to be
judged on. Training used to stop there ("no customer has a relevant item"); now discovery takes
the repeat role's winner, says so in the selection report, and the run logs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import MlflowStore
from training.pipeline import TrainOptions, train
from training.registry import RECOMMENDER

START = pd.Timestamp("2025-01-06 10:00", tz="UTC")
DAYS = 200
CUSTOMERS, ITEMS = 220, 40
"""More customers than `validation_scheme.MIN_VALIDATION_CUSTOMERS` order in the last window,
so selection judges on it, as it did when training failed."""


def write_rebuyer_shop(directory: Path, seed: int = 0) -> None:
    """purchases.csv: each customer's first order holds all 4 items of their own set (drawn by
    a popularity curve); every later order, every 7-13 days, 2 of those 4 again."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, ITEMS + 1) ** 0.7
    popularity /= popularity.sum()
    lines = []
    for customer in range(CUSTOMERS):
        own = rng.choice(ITEMS, size=4, replace=False, p=popularity)
        day, order = float(rng.uniform(0, 5)), 0
        while day < DAYS:
            picked = own if order == 0 else rng.choice(own, size=2, replace=False)
            at = (START + pd.Timedelta(days=day)).isoformat()
            lines += [
                {
                    "order_id": f"c{customer}-{order}",
                    "customer_id": f"c{customer:03d}",
                    "item_id": f"i{item:02d}",
                    "quantity": 1,
                    "unit_price": 2.0,
                    "ordered_at": at,
                }
                for item in picked
            ]
            order += 1
            day += float(rng.uniform(7, 13))
    directory.mkdir(parents=True)
    pd.DataFrame(lines).to_csv(directory / "purchases.csv", index=False)


def test_a_shop_of_pure_rebuyers_trains_and_logs_the_discovery_fallback(
    tmp_path: Path, mlflow_store: MlflowStore
) -> None:
    import mlflow

    shop_dir = tmp_path / "rebuyers"
    write_rebuyer_shop(shop_dir)
    result = train(
        TrainOptions(
            directory=shop_dir,
            roles=(RECOMMENDER,),
            tracking_uri=mlflow_store.tracking_uri,
            progress=False,
            time_budget_s=1.0,
            rejects_dir=tmp_path / "rejects",
        )
    )
    assert [o.name for o in result.outcomes] == [RECOMMENDER], result.skipped
    # The backtest found nothing new bought either: no discovery metrics, repeat ones only.
    assert "discovery_ndcg_at_10" not in result.backtest[RECOMMENDER]["model"]
    run = mlflow.get_run(result.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["recommender.selection.validation_scheme"] == "last_window"
    assert params["recommender.selection.discovery_rule"] == "fallback"
    assert params["recommender.selection.repeat_rule"] == "validation"
    repeat_winner = params["recommender.selection.repeat_winner"]
    assert params["recommender.selection.discovery_winner"] == repeat_winner
    assert metrics["fit.recommender.selection.validation_customers"] >= 200
