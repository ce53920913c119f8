"""Check rows posted to the server (JSON records) with the validator of a shop's files.

`check_posted_rows` puts the posted purchases, feedback, item updates and interactions (views
and carts) into the tables of `features.validation` and applies `check_tables` to them: every
rule of each table on its own, the same code that checks a shop's files (`patronage validate`).
The references to the shop's other tables (feedback about an order or item the request does not
contain) are left to the next `patronage train --events`, which validates the event log
together with the shop's tables.

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

from features.contract import POSTED_ONLY_TABLES, TABLES
from features.validation import RawTable, check_tables

POSTED_TABLES = ("purchases", "feedback", "items", "interactions")
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
    raw: dict[str, RawTable] = {}
    numbers: dict[str, np.ndarray] = {}
    for name in POSTED_TABLES:
        table_rows = rows.get(name) or ()
        if not table_rows:
            continue
        numbers[name] = np.asarray(given.get(name, range(len(table_rows))), dtype=np.int64)
        table = TABLES[name] if name in TABLES else POSTED_ONLY_TABLES[name]
        columns = [column.name for column in table.columns]
        frame = pd.DataFrame.from_records([dict(row) for row in table_rows], columns=columns)
        raw[name] = RawTable(name, frame, numbers[name], row_name="row")
    verdicts = check_tables(raw, pd.Timestamp(as_of).tz_convert("UTC"))
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
    """Rows as dicts of plain Python values (Timestamps stay Timestamps), empty as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
