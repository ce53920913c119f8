"""The time-aware re-purchase model on a planted cycle: an item one customer buys every 7 days
ranks first 7 days after its last purchase and not the day after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.interactions import InteractionsBuilder
from features.shop import Shop
from models.recommenders.popularity import RepeatPurchaseRecommender
from models.recommenders.repeat_cycle import RepeatCycleRecommender, RepeatFrequencyRecommender

START = pd.Timestamp("2025-03-03 12:00", tz="UTC")
WEEKS = 10
LAST_WEEKLY_DAY = 7 * (WEEKS - 1)
"""The planted customer buys `weekly` on days 0, 7, ..., 63 and `other` 4 days after each."""


def _line(customer: str, day: int, item: str) -> dict[str, object]:
    return {
        "order_id": f"{customer}-{day}",
        "customer_id": customer,
        "item_id": item,
        "quantity": 1,
        "unit_price": 1.0,
        "ordered_at": START + pd.Timedelta(days=day),
    }


def planted_shop() -> Shop:
    """`regular` buys `weekly` every 7 days and `other` 4 days after each; 20 other
    customers buy `weekly`, `other` and `popular` together every 7 days (so each item's own
    cycle is 7 days and `popular` sells most); nobody buys after day 70."""
    lines = []
    for week in range(WEEKS + 1):
        lines.append(_line("regular", 7 * week, "weekly"))
        lines.append(_line("regular", 7 * week + 4, "other"))
        for k in range(20):
            for item in ("weekly", "other", "popular"):
                lines.append(_line(f"p{k:02d}", 7 * week + k % 7, item))
    purchases = pd.DataFrame(lines)
    purchases = purchases.loc[purchases["ordered_at"] <= START + pd.Timedelta(days=70)]
    feedback = pd.DataFrame(
        {
            "customer_id": pd.Series(dtype=str),
            "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "kind": pd.Series(dtype=str),
            "item_id": pd.Series(dtype=str),
            "rating": pd.Series(dtype="Int64"),
        }
    )
    items = pd.DataFrame({"item_id": ["other", "popular", "weekly"], "available": True})
    customers = pd.DataFrame({"customer_id": sorted(purchases["customer_id"].unique())})
    return Shop(purchases.reset_index(drop=True), feedback, items, customers)


def _top_item(model_class: type, days_after: float, **params: float | bool) -> str:
    """The regular customer's first item at `days_after` days after their last `weekly`."""
    as_of = START + pd.Timedelta(days=LAST_WEEKLY_DAY + days_after)
    interactions = InteractionsBuilder(planted_shop(), as_of).build(None)
    model = model_class(**params).fit(interactions)
    row = interactions.customer_rows(["regular"])
    items, _ = model.recommend(row, interactions.matrix[row], k=3)
    return str(interactions.item_ids[items[0, 0]])


@pytest.mark.parametrize("shape", [2.0, 3.0])
def test_a_weekly_item_ranks_first_on_day_7_and_not_on_day_1(shape: float) -> None:
    params = {"shape": shape, "popularity_weight": 0.1, "next_order_due": True}
    assert _top_item(RepeatCycleRecommender, 1.0, **params) != "weekly"
    assert _top_item(RepeatCycleRecommender, 7.0, **params) == "weekly"


def test_frequency_alone_offers_the_item_bought_yesterday() -> None:
    """On day 1 `weekly` has the most purchases (one more than `other`): the plain
    re-purchase model ranks it first the day after it was bought; the cycle model does not."""
    assert _top_item(RepeatPurchaseRecommender, 1.0, popularity_weight=0.1) == "weekly"


def test_timing_counts_orders_and_ages_in_days() -> None:
    as_of = START + pd.Timedelta(days=LAST_WEEKLY_DAY + 1)
    builder = InteractionsBuilder(planted_shop(), as_of)
    timing = builder.timing()
    row = int(builder.build(None).customer_rows(["regular"])[0])
    column = int(np.flatnonzero(builder.item_ids == "weekly")[0])
    assert timing.orders[row, column] == WEEKS
    assert timing.last_age_days[row, column] == pytest.approx(1.0)
    assert timing.first_age_days[row, column] == pytest.approx(LAST_WEEKLY_DAY + 1.0)
    assert timing.customer_orders[row] == 2 * WEEKS - 1  # the 10th `other` is after as_of
    assert timing.customer_span_days[row] == pytest.approx(LAST_WEEKLY_DAY)


def test_interactions_without_timing_are_refused() -> None:
    interactions = InteractionsBuilder(planted_shop(), START + pd.Timedelta(days=30)).build(None)
    bare = type(interactions)(interactions.matrix, interactions.customer_ids, interactions.item_ids)
    with pytest.raises(ValueError, match="purchase timing"):
        RepeatCycleRecommender().fit(bare)


def _lately_shop() -> Shop:
    """`shopper` orders every 7 days for 10 weeks: `old` in each of the first 6 orders, `new`
    in each of the last 3, `fuel` once in the first order at 5,000 units (20 other customers
    buy `old` once, so it also sells most)."""
    shop = planted_shop()
    lines = [_line("shopper", 7 * week, "filler") for week in range(WEEKS)]
    lines += [_line("shopper", 7 * week, "old") for week in range(6)]
    lines += [_line("shopper", 7 * week, "new") for week in range(WEEKS - 3, WEEKS)]
    lines += [{**_line("shopper", 0, "fuel"), "quantity": 5000}]
    lines += [_line(f"p{k:02d}", 3, "old") for k in range(20)]
    purchases = pd.concat([shop.purchases, pd.DataFrame(lines)], ignore_index=True)
    names = ["filler", "fuel", "new", "old", "other", "popular", "weekly"]
    items = pd.DataFrame({"item_id": names, "available": True})
    customers = pd.DataFrame({"customer_id": sorted(purchases["customer_id"].unique())})
    return Shop(purchases, shop.feedback, items, customers)


def _shopper_ranking(half_life_orders: float) -> list[str]:
    as_of = START + pd.Timedelta(days=7 * WEEKS)
    interactions = InteractionsBuilder(_lately_shop(), as_of).build(None)
    model = RepeatFrequencyRecommender(half_life_orders=half_life_orders).fit(interactions)
    row = interactions.customer_rows(["shopper"])
    items, _ = model.recommend(row, interactions.matrix[row], k=7)
    return [str(interactions.item_ids[i]) for i in items[0]]


def test_decayed_frequency_puts_recent_orders_first_and_counts_orders_not_units() -> None:
    """With a half-life of 2 of the shopper's orders, 3 recent orders of `new` beat 6 old ones
    of `old`; with a half-life of 1,000 orders the 6 orders win. `fuel`, one order of 5,000
    units (9.5 times a unit's weight in the history matrix), stays below the 3 orders of `new`:
    an order counts once whatever the quantity."""
    assert _shopper_ranking(2.0)[:3] == ["filler", "new", "old"]
    assert _shopper_ranking(1000.0)[:4] == ["filler", "old", "new", "fuel"]
