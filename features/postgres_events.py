"""The event store in PostgreSQL: posted events shared by every serving replica.

Three tables in one schema (default `patronage_events`; `?schema=` in the URL picks another):
`purchases` and `feedback` (the contract's columns) and `item_updates` (the items columns, one
row per posted update), each with an `id bigserial` and `received_at timestamptz` (UTC). A
batch is one transaction, committed before `append` returns (so before the server's 201).
Unique constraints keep a purchase line once per (order_id, item_id) and a feedback row once
per (customer_id, created_at, kind, item_id, order_id): a client's retry inserts nothing and is
answered like the first post (`ON CONFLICT DO NOTHING`), as the file log's readers keep a
retried line once. Item updates are a history (the latest value of each column wins), so a
retried update is kept twice and changes nothing.

Every append takes one transaction-level advisory lock before its rows get their ids, so ids
commit in order and a replica that has read up to id N never later finds a smaller id: each
replica follows the others by asking for ids above the last it saw. The append also sends
`NOTIFY patronage_events`, which wakes the followers (`wait_for_news`) at once; without it they
still poll every `events_follow_seconds`. The schema is created by the first process that uses
the store and versioned in `schema_version` (a store of a newer version is refused).
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

from features.contract import FEEDBACK, ITEMS, PURCHASES, Table
from features.event_log import events_from_records
from features.postgres_url import split_url

logger = logging.getLogger("patronage.events")

DEFAULT_SCHEMA = "patronage_events"
SCHEMA_VERSION = 1
"""The version of the tables this code writes; `schema_version` holds the store's."""
CHANNEL = "patronage_events"
"""The NOTIFY channel an append signals on."""
APPEND_LOCK = 0x5041_5452_4F4E_4147  # "PATRONAG": the advisory lock every append takes
TABLES: dict[str, tuple[str, Table]] = {
    "purchase": ("purchases", PURCHASES),
    "feedback": ("feedback", FEEDBACK),
    "item": ("item_updates", ITEMS),
}
"""Event kind -> (table in the store, the contract table its columns come from)."""
SQL_TYPES = {
    "id": "text",
    "int": "bigint",
    "float": "double precision",
    "timestamp": "timestamptz",
    "text": "text",
    "bool": "boolean",
    "choice": "text",
}
UNIQUE = {
    "purchases": "UNIQUE (order_id, item_id)",
    "feedback": "UNIQUE NULLS NOT DISTINCT (customer_id, created_at, kind, item_id, order_id)",
}


def _create_tables(schema: str) -> list[sql.Composed]:
    """Version 1 of the store: the three event tables and their indexes."""
    statements = []
    for table_name, table in TABLES.values():
        columns = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(c.name),
                sql.SQL(SQL_TYPES[c.kind]),
                sql.SQL(" NOT NULL" if c.required else ""),
            )
            for c in table.columns
        ]
        parts = [
            sql.SQL("id bigserial PRIMARY KEY"),
            *columns,
            sql.SQL("received_at timestamptz NOT NULL"),
        ]
        if table_name in UNIQUE:
            parts.append(sql.SQL(UNIQUE[table_name]))
        statements.append(
            sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier(schema, table_name), sql.SQL(", ").join(parts)
            )
        )
    return statements


