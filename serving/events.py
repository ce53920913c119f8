"""The event log: purchases, feedback and item updates posted to `POST /v1/events`, appended
durably.

Layout: `EVENTS_DIR/events-YYYYMMDD.jsonl` (UTC date of receipt), one JSON object per line:
`{"event": "purchase"|"feedback"|"item", "received_at": ISO-UTC, <the contract's columns>}`.
Timestamps are stored as ISO 8601 UTC. A batch is one `write` of all its lines under an
exclusive `flock`, followed by `flush` + `os.fsync` (and an fsync of the directory when the day's
file is new) before the server answers 2xx, so an acknowledged event survives a crash.

`read_event_log(directory)` gives the purchases and feedback back as two DataFrames in the
canonical types of `features.shop.Shop`, `read_item_updates(directory)` the latest posted row
of each item; the next `patronage train --events` merges them with the shop's own tables.
The in-memory `EventOverlay` reflects events at once where that is cheap and honest: items just
bought leave that customer's recommendations, the last order date moves, and an item posted
with `available: false` leaves every recommendation answer.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import FEEDBACK, ITEMS, PURCHASES, Column, Table
from serving.schemas import ISO_8601 as _ISO_8601

logger = logging.getLogger("patronage.serving")
EVENT_FILE_GLOB = "events-*.jsonl"
INT64_MAX = 2**63 - 1
EVENT_KINDS = {"purchase": PURCHASES, "feedback": FEEDBACK, "item": ITEMS}


@dataclass(frozen=True)
class RejectedEvent:
    """One posted row that breaks the contract, and why."""

    table: str
    row: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"table": self.table, "row": self.row, "reason": self.reason}


def _parse_timestamp(value: Any) -> pd.Timestamp:
    """ISO 8601 to a UTC Timestamp; no zone means UTC. Raises ValueError when unparseable."""
    if not isinstance(value, str) or not _ISO_8601.fullmatch(value.strip()):
        raise ValueError("not an ISO 8601 timestamp")  # pandas would take "now" or "today"
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise ValueError("not an ISO 8601 timestamp") from error
    if stamp is pd.NaT or pd.isna(stamp):
        raise ValueError("not an ISO 8601 timestamp")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _check_cell(column: Column, value: Any, latest: pd.Timestamp) -> tuple[Any, str | None]:
    """Check one cell against its contract column; returns (canonical value, reason or None)."""
    missing = value is None or (isinstance(value, str) and not value.strip())
    if missing:
        return None, (f"{column.name} is required" if column.required else None)
    kind = column.kind
    if kind == "id":
        if not isinstance(value, str):
            return None, f"{column.name} must be a string id"
        return value, None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"{column.name} must be an integer"
        if isinstance(value, float) and not value.is_integer():
            return None, f"{column.name} must be an integer"
        value = int(value)
        if abs(value) > INT64_MAX:
            return None, f"{column.name} is too large"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"{column.name} must be a number"
        value = float(value)
        if not math.isfinite(value):
            return None, f"{column.name} must be a finite number"
    elif kind == "timestamp":
        try:
            stamp = _parse_timestamp(value)
        except ValueError:
            return None, f"{column.name} {value!r} is not an ISO 8601 timestamp"
        if stamp > latest:
            return None, f"{column.name} {stamp.isoformat()} is in the future"
        return stamp, None
    elif kind == "choice":
        if value not in column.choices:
            return None, f"{column.name} must be one of {', '.join(column.choices)}"
        return value, None
    elif kind in ("text",):
        if not isinstance(value, str):
            return None, f"{column.name} must be text"
        return value, None
    elif kind == "bool":
        if not isinstance(value, bool):
            return None, f"{column.name} must be true or false"
        return value, None
    if column.minimum is not None and value < column.minimum:
        return None, f"{column.name} must be >= {column.minimum:g}"
    if column.maximum is not None and value > column.maximum:
        return None, f"{column.name} must be <= {column.maximum:g}"
    return value, None


def validate_event_rows(
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    now: datetime,
    future_tolerance_s: float,
    positions: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], list[RejectedEvent]]:
    """Check posted rows with the contract's rules for `table`; returns (clean rows, rejects).

    Rules: required columns present and non-empty, types, ranges, choices, no unknown columns,
    timestamps not after `now + future_tolerance_s` (UTC), a rating for `kind=rating`, and no
    duplicate key inside the batch. Clean rows hold canonical values (UTC Timestamps, ints).
    `positions`: each row's number in the request (default 0, 1, ...), used in the rejects."""
    latest = pd.Timestamp(now).tz_convert("UTC") + pd.Timedelta(seconds=future_tolerance_s)
    clean: list[dict[str, Any]] = []
    rejected: list[RejectedEvent] = []
    seen_keys: dict[tuple[Any, ...], int] = {}
    numbers = range(len(rows)) if positions is None else positions
    for position, row in zip(numbers, rows, strict=True):
        reasons: list[str] = []
        unknown = sorted(set(row) - set(table.columns_by_name))
        if unknown and not table.extra_columns_allowed:
            reasons.append(f"unknown column(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for column in table.columns:
            value, reason = _check_cell(column, row.get(column.name), latest)
            if reason:
                reasons.append(reason)
            values[column.name] = value
        if table is FEEDBACK and values.get("kind") == "rating" and row.get("rating") is None:
            reasons.append("rating is required when kind is rating")
        if table.key and not reasons:
            key = tuple(values[c] for c in table.key)
            if key in seen_keys:
                reasons.append(
                    f"duplicate {'+'.join(table.key)} of row {seen_keys[key]} in this request"
                )
            seen_keys.setdefault(key, position)
        if reasons:
            rejected.append(RejectedEvent(table.name, position, "; ".join(reasons)))
        else:
            clean.append(values)
    return clean, rejected


# Rules about the shop's other tables: the posted rows are checked against them when the next
# training merges the log with the shop (features/validation.py runs again there).
REFERENCE_REASONS = frozenset(
    {"unknown_customer", "unknown_item", "unknown_order", "order_customer_mismatch"}
)


def contract_rejects(
    purchases: Sequence[Mapping[str, Any]],
    feedback: Sequence[Mapping[str, Any]],
    latest: datetime,
    items: Sequence[Mapping[str, Any]] = (),
    positions: Mapping[str, Sequence[int]] | None = None,
) -> list[RejectedEvent]:
    """Run the data contract's own validation (`features.validation.validate_tables`, the code
    `patronage validate` runs) over posted rows; every per-row rule counts, references to the
    shop's other tables do not (see REFERENCE_REASONS). `latest` (UTC) plays `as_of`.
    `positions`: per table name, each row's number in the request (default 0, 1, ...)."""
    from features.validation import RawTable, validate_tables

    given = positions or {}
    numbers = {
        name: np.asarray(given.get(name, range(len(rows))), dtype=np.int64)
        for name, rows in (("purchases", purchases), ("feedback", feedback), ("items", items))
    }
    raw = {
        name: RawTable(
            name,
            pd.DataFrame.from_records(
                [dict(r) for r in rows], columns=[c.name for c in table.columns]
            ),
            numbers[name] + 1,
        )
        for name, rows, table in (
            ("purchases", purchases, PURCHASES),
            ("feedback", feedback, FEEDBACK),
            ("items", items, ITEMS),
        )
    }
    verdicts = validate_tables(raw, pd.Timestamp(latest).tz_convert("UTC"))
    rejected = []
    for name in ("purchases", "feedback", "items"):
        verdict = verdicts[name]
        for row in verdict.rejected_rows:
            if verdict.reasons[row] in REFERENCE_REASONS:
                continue
            rejected.append(
                RejectedEvent(
                    name,
                    int(numbers[name][row]),
                    f"{verdict.reasons[row]}: {verdict.details[row]}",
                )
            )
    return rejected


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

    def append(
        self,
        purchases: Sequence[Mapping[str, Any]],
        feedback: Sequence[Mapping[str, Any]],
        received_at: datetime,
        items: Sequence[Mapping[str, Any]] = (),
    ) -> Path:
        """Append validated rows and make them durable before returning; returns the file.

        Raises OSError when the disk refuses (the caller answers 503, nothing acknowledged)."""
        stamp = received_at.astimezone(UTC).isoformat()
        lines = [_to_json_line("purchase", row, stamp) for row in purchases]
        lines += [_to_json_line("feedback", row, stamp) for row in feedback]
        lines += [_to_json_line("item", row, stamp) for row in items]
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
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in EVENT_KINDS}
    for record in iter_event_records(Path(directory)):
        by_kind[record["event"]].append(record)
    purchase_frame = _canonical_frame(PURCHASES, by_kind["purchase"])
    purchase_frame = purchase_frame.drop_duplicates(list(PURCHASES.key), keep="first")
    feedback_frame = _canonical_frame(FEEDBACK, by_kind["feedback"])
    return (
        purchase_frame.reset_index(drop=True),
        feedback_frame.reset_index(drop=True),
        _item_updates(by_kind["item"]),
    )


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


