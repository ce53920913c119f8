"""The numbers of the console's overview: headline counts, segments and their share of value,
churn-risk tiers, a frequency x recency grid of P(alive), cohort retention and satisfaction
over time. Pure functions of a `CustomerFrame` and a `ShopHistory`; drawing is in `charts.py`.

Value is the predicted customer value over the next 365 days (shop currency). "Active" means a
probability of being alive (still a customer) of at least `ACTIVE_P_ALIVE`; "at risk" means the
churn model's high tier. Months are calendar months in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from serving.crm.customer_frame import RISK_TIERS, CustomerFrame
from serving.crm.shop_history import ShopHistory

ACTIVE_P_ALIVE = 0.5
FREQUENCY_BINS = (1, 2, 3, 4, 6, 10)
"""Lower edges of the order-count bands of the heatmap: 1, 2, 3, 4-5, 6-9, 10+."""
RECENCY_BINS = (0, 30, 60, 90, 180, 365)
"""Lower edges (days since the last order) of the heatmap's recency bands; the last is open."""
COHORT_MONTHS = 12
"""Retention is followed this many months after the first order, for this many cohorts."""


@dataclass(frozen=True)
class Headline:
    """The three numbers at the top of the overview."""

    customers: int
    active: int
    at_risk: int
    value_at_risk: float


@dataclass(frozen=True)
class GroupRow:
    """One segment or risk tier: its size and value."""

    name: str
    customers: int
    share: float
    value: float
    value_share: float
    value_at_risk: float


def headline(frame: CustomerFrame) -> Headline:
    """Customers scored, how many are active, how many at high churn risk, and their value at
    risk (sum of churn probability x predicted value)."""
    at_risk = np.asarray(frame.churn_risk == "high")
    return Headline(
        customers=len(frame),
        active=int(np.sum(frame.numbers["p_alive"] >= ACTIVE_P_ALIVE)),
        at_risk=int(at_risk.sum()),
        value_at_risk=float(np.nansum(frame.numbers["value_at_risk"][at_risk])),
    )


def _groups(frame: CustomerFrame, labels: pd.Categorical, order: list[str]) -> list[GroupRow]:
    value = frame.numbers["predicted_clv_365d"]
    at_risk = frame.numbers["value_at_risk"]
    table = pd.DataFrame(
        {"group": labels, "value": np.nan_to_num(value), "risk": np.nan_to_num(at_risk)}
    )
    sums = table.groupby("group", observed=True).agg(
        customers=("value", "size"), value=("value", "sum"), risk=("risk", "sum")
    )
    total_value = float(np.nansum(value)) or 1.0
    total = max(len(frame), 1)
    rows = []
    for name in order:
        if name not in sums.index:
            continue
        found = sums.loc[name]
        rows.append(
            GroupRow(
                name=name,
                customers=int(found["customers"]),
                share=float(found["customers"]) / total,
                value=float(found["value"]),
                value_share=float(found["value"]) / total_value,
                value_at_risk=float(found["risk"]),
            )
        )
    return rows


def segment_rows(frame: CustomerFrame) -> list[GroupRow]:
    """Each segment's size and share of customers and of predicted value, largest first."""
    rows = _groups(frame, frame.segment, frame.segments())
    return sorted(rows, key=lambda row: -row.customers)


def risk_rows(frame: CustomerFrame) -> list[GroupRow]:
    """Each churn-risk tier (high, medium, low), with its value at risk."""
    return _groups(frame, frame.churn_risk, list(RISK_TIERS))


def band_labels(edges: tuple[int, ...], unit: str = "") -> list[str]:
    """Labels of integer bands from their lower edges: `1`, `4-5`, `10+`."""
    labels = []
    for low, high in zip(edges, (*edges[1:], None), strict=True):
        if high is None:
            labels.append(f"{low}+{unit}")
        elif high - low == 1:
            labels.append(f"{low}{unit}")
        else:
            labels.append(f"{low}-{high - 1}{unit}")
    return labels


@dataclass(frozen=True)
class Grid:
    """A frequency x recency grid: mean P(alive) and the number of customers per cell."""

    frequency_labels: list[str]
    recency_labels: list[str]
    mean_p_alive: np.ndarray
    """Shape (frequency bands, recency bands); NaN where a cell holds nobody."""
    customers: np.ndarray


