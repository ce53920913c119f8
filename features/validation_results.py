"""What validation finds: the reason codes, the tables handed in and the verdicts handed back.

`RawTable` is one table as read (from a file or from posted rows); `RowVerdicts` collects a
reason per row while the rules run (`features.column_parsing`, `features.row_rules`,
`features.validation`); `TableVerdict`, `TableReport` and `ValidationReport` are what callers
get. `docs/data-contract.md` documents every reason code in `REASONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import FEEDBACK_KINDS

REASONS: dict[str, str] = {
    "bad_row": "the CSV line does not have one value per column of the header",
    "missing_value": "a required value is empty",
    "bad_integer": "the value is not a whole number",
    "bad_number": "the value is not a finite number",
    "bad_timestamp": "the value is not an ISO 8601 timestamp (or is outside 1678-2261)",
    "bad_boolean": "the value is not one of true/false/1/0/yes/no",
    "unknown_kind": "feedback kind is not one of " + "/".join(FEEDBACK_KINDS),
    "out_of_range": "the number is outside the allowed range",
    "missing_rating": "feedback of kind `rating` has no rating",
    "after_as_of": "the timestamp is after `as_of` (data from the future)",
    "duplicate_line": "every value equals an earlier row; the earlier row is kept",
    "duplicate_order_item": "the same (order_id, item_id) appears earlier with other values; "
    "the earlier row is kept",
    "duplicate_item": "the same item_id appears earlier in the items table; "
    "the earlier row is kept",
    "duplicate_customer": "the same customer_id appears earlier in the customers table; "
    "the earlier row is kept",
    "order_conflict": "the order_id appears earlier with another customer or another time",
    "unknown_item": "the item_id is not in the items table (or, without one, in the purchases)",
    "unknown_customer": "the customer_id is in neither the purchases nor the customers table",
    "unknown_order": "the order_id is not among the accepted purchases",
    "order_customer_mismatch": "the order_id belongs to another customer",
}
"""Every reason code a row of a shop's files (or a posted row) can be rejected with, and what
it means."""

POSTED_ROW_REASONS: dict[str, str] = {
    "bad_item_list": "the value is not a non-empty list of distinct item ids",
    "missing_shopper": "an impression names neither a customer_id nor a session_id",
    "duplicate_impression": "the same recommendation_id appears earlier among the impressions; "
    "the earlier row is kept",
    "duplicate_click": "the same (recommendation_id, item_id) appears earlier among the clicks; "
    "the earlier row is kept",
}
"""The reason codes only posted impressions and clicks can be rejected with (tables no shop file
holds), and what they mean."""


@dataclass
class RawTable:
    """One table as read from its file, before validation.

    `frame` holds the file's columns as read (strings for CSV, native types for Parquet);
    `line_numbers` the 1-based line of each row in the file (CSV: header = line 1; Parquet: row
    index + 1). `preset_reasons`/`preset_details`, when given, reject rows already at reading
    (e.g. a CSV line with the wrong number of fields): None where the row is fine."""

    name: str
    frame: pd.DataFrame
    line_numbers: np.ndarray
    source: Path | str | None = None
    """The file read, or `SCHEMA.TABLE` for a table read from a database."""
    preset_reasons: np.ndarray | None = None
    preset_details: np.ndarray | None = None
    row_name: str = "line"
    """How messages name a row: "line" (its `line_numbers` entry is a file line) or "row"
    (posted rows: the entry is the row's 0-based position in the request; database rows: its
    1-based position in the order they were read)."""
    key_columns: tuple[str, ...] = ()
    """For a database table: the columns that name a row in reports (it has no line number)."""

    def row_keys(self, rows: np.ndarray) -> list[str]:
        """`order_id=O1 item_id=I4` for each of `rows` (0-based), from `key_columns`."""
        parts = [
            self.frame[c].iloc[rows].map(lambda v, c=c: f"{c}={'' if pd.isna(v) else v}")
            for c in self.key_columns
        ]
        if not parts:
            return [f"{self.row_name} {n}" for n in self.line_numbers[rows]]
        return [" ".join(values) for values in zip(*(p.tolist() for p in parts), strict=True)]


@dataclass
class TableVerdict:
    """The outcome for one table: accepted rows in canonical types, and a reason per raw row.

    `reasons[i]` is None when raw row i was accepted, else its reason code; `details[i]` says
    what was wrong in words. `accepted` keeps the raw row order."""

    name: str
    accepted: pd.DataFrame
    reasons: np.ndarray
    details: np.ndarray
    inferred: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rejected_rows(self) -> np.ndarray:
        """0-based positions of the rejected raw rows."""
        return np.flatnonzero(pd.notna(self.reasons))


@dataclass
class TableReport:
    """Counts for one table: rows read, accepted, rejected per reason, and where the rejects are."""

    name: str
    source: Path | str | None
    read: int
    accepted: int
    rejected_by_reason: dict[str, int]
    rejects_path: Path | None = None
    inferred: bool = False
    notes: list[str] = field(default_factory=list)
    rejected_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """0-based positions (record order in the file) of the rejected rows."""
    rejected_reasons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    """The reason code of each row in `rejected_rows`."""
    rejected_keys: list[str] = field(default_factory=list)
    """For a database table: the key of each row in `rejected_rows` (`order_id=O1 item_id=I4`),
    and `rejected_details` what was wrong with it; empty for files (their rejects file has the
    line numbers)."""
    rejected_details: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Number of rejected rows."""
        return sum(self.rejected_by_reason.values())

    @property
    def reject_rate(self) -> float:
        """Rejected rows / rows read (0.0 for an empty or inferred table)."""
        return self.rejected / self.read if self.read else 0.0


