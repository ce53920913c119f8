"""The console's customer list: the served score tables as numpy columns, filtered, sorted and
paged without a Python loop over customers.

`CustomerFrame.from_models` is built once per served snapshot (the scores change only when a
new champion loads) from the same `CustomerScoreTable`s the `/v1/customers/...` routes answer
from: nothing is scored again. A sort order is an `argsort` computed on first use and kept;
a page is then a boolean mask gathered in that order and sliced, a few milliseconds on a
million customers (benchmarks/crm_console.py).

Days since the last order count to the scores' `as_of` (UTC), like every score; value is the
predicted customer value over the next 365 days in the shop's currency; value at risk is
churn probability x that value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.score_columns import CHURN_COLUMNS, LOYALTY_COLUMNS
from serving.model_store import CustomerScoreTable, RoleNotTrained, ServingModels

RISK_TIERS = ("high", "medium", "low")
"""The churn-risk tiers, most urgent first (a customer the churn model did not score: none)."""
SORT_KEYS: Mapping[str, str] = {
    "value_at_risk": "value at risk",
    "churn_probability": "churn probability",
    "predicted_clv_365d": "predicted value (365 days)",
    "days_since_last_order": "days since last order",
    "loyalty_score": "loyalty score",
    "satisfaction": "satisfaction",
    "customer_id": "customer id",
}
"""Sortable columns and their names on the page."""
Direction = Literal["asc", "desc"]
AT_RISK_TIERS = ("high", "medium")
"""The "at risk and valuable" view: these tiers, sorted by value at risk, highest first."""


@dataclass(frozen=True)
class CustomerFilter:
    """What the marketer asked for; None means no limit. Ranges include both ends."""

    segments: tuple[str, ...] = ()
    risk_tiers: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    min_days_since_order: float | None = None
    max_days_since_order: float | None = None
    min_satisfaction: float | None = None
    max_satisfaction: float | None = None
    sort: str = "value_at_risk"
    direction: Direction = "desc"


@dataclass(frozen=True)
class CustomerPage:
    """One page of the filtered, sorted list: frame rows and how many matched in all."""

    rows: np.ndarray
    matched: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, math.ceil(self.matched / self.per_page))


def _float_column(table: CustomerScoreTable | None, name: str, rows: np.ndarray) -> np.ndarray:
    """A score column as float64 in frame order; NaN where missing or unscored."""
    out = np.full(len(rows), np.nan)
    if table is None:
        return out
    # numpy reads None as NaN in a float array
    values = np.asarray(table.columns[name], dtype=np.float64)
    found = rows >= 0
    out[found] = values[rows[found]]
    return out


def _text_column(table: CustomerScoreTable | None, name: str, rows: np.ndarray) -> pd.Categorical:
    """A text score column as a categorical in frame order (missing: NaN)."""
    values = np.full(len(rows), None, dtype=object)
    if table is not None:
        found = rows >= 0
        values[found] = np.array(table.columns[name], dtype=object)[rows[found]]
    return pd.Categorical(values)


def _scored_table(models: ServingModels, role: str) -> CustomerScoreTable | None:
    """The churn or loyalty table of the snapshot, or None when that role is not served."""
    table = models.churn if role == "churn" else models.loyalty
    try:
        len(table)
    except RoleNotTrained:
        return None
    return table


@dataclass
class CustomerFrame:
    """Every scored customer of one snapshot as numpy columns (row i = one customer)."""

    customer_ids: np.ndarray
    churn: CustomerScoreTable | None
    loyalty: CustomerScoreTable | None
    churn_rows: np.ndarray
    """Row of each customer in the churn table (-1: not scored by churn)."""
    loyalty_rows: np.ndarray
    numbers: dict[str, np.ndarray]
    segment: pd.Categorical
    churn_risk: pd.Categorical
    as_of: pd.Timestamp
    _orders: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_models(cls, models: ServingModels) -> CustomerFrame:
        """The frame of a snapshot: the loyalty table's customers (else churn's), churn
        columns aligned by id. Raises `RoleNotTrained` when neither role is served."""
        churn, loyalty = _scored_table(models, "churn"), _scored_table(models, "loyalty")
        base = loyalty if loyalty is not None else churn
        if base is None:
            raise RoleNotTrained("churn", models.unavailable.get("churn", "no champion model"))
        ids = np.array(list(base.index.keys()), dtype=object)
        base_rows = np.fromiter(base.index.values(), dtype=np.int64, count=len(ids))

        def rows_in(table: CustomerScoreTable | None) -> np.ndarray:
            if table is None:
                return np.full(len(ids), -1, dtype=np.int64)
            if table is base:
                return base_rows
            return pd.Index(list(table.index.keys())).get_indexer(ids).astype(np.int64)

        churn_rows, loyalty_rows = rows_in(churn), rows_in(loyalty)
        numbers = {
            "churn_probability": _float_column(churn, "churn_probability", churn_rows),
            "predicted_clv_365d": _float_column(loyalty, "predicted_clv_365d", loyalty_rows),
            "loyalty_score": _float_column(loyalty, "loyalty_score", loyalty_rows),
            "satisfaction": _float_column(loyalty, "satisfaction", loyalty_rows),
            "p_alive": _float_column(loyalty, "p_alive", loyalty_rows),
            "expected_orders_90d": _float_column(loyalty, "expected_orders_90d", loyalty_rows),
        }
        numbers["value_at_risk"] = numbers["churn_probability"] * numbers["predicted_clv_365d"]
        last_seconds = _float_column(base, "last_order_seconds", base_rows)
        numbers["days_since_last_order"] = (base.as_of.timestamp() - last_seconds) / 86400.0
        return cls(
            customer_ids=ids,
            churn=churn,
            loyalty=loyalty,
            churn_rows=churn_rows,
            loyalty_rows=loyalty_rows,
            numbers=numbers,
            segment=_text_column(loyalty, "segment", loyalty_rows),
            churn_risk=_text_column(churn, "churn_risk", churn_rows),
            as_of=base.as_of,
        )

    def __len__(self) -> int:
        return len(self.customer_ids)

    def segments(self) -> list[str]:
        """The segment names, in order."""
        return [str(c) for c in self.segment.categories]

    def order(self, sort: str, direction: Direction) -> np.ndarray:
        """Frame rows sorted by `sort` (a `SORT_KEYS` name); missing values last either way;
        ties keep id order. Computed once per (column, direction), then reused."""
        if sort not in SORT_KEYS:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_KEYS)}")
        key = (sort, direction)
        kept = self._orders.get(key)
        if kept is not None:
            return kept
        with self._lock:
            kept = self._orders.get(key)
            if kept is None:
                kept = self._orders[key] = self._sorted(sort, direction)
        return kept

    def _sorted(self, sort: str, direction: Direction) -> np.ndarray:
        if sort == "customer_id":
            ascending = np.argsort(self.customer_ids.astype(str), kind="stable")
            return ascending if direction == "asc" else ascending[::-1].copy()
        values = self.numbers[sort]
        # NaN sorts last in numpy; negating keeps it last when sorting high to low.
        return np.argsort(values if direction == "asc" else -values, kind="stable")

    def mask(self, wanted: CustomerFilter) -> np.ndarray | None:
        """Which customers pass the filter (None: all of them)."""
        conditions: list[np.ndarray] = []
        if wanted.segments:
            conditions.append(np.asarray(self.segment.isin(list(wanted.segments))))
        if wanted.risk_tiers:
            conditions.append(np.asarray(self.churn_risk.isin(list(wanted.risk_tiers))))
        ranges = (
            ("predicted_clv_365d", wanted.min_value, wanted.max_value),
            ("days_since_last_order", wanted.min_days_since_order, wanted.max_days_since_order),
            ("satisfaction", wanted.min_satisfaction, wanted.max_satisfaction),
        )
        for column, low, high in ranges:
            values = self.numbers[column]
            if low is not None:
                conditions.append(values >= low)
            if high is not None:
                conditions.append(values <= high)
        if not conditions:
            return None
        passed = conditions[0]
        for condition in conditions[1:]:
            passed = passed & condition
        return passed

    def matching_rows(self, wanted: CustomerFilter) -> np.ndarray:
        """Every frame row passing the filter, in the asked order."""
        order = self.order(wanted.sort, wanted.direction)
        passed = self.mask(wanted)
        return order if passed is None else order[passed[order]]

    def page(self, wanted: CustomerFilter, page: int, per_page: int) -> CustomerPage:
        """One page (1-based; past the end: the last page) of the filtered, sorted list."""
        rows = self.matching_rows(wanted)
        pages = max(1, math.ceil(len(rows) / per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        return CustomerPage(
            rows=rows[start : start + per_page], matched=len(rows), page=page, per_page=per_page
        )

    def record(self, row: int) -> dict[str, Any]:
        """One customer's score fields (the `patronage score` columns) plus days since the
        last order and value at risk."""
        record: dict[str, Any] = {"customer_id": str(self.customer_ids[row])}
        churn_row, loyalty_row = int(self.churn_rows[row]), int(self.loyalty_rows[row])
        for name in CHURN_COLUMNS:
            record[name] = _cell(self.churn, name, churn_row)
        for name in (*LOYALTY_COLUMNS, "last_order_at"):
            record[name] = _cell(self.loyalty, name, loyalty_row)
        if record["churn_reasons"] is None:
            record["churn_reasons"] = []
        record["days_since_last_order"] = _finite(self.numbers["days_since_last_order"][row])
        record["value_at_risk"] = _finite(self.numbers["value_at_risk"][row])
        return record

    def records(self, rows: np.ndarray) -> Iterator[dict[str, Any]]:
        """`record` of each row, in order."""
        for row in rows.tolist():
            yield self.record(row)

    def score_columns(self, rows: np.ndarray) -> dict[str, list[Any]]:
        """The `patronage score` columns of `rows`, column by column (the export's fast path:
        no dict per customer); churn reasons as lists."""
        columns: dict[str, list[Any]] = {"customer_id": self.customer_ids[rows].tolist()}
        for table, table_rows, names in (
            (self.churn, self.churn_rows[rows], CHURN_COLUMNS),
            (self.loyalty, self.loyalty_rows[rows], LOYALTY_COLUMNS),
        ):
            for name in names:
                if table is None:
                    columns[name] = [None] * len(rows)
                    continue
                values = table.columns[name]
                columns[name] = [values[i] if i >= 0 else None for i in table_rows.tolist()]
        columns["churn_reasons"] = [r or [] for r in columns["churn_reasons"]]
        return columns

    def row_of(self, customer_id: str) -> int | None:
        """The frame row of a customer, or None when unscored."""
        base = self.loyalty if self.loyalty is not None else self.churn
        assert base is not None
        # The frame's rows are the base table's rows, in the same order.
        return base.row(customer_id)


def _cell(table: CustomerScoreTable | None, name: str, row: int) -> Any:
    if table is None or row < 0:
        return None
    return table.columns[name][row]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class FrameCache:
    """The frame of the snapshot being served, rebuilt when the snapshot changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: ServingModels | None = None
        self._frame: CustomerFrame | None = None

    def frame(self, models: ServingModels) -> CustomerFrame:
        """The frame of `models` (built on first ask; a second thread waits for the first)."""
        if self._snapshot is models and self._frame is not None:
            return self._frame
        with self._lock:
            if self._snapshot is not models or self._frame is None:
                self._frame = CustomerFrame.from_models(models)
                self._snapshot = models
            return self._frame
