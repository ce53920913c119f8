"""Where posted events are kept: one interface, `EventStore`, with two stores behind it.

`FileEventStore` is the append-only JSON-lines log of one host (`features.event_log`; worker
processes on that host share it). `PostgresEventStore` (`features.postgres_events`) keeps them
in PostgreSQL, so serving replicas on several hosts share one store. The server appends through
`append` and follows the others' appends through `records_after` (an opaque cursor) and
`wait_for_news`; `patronage train --events` reads everything through `read_events`.
`open_event_store(location)` picks the store: a `postgresql://` URL or a directory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from features.contract import POSTED_TABLE_NAMES
from features.event_log import EVENT_FILE_GLOB, EventLog, read_events, read_new_records
from features.postgres_url import is_postgres_url


class EventStore(Protocol):
    """Posted purchases, feedback and item updates, durable before `append` returns."""

    location: str
    """Where the events are, for messages (a directory, or a URL with its password masked)."""
    tables: frozenset[str]
    """The posted tables this store keeps (`features.contract.POSTED_TABLE_NAMES`, or some)."""

    def append(
        self,
        purchases: Sequence[Mapping[str, Any]],
        feedback: Sequence[Mapping[str, Any]],
        received_at: datetime,
        items: Sequence[Mapping[str, Any]] = (),
        impressions: Sequence[Mapping[str, Any]] = (),
        clicks: Sequence[Mapping[str, Any]] = (),
        interactions: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        """Store validated rows durably (all or none) before returning; returns where they went
        (the log file's name, or the database schema). Raises OSError when the store refuses
        (the server answers 503; nothing was acknowledged). A purchase already stored (same
        order_id and item_id: a client retry) is kept once. Rows of a table outside `tables`
        raise ValueError before anything is stored."""
        ...

    def records_after(self, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
        """The records stored after `cursor` (None: from the start) and the cursor after them.

        A record is `{"event": "purchase"|"feedback"|"item", "received_at": ..., <columns>}`,
        as `features.event_log` writes them. Raises OSError when the store cannot be read."""
        ...

    def wait_for_news(self, seconds: float, stop: threading.Event) -> None:
        """Return after at most `seconds`, sooner when another process may have appended or
        `stop` is set."""
        ...

    def read_events(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Purchases, feedback and item updates as `features.event_log.read_events` gives them
        (canonical types; a purchase once; per item the latest value of each column)."""
        ...

    def close(self) -> None:
        """Release connections (the store may be used again: it reconnects)."""
        ...


class FileEventStore:
    """The JSON-lines event log in one directory (`features.event_log.EventLog`)."""

    tables = frozenset(POSTED_TABLE_NAMES)

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)
        self._log = EventLog(self.directory)

    def append(
        self,
        purchases: Sequence[Mapping[str, Any]],
        feedback: Sequence[Mapping[str, Any]],
        received_at: datetime,
        items: Sequence[Mapping[str, Any]] = (),
        impressions: Sequence[Mapping[str, Any]] = (),
        clicks: Sequence[Mapping[str, Any]] = (),
        interactions: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        """Append and fsync (see `EventLog.append`); returns the day's file name."""
        path = self._log.append(
            purchases, feedback, received_at, items, impressions, clicks, interactions
        )
        return path.name

    def records_after(self, cursor: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The complete records past each file's offset in `cursor` (file name -> bytes read)."""
        offsets: dict[str, int] = dict(cursor or {})
        records: list[dict[str, Any]] = []
        if not self.directory.is_dir():
            return records, offsets
        for path in sorted(self.directory.glob(EVENT_FILE_GLOB)):
            offset = offsets.get(path.name, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
                new, offsets[path.name] = read_new_records(path, offset)
            except FileNotFoundError:  # archived by the operator in between
                continue
            records += new
        return records, offsets

    def wait_for_news(self, seconds: float, stop: threading.Event) -> None:
        """Sleep `seconds` (a file gives no signal), or less when `stop` is set."""
        stop.wait(seconds)

    def read_events(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """`features.event_log.read_events` of the directory."""
        return read_events(self.directory)

    def close(self) -> None:
        """Nothing to release: every append opens and closes its file."""


def open_event_store(location: Path | str) -> EventStore:
    """The store at `location`: `PostgresEventStore` for a `postgresql://` URL (its schema, by
    default `patronage_events`, is created at first use), else the log directory."""
    if is_postgres_url(location):
        from features.postgres_events import PostgresEventStore

        return PostgresEventStore(str(location))
    return FileEventStore(location)