@dataclass
class ValidationReport:
    """What validation found in one data directory."""

    directory: Path | str
    """The data directory, or the database URL (password masked) and schema."""
    as_of: pd.Timestamp
    max_reject_rate: float
    tables: dict[str, TableReport]
    notes: list[str] = field(default_factory=list)

    @property
    def tables_over_limit(self) -> list[str]:
        """Names of the tables whose reject rate is above `max_reject_rate`."""
        return [t.name for t in self.tables.values() if t.reject_rate > self.max_reject_rate]

    @property
    def within_limit(self) -> bool:
        """True when every table's reject rate is within `max_reject_rate`."""
        return not self.tables_over_limit

    @property
    def rejects_paths(self) -> dict[str, Path]:
        """Rejects file per table that has rejected rows."""
        return {t.name: t.rejects_path for t in self.tables.values() if t.rejects_path}

    def summary_text(self) -> str:
        """A human-readable summary: per table, counts per reason and the rejects file."""
        lines = [
            f"Validated {self.directory} (as_of {self.as_of.isoformat()}, "
            f"max reject rate {self.max_reject_rate:.2%})"
        ]
        for table in self.tables.values():
            if table.inferred:
                lines.append(f"  {table.name:<10} inferred from purchases: {table.accepted:,} rows")
            else:
                source = _source_name(table.source)
                lines.append(
                    f"  {table.name:<10} {source}: read {table.read:,}, accepted "
                    f"{table.accepted:,}, rejected {table.rejected:,} ({table.reject_rate:.2%})"
                )
            for reason, count in sorted(table.rejected_by_reason.items(), key=lambda kv: -kv[1]):
                lines.append(f"      {reason:<24} {count:>10,}  {REASONS.get(reason, '')}")
            named = zip(
                table.rejected_keys, table.rejected_reasons, table.rejected_details, strict=False
            )
            for key, reason, detail in list(named)[:SHOWN_REJECTED_KEYS]:
                lines.append(f"      rejected {key}: {reason} ({detail})")
            if len(table.rejected_keys) > SHOWN_REJECTED_KEYS:
                lines.append(f"      ... {len(table.rejected_keys) - SHOWN_REJECTED_KEYS:,} more")
            if table.rejects_path:
                lines.append(f"      rejected rows written to {table.rejects_path}")
            lines.extend(f"      note: {note}" for note in table.notes)
        lines.extend(f"  note: {note}" for note in self.notes)
        over = self.tables_over_limit
        if over:
            lines.append(
                f"Result: reject rate above {self.max_reject_rate:.2%} in {', '.join(over)}"
            )
        else:
            lines.append("Result: every table within the allowed reject rate")
        return "\n".join(lines)


SHOWN_REJECTED_KEYS = 20
"""How many rejected database rows (key, reason, detail) a summary lists per table."""


def _source_name(source: Path | str | None) -> str:
    """How the summary names where a table came from: a file's name, a database `SCHEMA.TABLE`."""
    if source is None:
        return "(absent: empty)"
    return source.name if isinstance(source, Path) else source


class RowVerdicts:
    """The reason per row, filled rule by rule; a row keeps the first reason it gets."""

    def __init__(self, size: int) -> None:
        self.reasons = np.full(size, None, dtype=object)
        self.details = np.full(size, None, dtype=object)
        self.ok = np.ones(size, dtype=bool)

    def reject(
        self, mask: np.ndarray, reason: str, detail: str | Callable[[np.ndarray], object]
    ) -> None:
        """Reject rows in `mask` not rejected yet; `detail(rows)` gives a text per new row."""
        new = np.asarray(mask, dtype=bool) & self.ok
        if not new.any():
            return
        rows = np.flatnonzero(new)
        self.reasons[rows] = reason
        self.details[rows] = detail if isinstance(detail, str) else np.asarray(detail(rows))
        self.ok[rows] = False
