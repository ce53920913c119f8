"""Labels for supervised models: did a customer order again within a horizon after `as_of`?

Labels look at orders in `[as_of, as_of + horizon)`, so they are only meaningful when the shop's
data reaches `as_of + horizon`; the caller (backtests) chooses `as_of` accordingly.
"""

from __future__ import annotations

import pandas as pd

from features.engines import as_of_utc
from features.shop import Shop

DEFAULT_HORIZON_DAYS = 90


def churn_labels(
    shop: Shop, as_of: pd.Timestamp | str, horizon_days: float = DEFAULT_HORIZON_DAYS
) -> pd.Series:
    """1 = churned (no order in `[as_of, as_of + horizon_days)`), 0 = ordered again.

    One entry (int64) per customer with at least one order before `as_of` (UTC, exclusive),
    indexed by `customer_id` (sorted), named `churned`. Raises ValueError when `horizon_days` is
    not positive or `as_of` is not a time."""
    bought = buy_labels(shop, as_of, horizon_days)
    return (1 - bought).rename("churned")


def buy_labels(
    shop: Shop, as_of: pd.Timestamp | str, horizon_days: float = DEFAULT_HORIZON_DAYS
) -> pd.Series:
    """1 = ordered at least once in `[as_of, as_of + horizon_days)`, else 0 (`1 - churned`).

    Same customers, index and errors as `churn_labels`; named `bought`."""
    if not horizon_days > 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days!r}")
    as_of = as_of_utc(as_of)
    end = as_of + pd.Timedelta(days=horizon_days)
    ordered_at = shop.purchases["ordered_at"]
    customer_ids = shop.purchases["customer_id"].astype(str)
    known = pd.Index(customer_ids[ordered_at < as_of].unique()).sort_values()
    came_back = customer_ids[(ordered_at >= as_of) & (ordered_at < end)].unique()
    labels = pd.Series(known.isin(came_back).astype("int64"), index=known, name="bought")
    labels.index.name = "customer_id"
    return labels


def spend_labels(
    shop: Shop, as_of: pd.Timestamp | str, horizon_days: float = DEFAULT_HORIZON_DAYS
) -> pd.Series:
    """What each customer spent in `[as_of, as_of + horizon_days)`: the sum of quantity x
    unit price of their order lines there, in the shop's currency (0 when they did not order;
    an unpriced line counts 0).

    Same customers, index and errors as `churn_labels`; float64, named `spend`."""
    bought = buy_labels(shop, as_of, horizon_days)
    as_of = as_of_utc(as_of)
    end = as_of + pd.Timedelta(days=horizon_days)
    purchases = shop.purchases
    ordered_at = purchases["ordered_at"]
    inside = purchases[(ordered_at >= as_of) & (ordered_at < end)]
    value = inside["quantity"].astype("float64") * inside["unit_price"].astype("float64")
    spent = value.fillna(0.0).groupby(inside["customer_id"].astype(str)).sum()
    labels = spent.reindex(bought.index, fill_value=0.0).astype("float64").rename("spend")
    labels.index.name = "customer_id"
    return labels
