"""Point-in-time item features: popularity, trend, repeat purchases, ratings, returns.

One row per item of the shop's items table. Like the customer features these are Ibis
expressions (`item_feature_table`) run on DuckDB by default or on Spark, using only rows dated
strictly before `as_of`. Columns, units and missing-value meanings: docs/features.md.
"""

from __future__ import annotations

import math
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.engines import (
    SECONDS_PER_DAY,
    ShopTables,
    as_of_second,
    as_of_utc,
    before,
    connect,
    epoch_second,
    shop_queries,
)
from features.frames import FLOAT, canonical_frame
from features.shop import Shop

TREND_WINDOWS_DAYS = (30, 90)
"""Windows of the `buyers_last_*d` / `units_last_*d` trending features, in days."""
TREND_HALF_LIFE_DAYS = 30.0
"""`trend_score`: a unit bought this many days before `as_of` counts half."""

ITEM_COUNT_COLUMNS = (
    "buyers",
    "units",
    "orders",
    "purchase_lines",
    *(f"buyers_last_{days}d" for days in TREND_WINDOWS_DAYS),
    *(f"units_last_{days}d" for days in TREND_WINDOWS_DAYS),
    "ratings",
    "returns",
)
"""Item columns that are whole counts (int64; 0 for an item nobody bought before `as_of`)."""


def item_features(
    shop: Shop,
    as_of: pd.Timestamp | str,
    engine: str = "duckdb",
    connection: Any = None,
    half_life_days: float = TREND_HALF_LIFE_DAYS,
) -> pd.DataFrame:
    """Item features at `as_of` (exclusive, UTC): one row per item of `shop.items`, by item_id.

    `item_id` and `category` (missing when unknown) first; counts int64 (0 for an item nobody
    bought before `as_of`), rates float64 (NaN when not defined). Raises ValueError on a bad
    `as_of`, engine or `half_life_days`."""
    as_of = as_of_utc(as_of)
    backend = connect(engine, connection)
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
    with shop_queries(backend, shop) as query:
        frame = query(_features_on, as_of, float(half_life_days))
    return canonical_frame(frame, "item_id", ITEM_COUNT_COLUMNS, text_columns=("category",))


def _features_on(tables: ShopTables, as_of: pd.Timestamp, half_life_days: float) -> ir.Table:
    """`item_feature_table` over a `ShopTables` (for `shop_queries`)."""
    return item_feature_table(
        tables.purchases, tables.feedback, tables.items, as_of, half_life_days
    )


def item_feature_table(
    purchases: ir.Table,
    feedback: ir.Table,
    items: ir.Table,
    as_of: pd.Timestamp | str,
    half_life_days: float = TREND_HALF_LIFE_DAYS,
) -> ir.Table:
    """The item feature expression over Ibis tables with the contract's columns (any engine)."""
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
    as_of = as_of_utc(as_of)
    now = as_of_second(as_of)
    lines = purchases.filter(before(purchases.ordered_at, as_of))
    lines = lines.mutate(t=epoch_second(lines.ordered_at))
    age_days = (now - lines.t).cast(FLOAT) / SECONDS_PER_DAY
    decay = (age_days * (-math.log(2.0) / half_life_days)).exp()
    recent = {days: lines.t >= now - days * SECONDS_PER_DAY for days in TREND_WINDOWS_DAYS}
    sales = lines.group_by("item_id").aggregate(
        buyers=lines.customer_id.nunique(),
        units=lines.quantity.sum(),
        orders=lines.order_id.nunique(),
        purchase_lines=lines.count(),
        **{
            f"buyers_last_{days}d": ibis.ifelse(inside, lines.customer_id, ibis.null("string"))
            .nunique()
            .cast("int64")
            for days, inside in recent.items()
        },
        **{
            f"units_last_{days}d": ibis.ifelse(inside, lines.quantity, 0).sum()
            for days, inside in recent.items()
        },
        trend_score=(lines.quantity.cast(FLOAT) * decay).sum(),
    )
    per_buyer = lines.group_by(["item_id", "customer_id"]).aggregate(n=lines.order_id.nunique())
    repeat = per_buyer.group_by("item_id").aggregate(
        repeat_purchase_rate=(per_buyer.n > 1).sum().cast(FLOAT) / per_buyer.count().cast(FLOAT)
    )
    notes = feedback.filter(before(feedback.created_at, as_of) & feedback.item_id.notnull())
    reviews = notes.group_by("item_id").aggregate(
        ratings=notes.rating.count(),
        rating_mean=notes.rating.cast(FLOAT).mean(),
        returns=(notes.kind == "return").sum(),
    )
    catalogue = items.group_by("item_id").aggregate(category=items.category.min())
    joined = catalogue
    for part in (sales, repeat, reviews):
        joined = joined.left_join(part, "item_id").drop("item_id_right")
    j = joined
    counts = {
        name: j[name].fill_null(0)
        for name in ITEM_COUNT_COLUMNS
        if name not in ("ratings", "returns")
    }
    return j.select(
        "item_id",
        "category",
        **counts,
        trend_score=j.trend_score.fill_null(0.0),
        repeat_purchase_rate=j.repeat_purchase_rate,
        ratings=j.ratings.fill_null(0),
        rating_mean=j.rating_mean,
        returns=j.returns.fill_null(0),
        return_rate=j.returns.fill_null(0).cast(FLOAT) / j.purchase_lines.cast(FLOAT).nullif(0.0),
    ).order_by("item_id")
