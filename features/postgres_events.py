"""The event store in PostgreSQL: posted events shared by every serving replica.

One table per posted table in one schema (default `patronage_events`; `?schema=` in the URL
picks another): `purchases`, `feedback`, `item_updates`, `interactions` (views and carts),
`impressions` and `clicks`, each with an `id bigserial` and `received_at timestamptz` (UTC);
created and versioned by `features.postgres_event_schema`. A batch is one transaction,
committed before `append` returns (so before the server's 201).
Unique constraints keep a purchase line once per (order_id, item_id), a feedback row once per
(customer_id, created_at, kind, item_id, order_id), a view or cart once per (customer_id,
item_id, kind, occurred_at), an impression once per recommendation_id and a click once per
(recommendation_id, item_id): a client's retry inserts nothing and is answered like the first
post (`ON CONFLICT DO NOTHING`, the first row kept), as the file log's readers count a retried
line once. Item updates are a history (the latest value of each column wins), so a retried
update is kept twice and changes nothing.

Every append takes one transaction-level advisory lock before its rows get their ids, so ids
commit in order and a replica that has read up to id N never later finds a smaller id: each
replica follows the others by asking for ids above the last it saw. The append also sends
`NOTIFY patronage_events`, which wakes the followers (`wait_for_news`) at once; without it they
still poll every `events_follow_seconds`. Records come back as the file log holds them
(`features.event_log`), so the overlay, the online metrics and training read both stores alike.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from features.event_log import EventBatch, event_of, events_from_records
from features.postgres_event_schema import (
    APPEND_LOCK,
    SCHEMA_VERSION,
    STORED_TABLES,
    StoredTable,
    ensure_schema,
)
from features.postgres_url import split_url

logger = logging.getLogger("patronage.events")

DEFAULT_SCHEMA = "patronage_events"
CHANNEL = "patronage_events"
"""The NOTIFY channel an append signals on."""
__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresEventStore"]


def _unavailable(error: Exception, doing: str) -> OSError:
    """A database failure as the OSError the server answers 503 for."""
    return OSError(errno.EIO, f"PostgreSQL event store: could not {doing}: {error}")


def _close_quietly(connection: psycopg.Connection | None) -> None:
    """Close a connection that may already be broken."""
    if connection is not None:
        try:
            connection.close()
        except psycopg.Error:
            pass


class PostgresEventStore:
    """Posted events in PostgreSQL, shared by every replica (see the module docstring).

    One connection for appends and reads (guarded by a lock; appends serialize on the advisory
    lock anyway) and one for LISTEN; both reconnect after a failure."""

    def __init__(self, url: str) -> None:
        self._url = split_url(url, default_schema=DEFAULT_SCHEMA)
        self.schema = self._url.schema
        self.location = self._url.masked
        self._lock = threading.Lock()
        self._connection: psycopg.Connection | None = None
        self._listener: psycopg.Connection | None = None
        self._ready = False

    @contextmanager
    def _connected(self, doing: str) -> Iterator[psycopg.Connection]:
        """The store's connection (schema created or upgraded), under its lock; a failure
        drops the connection and raises OSError."""
        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    # Autocommit: every transaction is an explicit `transaction()` block (BEGIN
                    # ... COMMIT), never one opened implicitly and left open by a stray query.
                    self._connection = psycopg.connect(
                        self._url.conninfo, autocommit=True, connect_timeout=10
                    )
                if not self._ready:
                    ensure_schema(self._connection, self.schema, self.location)
                    self._ready = True
                yield self._connection
            except psycopg.Error as error:
                _close_quietly(self._connection)
                self._connection = None
                raise _unavailable(error, doing) from error

    def append(self, batch: EventBatch, received_at: datetime) -> str:
        """Insert the batch's rows in one transaction, committed before returning; returns
        `postgresql:SCHEMA`. A row already stored under its table's unique key is skipped (a
        retry). Raises OSError when the database refuses (nothing was stored)."""
        stamp = received_at.astimezone(UTC)
        rows_by_table = batch.tables()
        with self._connected("store the events") as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
            with connection.cursor() as cursor:
                for stored in STORED_TABLES:
                    rows = rows_by_table[stored.posted]
                    if rows:
                        cursor.executemany(*self._insert(stored, rows, stamp))
            connection.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(CHANNEL)))
        return f"postgresql:{self.schema}"

    def _insert(
        self, stored: StoredTable, rows: Sequence[Mapping[str, Any]], received_at: datetime
    ) -> tuple[sql.Composed, list[list[Any]]]:
        names = [c.name for c in stored.columns.columns]
        template = sql.SQL("INSERT INTO {} ({}, received_at) VALUES ({}) ON CONFLICT DO NOTHING")
        statement = template.format(
            sql.Identifier(self.schema, stored.name),
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(sql.Placeholder() for _ in range(len(names) + 1)),
        )
        values = [[_plain(row.get(n)) for n in names] + [received_at] for row in rows]
        return statement, values

    def records_after(self, cursor: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The records with ids above `cursor` (store table -> last id read), table by table
        (purchases, feedback, item updates, views and carts, impressions, clicks), each in id
        order."""
        seen: dict[str, int] = dict(cursor or {})
        records: list[dict[str, Any]] = []
        with self._connected("read the events") as connection, connection.transaction():
            for stored in STORED_TABLES:
                names = ["id", *(c.name for c in stored.columns.columns), "received_at"]
                query = sql.SQL("SELECT {} FROM {} WHERE id > %s ORDER BY id").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names),
                    sql.Identifier(self.schema, stored.name),
                )
                for row in connection.execute(query, [seen.get(stored.name, 0)]):
                    values = {n: _as_logged(v) for n, v in zip(names, row, strict=True)}
                    seen[stored.name] = int(values.pop("id"))
                    records.append({"event": event_of(stored.posted, values), **values})
        return records, seen

    def read_records(self) -> list[dict[str, Any]]:
        """Every stored record (`records_after(None)`)."""
        return self.records_after(None)[0]

    def wait_for_news(self, seconds: float, stop: threading.Event) -> None:
        """Wait up to `seconds` for another process's append (LISTEN/NOTIFY); on a connection
        failure, sleep instead (the next call reconnects)."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = psycopg.connect(
                    self._url.conninfo, autocommit=True, connect_timeout=10
                )
                self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            for _ in self._listener.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.Error as error:
            if stop.is_set():  # `close` ended the wait: the server is shutting down
                return
            logger.warning("event store: listening failed (%s); polling instead", error)
            _close_quietly(self._listener)
            self._listener = None
            stop.wait(seconds)

    def read_events(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Every stored event as `features.event_log.read_events` gives the file log's."""
        return events_from_records(self.read_records())

    def close(self) -> None:
        """Close both connections (a later call reconnects)."""
        with self._lock:
            _close_quietly(self._connection)
            self._connection = None
        _close_quietly(self._listener)
        self._listener = None


def _plain(value: Any) -> Any:
    """A validated row's value as the driver takes it (pandas missing values as NULL, an
    impression's items as a list: `text[]`)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _as_logged(value: Any) -> Any:
    """A stored value as the file log holds it (timestamps as ISO 8601 UTC text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value
