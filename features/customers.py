"""Point-in-time customer features: one row per customer who ordered before `as_of`.

The features are Ibis expressions over the contract tables (`customer_feature_table`), so the
same definition runs on DuckDB (default, `customer_features`) or Spark. Every row dated at or
after `as_of` is filtered out inside the expression. Durations are in days (float, from whole
UTC seconds), money in the shop's currency. Every column, its unit and the meaning of a missing
value are listed in docs/features.md; in short, NaN means "not defined" (no ratings, fewer than
two orders, unknown prices), and a count is 0 only when it really is zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    execute,
    last_day_before,
    shop_queries,
)
from features.frames import FLOAT, canonical_frame
from features.shop import Shop

WINDOWS_DAYS = (30, 90, 365)
"""Look-back windows of the `orders_last_*d` and `spend_last_*d` features, in days."""
TREND_DAYS = 90
"""`spend_trend_90d_*` compares the last 90 days with the 90 days before them."""
COMPLAINT_WINDOW_DAYS = 90
NEGATIVE_RATING = 2
"""A rating at or below this counts as negative feedback."""

COUNT_COLUMNS = (
    "orders",
    "purchase_lines",
    "units",
    *(f"orders_last_{days}d" for days in WINDOWS_DAYS),
    "distinct_items",
    "returns",
    "ratings",
    "complaints",
    f"complaints_last_{COMPLAINT_WINDOW_DAYS}d",
    "feedback",
    "btyd_frequency",
)
"""Columns that are whole counts (int64, never missing)."""


def customer_features(
    shop: Shop,
    as_of: pd.Timestamp | str,
    engine: str = "duckdb",
    connection: Any = None,
) -> pd.DataFrame:
    """Customer features at `as_of` (exclusive, UTC) computed on `engine` ("duckdb" or "spark").

    One row per customer with at least one order before `as_of`, `customer_id` first, sorted by
    customer_id; count columns are int64, the others float64 (NaN = not defined, see
    docs/features.md). `connection`: see `features.engines.connect`. Raises ValueError on a bad
    `as_of`, engine or table."""
    as_of = as_of_utc(as_of)
    with shop_queries(connect(engine, connection), shop) as query:
        channels = query(_channels_on, as_of)["channel"].tolist()
        frame = query(_features_on, as_of, tuple(channels))
    return canonical_customer_frame(frame)


def spark_customer_frame(backend: ibis.BaseBackend, tables: ShopTables, as_of: Any) -> Any:
    """The customer features of `tables` (on a PySpark backend) as a Spark DataFrame, left
    where it is: nothing is collected to the driver. Same rows and values as
    `customer_features(..., engine="spark")`, in Spark's types and order (one row per customer;
    `canonical_customer_frame` gives a collected part the canonical types). The channel list
    is computed first (one small query). `as_of` is exclusive, UTC."""
    if backend.name != "pyspark":
        raise ValueError(f"spark_customer_frame needs a PySpark backend, got {backend.name}")
    as_of = as_of_utc(as_of)
    channels = execute(backend, channel_values(tables.purchases, as_of))["channel"].tolist()
    expression = customer_feature_table(
        tables.purchases, tables.feedback, tables.items, tables.customers, as_of, channels
    )
    return backend._session.sql(backend.compile(expression))  # type: ignore[attr-defined]


def _channels_on(tables: ShopTables, as_of: pd.Timestamp) -> ir.Table:
    """`channel_values` over a `ShopTables` (for `shop_queries`)."""
    return channel_values(tables.purchases, as_of)


def _features_on(tables: ShopTables, as_of: pd.Timestamp, channels: tuple[str, ...]) -> ir.Table:
    """`customer_feature_table` over a `ShopTables` (for `shop_queries`)."""
    return customer_feature_table(
        tables.purchases, tables.feedback, tables.items, tables.customers, as_of, channels
    )


def channel_values(purchases: ir.Table, as_of: pd.Timestamp) -> ir.Table:
    """The distinct non-missing `channel` values of purchases before `as_of`, sorted."""
    lines = purchases.filter(before(purchases.ordered_at, as_of_utc(as_of)))
    lines = lines.filter(lines.channel.notnull())
    # group_by, not distinct(): ibis 12 compiles filter + distinct for Spark into a DISTINCT
    # over the filter's columns too (one row per channel and time), a wrong answer
    return lines.group_by("channel").aggregate(lines=lines.count()).order_by("channel")


def channel_share_columns(channels: Sequence[str]) -> list[str]:
    """Feature names of the channels' order shares, e.g. `channel_share_web`, one per channel.

    Lower-cased, runs of other characters than a-z and 0-9 become `_`; values that would share
    a name ("Web", "web") get `_2`, `_3`... in the order given."""
    names: list[str] = []
    for channel in channels:
        base = "channel_share_" + (
            re.sub(r"[^0-9a-z]+", "_", str(channel).lower()).strip("_") or "_"
        )
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names.append(name)
    return names


def customer_feature_table(
    purchases: ir.Table,
    feedback: ir.Table,
    items: ir.Table,
    customers: ir.Table,
    as_of: pd.Timestamp | str,
    channels: Sequence[str] | None = None,
) -> ir.Table:
    """The customer feature expression over Ibis tables with the contract's columns.

    Works on any engine holding the tables (DuckDB file, Spark catalog); optional columns must
    exist (all-missing is fine: `unit_price`, `channel`, `item_id`/`order_id`/`rating` of
    feedback, `category`, `signed_up_at`). `channels` names the `channel_share_*` columns and
    must hold every channel value present before `as_of` (`top_channel_share` is the largest of
    those shares); None asks the purchases' engine for them (one small query)."""
    as_of = as_of_utc(as_of)
    now = as_of_second(as_of)
    if channels is None:
        channels = channel_values(purchases, as_of).execute()["channel"].tolist()
    channels = list(dict.fromkeys(str(value) for value in channels))
    lines = _lines_before(purchases, items, as_of)
    orders = lines.group_by(["customer_id", "order_id"]).aggregate(
        t=lines.t.min(), value=_sum_if_known(lines.value), channel=lines.channel.min()
    )
    parts = [
        _order_aggregates(orders, now, channels),
        _line_aggregates(lines),
        _categories(lines),
        _repeat_items(lines),
        _buy_till_you_die(lines, as_of),
        _feedback_aggregates(feedback, as_of),
        _sign_up(customers, as_of),
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.left_join(part, "customer_id").drop("customer_id_right")
    return _final_columns(joined, now, channels).order_by("customer_id")


def canonical_customer_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Engine output in canonical types: ids str, counts int64, everything else float64."""
    return canonical_frame(frame, "customer_id", COUNT_COLUMNS)


def _lines_before(purchases: ir.Table, items: ir.Table, as_of: pd.Timestamp) -> ir.Table:
    """Purchase lines before `as_of` with epoch second `t`, UTC day, line value and category."""
    lines = purchases.filter(before(purchases.ordered_at, as_of))
    second = epoch_second(lines.ordered_at)
    lines = lines.mutate(
        t=second,
        day=second // SECONDS_PER_DAY,
        value=lines.quantity.cast(FLOAT) * lines.unit_price.cast(FLOAT),
    )
    # one category per item even if the items table repeats an id (never multiply lines)
    categories = items.group_by("item_id").aggregate(category=items.category.min())
    return lines.left_join(categories, "item_id").select(*lines.columns, "category")


def _sum_if_known(values: ir.FloatingColumn) -> ir.FloatingScalar:
    """The sum of `values`, or missing when any of them is missing (unknown, not zero)."""
    return ibis.cases((values.isnull().sum() > 0, ibis.null(FLOAT)), else_=values.sum())


def _window_spend(orders: ir.Table, start: int, end: int) -> ir.FloatingScalar:
    """Spend of orders with `start <= t < end`: 0 with no such order, missing if one is unpriced."""
    inside = (orders.t >= start) & (orders.t < end)
    unknown = (inside & orders.value.isnull()).sum()
    spend = ibis.ifelse(inside, orders.value, 0.0).sum()
    return ibis.cases((unknown > 0, ibis.null(FLOAT)), else_=spend)


def _order_aggregates(orders: ir.Table, now: int, channels: Sequence[str]) -> ir.Table:
    """Per customer: order counts, first/last order, gap spread, spend overall and in windows,
    orders per channel (one pass over the orders, so the engine groups them only once)."""
    day = SECONDS_PER_DAY
    window = ibis.window(group_by="customer_id", order_by=["t", "order_id"])
    orders = orders.mutate(gap=(orders.t - orders.t.lag().over(window)).cast(FLOAT) / day)
    windows = {f"orders_last_{d}d": (orders.t >= now - d * day).sum() for d in WINDOWS_DAYS}
    spends = {f"spend_last_{d}d": _window_spend(orders, now - d * day, now) for d in WINDOWS_DAYS}
    by_channel = {
        f"_channel_{index}": (orders.channel == value).sum() for index, value in enumerate(channels)
    }
    return orders.group_by("customer_id").aggregate(
        orders=orders.count(),
        first_t=orders.t.min(),
        last_t=orders.t.max(),
        order_gap_std_days=orders.gap.std(how="pop"),
        total_spend=_sum_if_known(orders.value),
        **windows,
        **spends,
        spend_previous_90d=_window_spend(
            orders, now - 2 * TREND_DAYS * day, now - TREND_DAYS * day
        ),
        _channel_known=orders.channel.count(),
        **by_channel,
    )


def _categories(lines: ir.Table) -> ir.Table:
    """Per customer: distinct known categories and the share of lines in the top one."""
    known = lines.filter(lines.category.notnull())
    counts = known.group_by(["customer_id", "category"]).aggregate(n=known.count())
    return counts.group_by("customer_id").aggregate(
        _categories=counts.count(),
        top_category_share=counts.n.max().cast(FLOAT) / counts.n.sum().cast(FLOAT),
    )


def _line_aggregates(lines: ir.Table) -> ir.Table:
    """Per customer: purchase lines and units."""
    return lines.group_by("customer_id").aggregate(
        purchase_lines=lines.count(), units=lines.quantity.sum()
    )


def _repeat_items(lines: ir.Table) -> ir.Table:
    """Per customer: distinct items and the share of them bought in more than one order."""
    per_item = lines.group_by(["customer_id", "item_id"]).aggregate(
        # bought in two or more orders <=> two different order ids (no COUNT DISTINCT needed)
        repeated=lines.order_id.min() != lines.order_id.max()
    )
    return per_item.group_by("customer_id").aggregate(
        distinct_items=per_item.count(),
        repeat_item_share=per_item.repeated.sum().cast(FLOAT) / per_item.count().cast(FLOAT),
    )


def _buy_till_you_die(lines: ir.Table, as_of: pd.Timestamp) -> ir.Table:
    """Per customer: BG/NBD frequency, recency, T (days) and the Gamma-Gamma monetary value.

    Standard definitions (Fader, Hardie & Lee; lifetimes with freq="D"): purchases on one UTC day
    are one transaction; frequency = transaction days - 1; recency = last - first day; T = last
    day before `as_of` - first day; monetary value = mean of the per-day totals after the first
    day (missing when frequency is 0 or a repeat day has an unpriced line)."""
    days = lines.group_by(["customer_id", "day"]).aggregate(value=_sum_if_known(lines.value))
    days = days.mutate(first_day=days.day.min().over(group_by="customer_id"))
    repeat = days.day > days.first_day
    summary = days.group_by("customer_id").aggregate(
        _days=days.count(),
        _first_day=days.day.min(),
        _last_day=days.day.max(),
        _repeat_unknown=(repeat & days.value.isnull()).sum(),
        _repeat_mean=ibis.ifelse(repeat, days.value, ibis.null(FLOAT)).mean(),
    )
    return summary.select(
        "customer_id",
        btyd_frequency=summary._days - 1,
        btyd_recency_days=(summary._last_day - summary._first_day).cast(FLOAT),
        btyd_T_days=(last_day_before(as_of) - summary._first_day).cast(FLOAT),
        btyd_monetary_value=ibis.cases(
            (summary._repeat_unknown > 0, ibis.null(FLOAT)), else_=summary._repeat_mean
        ),
    )


def _feedback_aggregates(feedback: ir.Table, as_of: pd.Timestamp) -> ir.Table:
    """Per customer: returns, ratings, complaints and negative feedback before `as_of`."""
    now = as_of_second(as_of)
    rows = feedback.filter(before(feedback.created_at, as_of))
    rows = rows.mutate(t=epoch_second(rows.created_at))
    complaint = rows.kind == "complaint"
    returned = rows.kind == "return"
    low_rating = (rows.rating <= NEGATIVE_RATING).fill_null(False)
    recent = rows.t >= now - COMPLAINT_WINDOW_DAYS * SECONDS_PER_DAY
    return rows.group_by("customer_id").aggregate(
        feedback=rows.count(),
        returns=returned.sum(),
        ratings=rows.rating.count(),
        rating_mean=rows.rating.cast(FLOAT).mean(),
        rating_min=rows.rating.min().cast(FLOAT),
        complaints=complaint.sum(),
        **{f"complaints_last_{COMPLAINT_WINDOW_DAYS}d": (complaint & recent).sum()},
        _last_complaint_t=ibis.ifelse(complaint, rows.t, ibis.null("int64")).max(),
        _negative=(complaint | returned | low_rating).sum(),
    )


def _sign_up(customers: ir.Table, as_of: pd.Timestamp) -> ir.Table:
    """Per customer: the sign-up epoch second, when known and before `as_of` (else missing)."""
    known = before(customers.signed_up_at, as_of).fill_null(False)
    second = ibis.ifelse(known, epoch_second(customers.signed_up_at), ibis.null("int64"))
    return customers.group_by("customer_id").aggregate(_signed_up_t=second.min())


def _ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator as float, missing when the denominator is 0 or missing."""
    return numerator.cast(FLOAT) / denominator.cast(FLOAT).nullif(0.0)


def _final_columns(joined: ir.Table, now: int, channels: Sequence[str]) -> ir.Table:
    """Turn the joined per-customer aggregates into the documented feature columns."""
    j = joined
    day = float(SECONDS_PER_DAY)
    days_since_last = (now - j.last_t).cast(FLOAT) / day
    gap_mean = ibis.cases(
        (j.orders > 1, (j.last_t - j.first_t).cast(FLOAT) / day / (j.orders - 1).cast(FLOAT)),
        else_=ibis.null(FLOAT),
    )
    returns = j.returns.fill_null(0)
    complaints_recent = f"complaints_last_{COMPLAINT_WINDOW_DAYS}d"
    feedback = j.feedback.fill_null(0)
    channel_shares = {
        name: _ratio(j[f"_channel_{index}"], j._channel_known)
        for index, name in enumerate(channel_share_columns(channels))
    }
    channel_counts = [j[f"_channel_{index}"] for index in range(len(channels))]
    if len(channel_counts) > 1:
        top_channel_share = _ratio(ibis.greatest(*channel_counts), j._channel_known)
    elif channel_counts:
        top_channel_share = _ratio(channel_counts[0], j._channel_known)
    else:
        top_channel_share = ibis.null(FLOAT)
    return j.select(
        "customer_id",
        "orders",
        "purchase_lines",
        "units",
        days_since_last_order=days_since_last,
        tenure_days=(now - j.first_t).cast(FLOAT) / day,
        days_since_signup=(now - j._signed_up_t).cast(FLOAT) / day,
        order_gap_mean_days=gap_mean,
        order_gap_std_days=j.order_gap_std_days,
        overdue_ratio=days_since_last / gap_mean.nullif(0.0),
        **{f"orders_last_{d}d": j[f"orders_last_{d}d"] for d in WINDOWS_DAYS},
        total_spend=j.total_spend,
        mean_order_value=_ratio(j.total_spend, j.orders),
        **{f"spend_last_{d}d": j[f"spend_last_{d}d"] for d in WINDOWS_DAYS},
        spend_previous_90d=j.spend_previous_90d,
        spend_trend_90d_diff=j.spend_last_90d - j.spend_previous_90d,
        spend_trend_90d_ratio=_ratio(j.spend_last_90d, j.spend_previous_90d),
        distinct_items=j.distinct_items,
        distinct_categories=j._categories.cast(FLOAT),  # missing: no known category
        top_category_share=j.top_category_share,
        repeat_item_share=j.repeat_item_share,
        returns=returns,
        return_rate=_ratio(returns, j.purchase_lines),
        ratings=j.ratings.fill_null(0),
        rating_mean=j.rating_mean,
        rating_min=j.rating_min,
        complaints=j.complaints.fill_null(0),
        **{complaints_recent: j[complaints_recent].fill_null(0)},
        days_since_last_complaint=(now - j._last_complaint_t).cast(FLOAT) / day,
        feedback=feedback,
        negative_feedback_share=_ratio(j._negative, feedback),
        top_channel_share=top_channel_share,
        **channel_shares,
        btyd_frequency=j.btyd_frequency,
        btyd_recency_days=j.btyd_recency_days,
        btyd_T_days=j.btyd_T_days,
        btyd_monetary_value=j.btyd_monetary_value,
    )
