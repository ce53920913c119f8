"""Check rows posted to the server (JSON records) with the validator of a shop's files.

`check_posted_rows` puts the posted purchases, feedback, item updates, interactions (views and
carts), impressions and clicks (`features.contract.posted_row_tables`) into the tables of
`features.validation` and applies `check_tables` to them: every rule of each table on its own,
the same code that checks a shop's files (`patronage validate`). The references to the shop's
other tables (feedback about an order or item the request does not contain) are left to the next
`patronage train --events`, which validates the event log together with the shop's tables.

The caller checks the shape and JSON types of a row first (the server's row models): a JSON
body has native types, so `"2"` is no quantity there, while a CSV file spells every value as
text and the validator parses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features.contract import POSTED_TABLE_NAMES, posted_row_tables
from features.validation import RawTable, check_tables

POSTED_TABLES = POSTED_TABLE_NAMES
"""The tables a client may post rows of, in the order their rejects are listed."""


@dataclass(frozen=True)
class RejectedRow:
    """One posted row that breaks the contract, and why."""

    table: str
    row: int
    """The row's position in its table in the request, from 0."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"table": self.table, "row": self.row, "reason": self.reason}


def check_posted_rows(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    as_of: datetime,
    positions: Mapping[str, Sequence[int]] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[RejectedRow]]:
    """Validate posted rows with the contract's rules; returns (accepted rows per table, rejects).

    `rows`: per table of `POSTED_TABLES` its rows, each a dict of the contract's columns (a
    missing key or None: empty). `as_of` (tz-aware): rows dated after it are rejected (the
    server passes the time of receipt plus its tolerance for clocks). `positions`: per table,
    each row's number in the request (default 0, 1, ...), which the rejects and their details
    name. The accepted rows keep their order and hold canonical values: ids and text as `str`,
    timestamps as UTC `pandas.Timestamp`, whole numbers as `int`, an empty value as None. A
    reject's reason is `code: detail` (codes in `features.validation_results.REASONS`); the
    rejects are listed by table, then row. Never raises on bad rows."""
    given = positions or {}
    tables = posted_row_tables()
    raw: dict[str, RawTable] = {}
    numbers: dict[str, np.ndarray] = {}
    for name in POSTED_TABLES:
        table_rows = rows.get(name) or ()
        if not table_rows:
            continue
        numbers[name] = np.asarray(given.get(name, range(len(table_rows))), dtype=np.int64)
        columns = [column.name for column in tables[name].columns]
        frame = pd.DataFrame.from_records([dict(row) for row in table_rows], columns=columns)
        raw[name] = RawTable(name, frame, numbers[name], row_name="row")
    verdicts = check_tables(raw, pd.Timestamp(as_of).tz_convert("UTC"), tables)
    accepted: dict[str, list[dict[str, Any]]] = {name: [] for name in POSTED_TABLES}
    for name, verdict in verdicts.items():
        accepted[name] = _plain_records(verdict.accepted)
    rejected = [
        RejectedRow(
            name, int(numbers[name][row]), f"{verdict.reasons[row]}: {verdict.details[row]}"
        )
        for name, verdict in verdicts.items()
        for row in verdict.rejected_rows
    ]
    return accepted, sorted(rejected, key=lambda r: (POSTED_TABLES.index(r.table), r.row))


def _plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (Timestamps stay Timestamps), empty as None.

    Column by column (a whole-frame `astype(object).where(...)` costs a third of a posted
    batch's check)."""
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        values = column.astype(object).tolist()
        missing = column.isna().to_numpy()
        if missing.any():
            values = [None if gone else value for value, gone in zip(values, missing, strict=True)]
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
