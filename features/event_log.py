"""The event log's format: posted purchases, feedback, item updates, views and carts as JSON
lines, appended durably and read back for training and for every serving worker.

Layout: `EVENTS_DIR/events-YYYYMMDD.jsonl` (UTC date of receipt), one JSON object per line:
`{"event": "purchase"|"feedback"|"item"|"view"|"cart"|"impression"|"click", "received_at":
ISO-UTC, <the contract's columns>}` (a purchase may also carry the `recommendation_id` it came
from; a view or cart holds the columns of `features.contract.INTERACTIONS`; an impression's
`items` is a JSON list).
Timestamps are stored as ISO 8601 UTC. A batch (`EventBatch`: one post's validated rows, by
posted table, what every event store appends) is one `write` of all its lines under an
exclusive `flock`, followed by `os.fsync` (and an fsync of the directory when the day's file is
new) before `EventLog.append` returns, so an acknowledged event survives a crash. A line torn by
a crash mid-write (never acknowledged) is closed before the next append and skipped by every
reader.

`read_event_log(directory)` gives the purchases and feedback back as two DataFrames in the
canonical types of `features.shop.Shop`, `read_item_updates(directory)` the latest posted row
of each item, `read_events` all three in one pass; the next `patronage train --events` merges
them with the shop's own tables (and validates them again with them); views and carts feed
serving only (`read_interactions` reads them; docs/serving.md says why training leaves them
out). The server writes the log
(`POST /v1/events`) and follows it (`serving.overlay.EventOverlay`); this module sits below both
so that training reads the log without importing the server.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import (
    CLICKS,
    FEEDBACK,
    IMPRESSIONS,
    INTERACTION_KINDS,
    INTERACTIONS,
    ITEMS,
    POSTED_TABLE_NAMES,
    PURCHASES,
    Table,
)

logger = logging.getLogger("patronage.events")
EVENT_FILE_GLOB = "events-*.jsonl"
EVENT_KINDS = {
    "purchase": PURCHASES,
    "feedback": FEEDBACK,
    "item": ITEMS,
    "impression": IMPRESSIONS,
    "click": CLICKS,
    **dict.fromkeys(INTERACTION_KINDS, INTERACTIONS),
}
"""The `event` of each record, and the contract table its columns come from."""
TABLE_EVENTS = {
    "purchases": "purchase",
    "feedback": "feedback",
    "items": "item",
    "impressions": "impression",
    "clicks": "click",
}
"""The `event` of a row of each posted table (an interaction's is its `kind`: view or cart)."""
Rows = Sequence[Mapping[str, Any]]


def event_of(table: str, row: Mapping[str, Any]) -> str:
    """The `event` a row of the posted `table` is stored as: `view` or `cart` for an
    interaction (its `kind`), else the table's (`TABLE_EVENTS`)."""
    return str(row["kind"]) if table == "interactions" else TABLE_EVENTS[table]


@dataclass(frozen=True)
class EventBatch:
    """The validated rows of one post, by posted table (`features.contract.POSTED_TABLE_NAMES`):
    what an event store keeps all or none, durably before its `append` returns. Rows hold the
    canonical values `features.posted_rows.check_posted_rows` gives (timestamps as UTC
    `pandas.Timestamp`, an impression's `items` as a sequence of ids, empty values as None)."""

    purchases: Rows = ()
    feedback: Rows = ()
    items: Rows = ()
    interactions: Rows = ()
    impressions: Rows = ()
    clicks: Rows = ()

    @classmethod
    def from_tables(cls, rows: Mapping[str, Rows]) -> EventBatch:
        """A batch from rows keyed by posted table name (what `check_posted_rows` accepts);
        raises KeyError naming a table that is not posted."""
        unknown = set(rows) - set(POSTED_TABLE_NAMES)
        if unknown:
            raise KeyError(f"not posted tables: {', '.join(sorted(unknown))}")
        return cls(**{name: tuple(table_rows) for name, table_rows in rows.items()})

    def tables(self) -> dict[str, Rows]:
        """The rows of each posted table, in `POSTED_TABLE_NAMES` order (empty ones too)."""
        return {name: getattr(self, name) for name in POSTED_TABLE_NAMES}

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.tables().values())