def _unavailable(error: Exception, doing: str) -> OSError:
    """A database failure as the OSError the server answers 503 for."""
    return OSError(errno.EIO, f"PostgreSQL event store: could not {doing}: {error}")


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
        """The store's connection (schema checked), under its lock; a failure drops the
        connection and raises OSError."""
        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    # Autocommit: every transaction is an explicit `transaction()` block (BEGIN
                    # ... COMMIT), never one opened implicitly and left open by a stray query.
                    self._connection = psycopg.connect(
                        self._url.conninfo, autocommit=True, connect_timeout=10
                    )
                if not self._ready:
                    self._ensure_schema(self._connection)
                    self._ready = True
                yield self._connection
            except psycopg.Error as error:
                self._drop()
                raise _unavailable(error, doing) from error

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                pass
        self._connection = None

    def _ensure_schema(self, connection: psycopg.Connection) -> None:
        """Create the schema and tables at first use (one process at a time), or check that the
        store's version is one this code knows."""
        schema = sql.Identifier(self.schema)
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(self.schema, "schema_version"))
            )
            found = connection.execute(
                sql.SQL("SELECT max(version) FROM {}").format(
                    sql.Identifier(self.schema, "schema_version")
                )
            ).fetchone()
            version = found[0] if found else None
            if version is None:
                for statement in _create_tables(self.schema):
                    connection.execute(statement)
                connection.execute(
                    sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(
                        sql.Identifier(self.schema, "schema_version")
                    ),
                    [SCHEMA_VERSION],
                )
                logger.info("created the event store %s (version %d)", self.location, 1)
            elif version > SCHEMA_VERSION:
                raise psycopg.errors.FeatureNotSupported(
                    f"the event store {self.location} is at schema version {version}; this "
                    f"Patronage knows version {SCHEMA_VERSION}: upgrade Patronage"
                )

    tables = frozenset({"purchases", "feedback", "items"})
    """Impressions, clicks, views and carts are kept by the file event log only (for now)."""

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
        """Insert the rows in one transaction, committed before returning; returns the schema.

        A purchase or feedback row already stored is skipped (a retry). Raises OSError when
        the database refuses (nothing was stored); ValueError for impressions, clicks, views or
        carts, which this store does not keep yet (nothing was stored)."""
        if impressions or clicks or interactions:
            raise ValueError(
                "the PostgreSQL event store keeps purchases, feedback and item updates; "
                "impressions, clicks, views and carts need the file event log for now "
                "(unset PATRONAGE_EVENTS_URL)"
            )
        stamp = received_at.astimezone(UTC)
        with self._connected("store the events") as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
            with connection.cursor() as cursor:
                batches = (("purchase", purchases), ("feedback", feedback), ("item", items))
                for kind, rows in batches:
                    if rows:
                        statement, values = self._insert(kind, rows, stamp)
                        cursor.executemany(statement, values)
            connection.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(CHANNEL)))
        return f"postgresql:{self.schema}"

    def _insert(
        self, kind: str, rows: Sequence[Mapping[str, Any]], received_at: datetime
    ) -> tuple[sql.Composed, list[list[Any]]]:
        table_name, table = TABLES[kind]
        names = [c.name for c in table.columns]
        template = sql.SQL("INSERT INTO {} ({}, received_at) VALUES ({}) ON CONFLICT DO NOTHING")
        statement = template.format(
            sql.Identifier(self.schema, table_name),
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(sql.Placeholder() for _ in range(len(names) + 1)),
        )
        values = [[_plain(row.get(n)) for n in names] + [received_at] for row in rows]
        return statement, values

    def records_after(self, cursor: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The records with ids above `cursor` (event kind -> last id read), purchases, then
        feedback, then item updates, each in id order."""
        seen: dict[str, int] = dict(cursor or {})
        records: list[dict[str, Any]] = []
        with self._connected("read the events") as connection, connection.transaction():
            for kind, (table_name, table) in TABLES.items():
                names = ["id", *(c.name for c in table.columns), "received_at"]
                query = sql.SQL("SELECT {} FROM {} WHERE id > %s ORDER BY id").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names),
                    sql.Identifier(self.schema, table_name),
                )
                for row in connection.execute(query, [seen.get(kind, 0)]):
                    values = zip(names, row, strict=True)
                    record = {"event": kind, **{n: _as_logged(v) for n, v in values}}
                    seen[kind] = int(record.pop("id"))
                    records.append(record)
        return records, seen

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
            logger.warning("event store: listening failed (%s); polling instead", error)
            self._close_listener()
            stop.wait(seconds)

    def read_events(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Every stored event as `features.event_log.read_events` gives the file log's."""
        records, _ = self.records_after(None)
        return events_from_records(records)

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass
        self._listener = None

    def close(self) -> None:
        """Close both connections (a later call reconnects)."""
        with self._lock:
            self._drop()
        self._close_listener()


def _plain(value: Any) -> Any:
    """A validated row's value as the driver takes it (pandas missing values as NULL)."""
    if value is None:
        return None
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
