"""Where posted events are kept: one interface, `EventStore`, with two stores behind it.

`FileEventStore` is the append-only JSON-lines log of one host (`features.event_log`; worker
processes on that host share it). `PostgresEventStore` (`features.postgres_events`) keeps them
in PostgreSQL, so serving replicas on several hosts share one store. Both keep every posted
table (`features.contract.POSTED_TABLE_NAMES`: purchases, feedback, item updates, views and
carts, impressions, clicks) with the same semantics. The server appends an `EventBatch` through
`append` and follows the others' appends through `records_after` (an opaque cursor) and
`wait_for_news`; `patronage train --events` reads everything through `read_events`, the online
metrics (`features.online_metrics`) through `read_records`.
`open_event_store(location)` picks the store: a `postgresql://` URL or a directory.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from features.event_log import (
    EVENT_FILE_GLOB,
    EventBatch,
    EventLog,
    events_from_records,
    iter_event_records,
    read_new_records,
)
from features.postgres_url import is_postgres_url


class EventStore(Protocol):
    """Posted events (every posted table), durable before `append` returns."""

    location: str
    """Where the events are, for messages (a directory, or a URL with its password masked)."""

    def append(self, batch: EventBatch, received_at: datetime) -> str:
        """Store a batch of validated rows durably (all or none) before returning; returns
        where they went (the log file's name, or the database schema). Raises OSError when the
        store refuses (the server answers 503; nothing was acknowledged). A retried row (a
        purchase line with the same order_id and item_id, an impression with the same
        recommendation_id, a click with the same recommendation_id and item_id) counts once:
        the file log's readers keep the first, the database does not store it again."""
        ...

    def records_after(self, cursor: Any) -> tuple[list[dict[str, Any]], Any]:
        """The records stored after `cursor` (None: from the start) and the cursor after them.

        A record is `{"event": "purchase"|"feedback"|"item"|"view"|"cart"|"impression"|
        "click", "received_at": ..., <columns>}`, as `features.event_log` writes them (ISO 8601
        UTC text for timestamps, an impression's `items` a list). Raises OSError when the store
        cannot be read."""
        ...

    def read_records(self) -> list[dict[str, Any]]:
        """Every record stored, as `records_after` gives them. Raises OSError when the store
        cannot be read."""
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

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)
        self._log = EventLog(self.directory)

    def append(self, batch: EventBatch, received_at: datetime) -> str:
        """Append and fsync (see `EventLog.append`); returns the day's file name."""
        return self._log.append(batch, received_at).name

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

    def read_records(self) -> list[dict[str, Any]]:
        """Every record of the log, oldest file first (`iter_event_records`)."""
        return list(iter_event_records(self.directory))

    def wait_for_news(self, seconds: float, stop: threading.Event) -> None:
        """Sleep `seconds` (a file gives no signal), or less when `stop` is set."""
        stop.wait(seconds)

    def read_events(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """`features.event_log.read_events` of the directory."""
        return events_from_records(self.read_records())

    def close(self) -> None:
        """Nothing to release: every append opens and closes its file."""


def open_event_store(location: Path | str) -> EventStore:
    """The store at `location`: `PostgresEventStore` for a `postgresql://` URL (its schema, by
    default `patronage_events`, is created at first use, or upgraded to this code's version),
    else the log directory."""
    if is_postgres_url(location):
        from features.postgres_events import PostgresEventStore

        return PostgresEventStore(str(location))
    return FileEventStore(location)