def _new_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The records of the complete lines of `path` after byte `offset`, and the offset after
    the last complete line (a line still being written by another process is read next time)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    return _records(data[:end].splitlines()), offset + end


class EventOverlay:
    """Purchases and item availability posted since the model's data, in memory: from this
    process's own posts at once, and from the log (`follow`: at start-up, then what other
    worker processes appended).

    Reads are plain dict/list lookups (safe under the GIL while a writer appends)."""

    def __init__(self) -> None:
        # customer -> (ordered_at epoch seconds, item_id, order_id) per posted purchase line
        self._purchases: dict[str, list[tuple[float, str, str | None]]] = {}
        self._purchase_keys: set[tuple[str, str]] = set()  # (order_id, item_id) seen
        self._available: dict[str, tuple[float, bool]] = {}  # item -> (received_at, available)
        self._hidden: frozenset[str] = frozenset()
        self._shown: frozenset[str] = frozenset()
        self._offsets: dict[str, int] = {}  # log file name -> bytes already read
        self._lock = threading.Lock()
        self.events_received = 0

    def add_items(
        self, rows: Iterable[Mapping[str, Any]], received_at: datetime | None = None
    ) -> None:
        """Remember each item's latest posted `available` (rows without it leave it as is).

        Rows are ordered by `received_at` (the argument, else each row's own, as the log holds
        it), so a replay of the log at start-up never undoes a newer post."""
        with self._lock:
            for row in rows:
                if row.get("available") is None:
                    continue
                when = received_at if received_at is not None else row["received_at"]
                stamp = (_parse_timestamp(when) if isinstance(when, str) else when).timestamp()
                item = str(row["item_id"])
                if item not in self._available or stamp >= self._available[item][0]:
                    self._available[item] = (stamp, bool(row["available"]))
            # New frozensets per update: readers take them without a lock.
            self._hidden = frozenset(i for i, (_, ok) in self._available.items() if not ok)
            self._shown = frozenset(i for i, (_, ok) in self._available.items() if ok)

    def hidden_items(self) -> frozenset[str]:
        """Items whose latest posted row says `available: false`: no answer may show them.

        The same object until an item update changes it (callers may cache by identity)."""
        return self._hidden

    def shown_items(self) -> frozenset[str]:
        """Items whose latest posted row says `available: true` (a restocked item comes back).

        The same object until an item update changes it (callers may cache by identity)."""
        return self._shown

    def add_purchases(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Remember `(ordered_at, item_id, order_id)` per customer; `ordered_at` a UTC
        Timestamp or ISO.

        A line seen before (same `order_id` and `item_id`: a client retry, or this process's
        own post read back from the log) counts once, as in training."""
        with self._lock:
            for row in rows:
                order_id = None if row.get("order_id") is None else str(row["order_id"])
                if order_id is not None:
                    key = (order_id, str(row["item_id"]))
                    if key in self._purchase_keys:
                        continue
                    self._purchase_keys.add(key)
                ordered_at = row["ordered_at"]
                if not isinstance(ordered_at, pd.Timestamp):
                    ordered_at = _parse_timestamp(ordered_at)
                entries = self._purchases.setdefault(str(row["customer_id"]), [])
                entries.append((ordered_at.timestamp(), str(row["item_id"]), order_id))

    def follow(self, directory: Path) -> int:
        """Read what the log gained since the last call (the first call reads it all) and
        reflect its purchases and item updates; returns how many records were new.

        Every worker process calls this now and then, so a post to one worker reaches the
        others; records this process posted itself change nothing the second time."""
        directory = Path(directory)
        if not directory.is_dir():
            return 0
        records: list[dict[str, Any]] = []
        for path in sorted(directory.glob(EVENT_FILE_GLOB)):
            offset = self._offsets.get(path.name, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
                new, self._offsets[path.name] = _new_records(path, offset)
            except FileNotFoundError:  # archived by the operator in between
                continue
            records += new
        self.add_purchases(r for r in records if r["event"] == "purchase")
        self.add_items(r for r in records if r["event"] == "item")
        return len(records)

    def replay(self, directory: Path) -> int:
        """Load the purchases and item updates already in the log; returns how many."""
        return self.follow(directory)

    def items_bought_since(self, customer_id: str, since: pd.Timestamp) -> list[str]:
        """Items this customer bought at or after `since` according to posted events."""
        entries = self._purchases.get(customer_id)
        if not entries:
            return []
        cutoff = since.timestamp()
        return [item for at, item, _ in list(entries) if at >= cutoff]

    def orders_since(self, customer_id: str, since: pd.Timestamp) -> int:
        """Distinct orders (`order_id`s) this customer placed at or after `since` according to
        posted events: a three-line order is one order, as the customer features count them."""
        entries = self._purchases.get(customer_id)
        if not entries:
            return 0
        cutoff = since.timestamp()
        orders = {
            order_id if order_id is not None else (at, item)
            for at, item, order_id in list(entries)
            if at >= cutoff
        }
        return len(orders)

    def last_order_since(self, customer_id: str, since: pd.Timestamp) -> pd.Timestamp | None:
        """The latest posted order time at or after `since`, or None."""
        entries = self._purchases.get(customer_id)
        if not entries:
            return None
        cutoff = since.timestamp()
        latest = max((at for at, _, _ in list(entries) if at >= cutoff), default=None)
        return None if latest is None else pd.Timestamp(latest, unit="s", tz="UTC")
