"""The default `exclude_purchased` rule is learned per shop on its validation window: where
customers buy the same items again it keeps bought items (as `none`), where nobody buys an
item twice it leaves them out (as `all`), and the saved bundle keeps the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.shop import Shop
from models.recommenders.bundle import RecommenderBundle, fit_recommender_bundle

START = pd.Timestamp("2025-01-06 10:00", tz="UTC")
CUSTOMERS, ITEMS, DAYS = 300, 60, 200
AS_OF = START + pd.Timedelta(days=DAYS)


def _shop(rebuy: bool, seed: int) -> Shop:
    """`CUSTOMERS` customers ordering every 7-13 days over `DAYS` days, 3 items an order,
    drawn by a popularity curve over `ITEMS` items. `rebuy`: each customer buys mostly from a
    personal set of 6 items, again and again (one order in five adds an item drawn from the
    whole catalogue); otherwise nobody buys an item twice (each order draws from the items
    the customer has not bought yet)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, ITEMS + 1) ** 0.7
    popularity /= popularity.sum()
    lines = []
    for customer in range(CUSTOMERS):
        favourites = rng.choice(ITEMS, size=6, replace=False, p=popularity)
        bought: set[int] = set()
        day = float(rng.uniform(0, 10))
        order = 0
        while day < DAYS:
            if rebuy:
                picked = rng.choice(favourites, size=3, replace=False)
                if rng.random() < 0.2:
                    picked[0] = rng.choice(ITEMS, p=popularity)
            else:
                left = np.array([i for i in range(ITEMS) if i not in bought])
                if len(left) < 3:
                    break
                weights = popularity[left] / popularity[left].sum()
                picked = rng.choice(left, size=3, replace=False, p=weights)
                bought.update(int(i) for i in picked)
            for item in picked:
                lines.append(
                    {
                        "order_id": f"c{customer}-{order}",
                        "customer_id": f"c{customer:03d}",
                        "item_id": f"i{item:02d}",
                        "quantity": 1,
                        "unit_price": 2.0,
                        "ordered_at": START + pd.Timedelta(days=day),
                    }
                )
            order += 1
            day += float(rng.uniform(7, 13))
    purchases = pd.DataFrame(lines)
    feedback = pd.DataFrame(
        {
            "customer_id": pd.Series(dtype=str),
            "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "kind": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "rating": pd.Series(dtype="Int64"),
        }
    )
    items = pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(ITEMS)], "available": True})
    customers = pd.DataFrame({"customer_id": sorted(purchases["customer_id"].unique())})
    return Shop(purchases, feedback, items, customers)


def _lists(bundle: RecommenderBundle, rule: str) -> list[list[str]]:
    customers = [str(c) for c in bundle.customer_ids[:100]]
    return [a.item_ids for a in bundle.recommend_many(customers, k=10, exclude_purchased=rule)]


@pytest.fixture(scope="module")
def rebuying() -> RecommenderBundle:
    return fit_recommender_bundle(_shop(True, 1), AS_OF, seed=0, time_budget_s=2.0)


@pytest.fixture(scope="module")
def never_again() -> RecommenderBundle:
    return fit_recommender_bundle(_shop(False, 2), AS_OF, seed=0, time_budget_s=2.0)


def test_a_shop_that_buys_again_keeps_bought_items_by_default(
    rebuying: RecommenderBundle, tmp_path: Path
) -> None:
    chosen = rebuying.report["default_exclusion"]
    assert chosen["rule"] == "none", chosen
    scores = chosen["validation_ndcg"]
    assert scores["none"] > scores["all"]
    assert rebuying.rules.repeatable.all()
    default = _lists(rebuying, "non-repeatable")
    assert default == _lists(rebuying, "none")
    assert default != _lists(rebuying, "all")
    rebuying.save(tmp_path / "bundle")
    assert _lists(RecommenderBundle.load(tmp_path / "bundle"), "non-repeatable") == default


def test_a_shop_where_nobody_buys_twice_leaves_bought_items_out_by_default(
    never_again: RecommenderBundle, tmp_path: Path
) -> None:
    chosen = never_again.report["default_exclusion"]
    assert chosen["rule"] == "all", chosen
    scores = chosen["validation_ndcg"]
    assert scores["all"] > scores["none"]
    assert not never_again.rules.repeatable.any()
    default = _lists(never_again, "non-repeatable")
    assert default == _lists(never_again, "all")
    assert default != _lists(never_again, "none")
    customer = str(never_again.customer_ids[0])
    answer = never_again.recommend_for(customer, k=10)
    assert answer.strategy == never_again.strategies["discovery"]
    never_again.save(tmp_path / "bundle")
    loaded = RecommenderBundle.load(tmp_path / "bundle")
    assert loaded.default_role == "discovery"
    assert _lists(loaded, "non-repeatable") == default