def _to_json_line(event: str, values: Mapping[str, Any], received_at: str) -> str:
    record: dict[str, Any] = {"event": event, "received_at": received_at}
    for name, value in values.items():
        record[name] = value.isoformat() if isinstance(value, pd.Timestamp) else value
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class EventLog:
    """Append-only, fsynced JSON-lines files under one directory. Safe across threads and
    processes (uvicorn workers) on a local filesystem."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path_for(self, when: datetime) -> Path:
        """The file for events received at `when` (its UTC date)."""
        return self.directory / f"events-{when.astimezone(UTC):%Y%m%d}.jsonl"

    def append(self, batch: EventBatch, received_at: datetime) -> Path:
        """Append a batch of validated rows and make it durable before returning; returns the
        file. Each interaction is logged as the event its `kind` names (`view` or `cart`).

        Raises OSError when the disk refuses (the caller answers 503, nothing acknowledged)."""
        stamp = received_at.astimezone(UTC).isoformat()
        lines = [
            _to_json_line(event_of(table, row), row, stamp)
            for table, rows in batch.tables().items()
            for row in rows
        ]
        payload = ("\n".join(lines) + "\n").encode()
        path = self.path_for(received_at)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # other worker processes append to the same file
                view = memoryview(_after_torn_tail(fd, path) + payload)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the flock
            if created:
                _fsync_directory(self.directory)
        return path


def _after_torn_tail(fd: int, path: Path) -> bytes:
    """A newline when the file (open, locked) ends in a fragment without its newline, else nothing.

    A crash mid-write leaves a torn last line that was never acknowledged; appending straight
    after it would glue the next (acknowledged) record onto it, and both would be unreadable.
    Ending the fragment first keeps it one unreadable line, skipped by every reader."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return b""
    logger.warning(
        "event log %s ended in a torn line (a crash mid-write; never acknowledged): closed it "
        "before appending",
        path.name,
    )
    return b"\n"


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _records(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """The event records among log lines; empty lines and lines torn by a crash mid-write
    (never acknowledged) are skipped."""
    records = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") in EVENT_KINDS:
            records.append(record)
    return records


def iter_event_records(directory: Path) -> Iterable[dict[str, Any]]:
    """Every record of the log, oldest file first; a torn last line (crash mid-write of an
    unacknowledged batch) is skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(EVENT_FILE_GLOB)):
        yield from _records(path.read_bytes().splitlines())


def _canonical_frame(table: Table, records: list[dict[str, Any]]) -> pd.DataFrame:
    names = [c.name for c in table.columns]
    frame = pd.DataFrame.from_records(
        [{n: r.get(n) for n in names} for r in records], columns=names
    )
    for column in table.columns:
        series = frame[column.name]
        if column.kind == "timestamp":
            frame[column.name] = pd.to_datetime(series, utc=True, format="ISO8601").astype(
                "datetime64[ns, UTC]"
            )
        elif column.kind == "int":
            frame[column.name] = series.astype("Int64" if not column.required else "int64")
        elif column.kind == "float":
            frame[column.name] = pd.to_numeric(series).astype("float64")
        else:
            frame[column.name] = series.astype(object)
    return frame


def read_event_log(directory: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The event log as `(purchases, feedback)` DataFrames in the contract's columns and the
    canonical types of `features.shop.Shop` (ids str, timestamps datetime64[ns, UTC], quantity
    int64, rating Int64, unit_price float64).

    Events were validated against the contract when posted. A purchase posted twice (same
    `order_id` + `item_id`, e.g. a client retry) is kept once (the first). A missing directory
    gives two empty frames."""
    purchases, feedback, _ = read_events(directory)
    return purchases, feedback


def read_item_updates(directory: Path | str) -> pd.DataFrame:
    """What the posted item rows say about each item, in the contract's `items` columns plus
    `received_at` of its latest row: per column the latest value given (log order), so a later
    row that only changes `available` keeps an earlier price. A missing directory or no item
    events give an empty frame. The next `patronage train --events` applies them."""
    return _item_updates(r for r in iter_event_records(Path(directory)) if r["event"] == "item")


def read_events(directory: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`read_event_log`'s purchases and feedback and `read_item_updates`' items, in one pass
    over the log (what `patronage train --events` reads)."""
    return events_from_records(iter_event_records(Path(directory)))


def events_from_records(
    records: Iterable[dict[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`read_events`' three frames from event records in the order they were stored (the
    PostgreSQL event store hands its rows over as the same records)."""
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in EVENT_KINDS}
    for record in records:
        by_kind[record["event"]].append(record)
    purchase_frame = _canonical_frame(PURCHASES, by_kind["purchase"])
    purchase_frame = purchase_frame.drop_duplicates(list(PURCHASES.key), keep="first")
    feedback_frame = _canonical_frame(FEEDBACK, by_kind["feedback"])
    return (
        purchase_frame.reset_index(drop=True),
        feedback_frame.reset_index(drop=True),
        _item_updates(by_kind["item"]),
    )


def read_interactions(directory: Path | str) -> pd.DataFrame:
    """The posted views and carts, in the columns of `features.contract.INTERACTIONS` and its
    canonical types (ids str, `occurred_at` datetime64[ns, UTC]), in log order. A missing
    directory gives an empty frame."""
    return interactions_from_records(iter_event_records(Path(directory)))


def interactions_from_records(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """`read_interactions`' frame from event records in the order they were stored (other
    kinds are ignored; the PostgreSQL event store hands its rows over as the same records)."""
    views_and_carts = [r for r in records if r["event"] in INTERACTION_KINDS]
    return _canonical_frame(INTERACTIONS, views_and_carts)


def _item_updates(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per item from its item records (log order): per column the latest value given."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        given = {name: value for name, value in record.items() if value is not None}
        latest.setdefault(str(record["item_id"]), {}).update(given)
    names = [*(c.name for c in ITEMS.columns), "received_at"]
    frame = pd.DataFrame.from_records(
        [{n: r.get(n) for n in names} for r in latest.values()], columns=names
    )
    frame["item_id"] = frame["item_id"].astype(object)
    frame["price"] = pd.to_numeric(frame["price"]).astype("float64")
    frame["available"] = frame["available"].astype("boolean")
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True, format="ISO8601")
    return frame.reset_index(drop=True)


def read_new_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The records of the complete lines of `path` after byte `offset`, and the offset after
    the last complete line (a line still being written by another process is read next time)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    return _records(data[:end].splitlines()), offset + end