def frequency_recency_grid(frame: CustomerFrame, history: ShopHistory) -> Grid:
    """Mean P(alive) by number of orders (rows) and days since the last order (columns)."""
    orders = history.orders_per_customer()
    counts = orders.reindex(frame.customer_ids).to_numpy(dtype=np.float64, na_value=np.nan)
    days = frame.numbers["days_since_last_order"]
    p_alive = frame.numbers["p_alive"]
    known = np.isfinite(counts) & np.isfinite(days) & np.isfinite(p_alive)
    f_band = np.searchsorted(FREQUENCY_BINS, counts[known], side="right") - 1
    r_band = np.searchsorted(RECENCY_BINS, days[known], side="right") - 1
    r_band = np.clip(r_band, 0, len(RECENCY_BINS) - 1)
    f_band = np.clip(f_band, 0, len(FREQUENCY_BINS) - 1)
    shape = (len(FREQUENCY_BINS), len(RECENCY_BINS))
    cell = f_band * shape[1] + r_band
    size = shape[0] * shape[1]
    customers = np.bincount(cell, minlength=size).reshape(shape)
    total = np.bincount(cell, weights=p_alive[known], minlength=size).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(customers > 0, total / np.maximum(customers, 1), np.nan)
    return Grid(
        frequency_labels=band_labels(FREQUENCY_BINS),
        recency_labels=band_labels(RECENCY_BINS, " d"),
        mean_p_alive=mean,
        customers=customers,
    )


def cohort_retention(history: ShopHistory) -> pd.DataFrame:
    """Share of each first-order month's customers who ordered again k months later.

    Rows: the last `COHORT_MONTHS` cohorts (month of first order, `YYYY-MM`); columns: months
    since the first order, 0 to `COHORT_MONTHS` - 1 (month 0 is 1.0 by definition); NaN for
    months after `as_of`."""
    purchases = history.purchases
    if purchases.empty:
        return pd.DataFrame()
    month = _month_number(purchases["ordered_at"])
    table = pd.DataFrame({"customer_id": purchases["customer_id"], "month": month})
    first = table.groupby("customer_id")["month"].transform("min")
    table = table.assign(cohort=first, offset=table["month"] - first).drop_duplicates(
        ["customer_id", "offset"]
    )
    sizes = table.loc[table["offset"] == 0].groupby("cohort").size()
    active = table.groupby(["cohort", "offset"]).size().unstack(fill_value=0)
    retention = active.div(sizes, axis=0)
    last_month = int(month.max())
    cohorts = sorted(sizes.index)[-COHORT_MONTHS:]
    retention = retention.reindex(index=cohorts, columns=range(COHORT_MONTHS))
    for cohort in cohorts:  # months not yet lived are unknown, not zero
        retention.loc[cohort, [m for m in retention.columns if cohort + m > last_month]] = np.nan
    retention.index = [f"{int(c) // 12:04d}-{int(c) % 12 + 1:02d}" for c in cohorts]
    return retention


def _month_number(times: pd.Series) -> pd.Series:
    """Calendar month of UTC timestamps as one integer (year x 12 + month - 1)."""
    utc = times.dt.tz_convert("UTC")
    return utc.dt.year.astype("int64") * 12 + utc.dt.month.astype("int64") - 1


def satisfaction_by_month(history: ShopHistory) -> pd.DataFrame:
    """Per calendar month: mean rating (1-5), ratings, complaints and returns."""
    feedback = history.feedback
    columns = ["mean_rating", "ratings", "complaints", "returns"]
    if feedback.empty:
        return pd.DataFrame(columns=columns)
    month = feedback["created_at"].dt.tz_convert("UTC").dt.strftime("%Y-%m")
    kind = feedback["kind"].astype(str)
    rating = pd.to_numeric(feedback.get("rating"), errors="coerce")
    table = pd.DataFrame(
        {
            "month": month,
            "rating": rating.where(rating.notna()),
            "complaint": (kind == "complaint").astype(int),
            "return": (kind == "return").astype(int),
        }
    )
    grouped = table.groupby("month", sort=True)
    return pd.DataFrame(
        {
            "mean_rating": grouped["rating"].mean(),
            "ratings": grouped["rating"].count(),
            "complaints": grouped["complaint"].sum(),
            "returns": grouped["return"].sum(),
        }
    )


def clv_values(frame: CustomerFrame) -> np.ndarray:
    """Predicted 365-day values of the customers who have one."""
    values = frame.numbers["predicted_clv_365d"]
    return values[np.isfinite(values)]
