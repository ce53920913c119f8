"""The PostgreSQL event store's tables and their versions: created by the first process that
uses the store, upgraded in place by the first process of a newer Patronage.

One schema (default `patronage_events`) holds `schema_version` (one row per version applied)
and one table per posted table, each with `id bigserial` (the followers' cursor) and
`received_at timestamptz` (UTC) beside the contract's columns:

- Version 1 (2026-12-07): `purchases` (unique per `order_id, item_id`), `feedback` (unique per
  `customer_id, created_at, kind, item_id, order_id`, nulls equal) and `item_updates` (a
  history: no unique key).
- Version 2 (2026-12-07): `purchases.recommendation_id` (the answer a purchase came from, for
  the online metrics; null on rows stored before), `interactions` (views and carts, unique per
  `customer_id, item_id, kind, occurred_at`: what the server's overlay counts once),
  `impressions` (`items` as `text[]` in shown order, unique per `recommendation_id`) and
  `clicks` (unique per `recommendation_id, item_id`).

`ensure_schema` applies the steps after the store's version, each with its `schema_version`
row, in one transaction under the store's advisory lock, so two replicas starting at once
upgrade it once; a store of a newer version than this code knows is refused. The steps are
never edited once released: a change is a new step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from features.contract import (
    CLICKS,
    FEEDBACK,
    IMPRESSIONS,
    INTERACTIONS,
    ITEMS,
    PURCHASES,
    RECOMMENDATION_ID,
    Table,
    posted_row_tables,
)
from features.database import SQL_TYPES

logger = logging.getLogger("patronage.events")

APPEND_LOCK = 0x5041_5452_4F4E_4147  # "PATRONAG": the advisory lock every append takes


@dataclass(frozen=True)
class StoredTable:
    """One posted table as the store keeps it."""

    name: str
    """The table's name in the store's schema."""
    posted: str
    """The posted table its rows come from (`features.contract.POSTED_TABLE_NAMES`)."""
    columns: Table
    """The contract table whose columns it holds (besides `id` and `received_at`)."""
    unique: str = ""
    """The unique constraint that keeps a retried row once (empty: none)."""


_POSTED = posted_row_tables()
STORED_TABLES: tuple[StoredTable, ...] = (
    StoredTable("purchases", "purchases", _POSTED["purchases"], "UNIQUE (order_id, item_id)"),
    StoredTable(
        "feedback",
        "feedback",
        FEEDBACK,
        "UNIQUE NULLS NOT DISTINCT (customer_id, created_at, kind, item_id, order_id)",
    ),
    StoredTable("item_updates", "items", ITEMS),
    StoredTable(
        "interactions",
        "interactions",
        INTERACTIONS,
        "UNIQUE (customer_id, item_id, kind, occurred_at)",
    ),
    StoredTable("impressions", "impressions", IMPRESSIONS, "UNIQUE (recommendation_id)"),
    StoredTable("clicks", "clicks", CLICKS, "UNIQUE (recommendation_id, item_id)"),
)
"""Every posted table in the store at `SCHEMA_VERSION`, in `POSTED_TABLE_NAMES` order."""
_BY_NAME = {table.name: table for table in STORED_TABLES}


def _create_table(schema: str, stored: StoredTable, columns: Table) -> sql.Composed:
    """CREATE TABLE for `stored` with `columns`' contract columns, `id` and `received_at`."""
    parts = [
        sql.SQL("id bigserial PRIMARY KEY"),
        *(
            sql.SQL("{} {}{}").format(
                sql.Identifier(c.name),
                sql.SQL(SQL_TYPES[c.kind]),
                sql.SQL(" NOT NULL" if c.required else ""),
            )
            for c in columns.columns
        ),
        sql.SQL("received_at timestamptz NOT NULL"),
    ]
    if stored.unique:
        parts.append(sql.SQL(stored.unique))
    return sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(schema, stored.name), sql.SQL(", ").join(parts)
    )


def _version_1(schema: str) -> list[sql.Composed]:
    """Purchases (without `recommendation_id`), feedback and item updates."""
    first = {"purchases": PURCHASES, "feedback": FEEDBACK, "item_updates": ITEMS}
    return [_create_table(schema, _BY_NAME[name], table) for name, table in first.items()]


def _version_2(schema: str) -> list[sql.Composed]:
    """A purchase's `recommendation_id`; interactions, impressions and clicks."""
    column = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        sql.Identifier(schema, "purchases"),
        sql.Identifier(RECOMMENDATION_ID.name),
        sql.SQL(SQL_TYPES[RECOMMENDATION_ID.kind]),
    )
    added = [_BY_NAME[name] for name in ("interactions", "impressions", "clicks")]
    return [column, *(_create_table(schema, stored, stored.columns) for stored in added)]


STEPS: dict[int, Callable[[str], list[sql.Composed]]] = {1: _version_1, 2: _version_2}
"""Each schema version and the statements that bring a store from the one before to it."""
SCHEMA_VERSION = max(STEPS)
"""The version of the tables this code writes; `schema_version` holds the store's."""


class NewerEventStore(psycopg.errors.FeatureNotSupported):
    """The store's schema is newer than this code's: upgrade Patronage."""


def ensure_schema(connection: psycopg.Connection, schema: str, location: str) -> int:
    """Create the store's schema at first use, or upgrade it from its version to
    `SCHEMA_VERSION` (one transaction, under the append lock); returns the version found (0:
    a new store). Raises `NewerEventStore` for a store of a newer version (nothing changed)."""
    version_table = sql.Identifier(schema, "schema_version")
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(version_table)
        )
        found_row = connection.execute(
            sql.SQL("SELECT max(version) FROM {}").format(version_table)
        ).fetchone()
        found = int(found_row[0]) if found_row and found_row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise NewerEventStore(
                f"the event store {location} is at schema version {found}; this Patronage "
                f"knows version {SCHEMA_VERSION}: upgrade Patronage"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in STEPS[version](schema):
                connection.execute(statement)
            connection.execute(
                sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(version_table), [version]
            )
    if found < SCHEMA_VERSION:
        done = "created" if found == 0 else f"upgraded from version {found}"
        logger.info("event store %s: %s to version %d", location, done, SCHEMA_VERSION)
    return found
