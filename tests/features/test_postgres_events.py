"""The PostgreSQL event store (issue 25, build 2) against the file log, on a real server: the
same rows read back as the same frames, a retry stored once, followers see appends in id order,
the schema created at first use and versioned."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from features.event_store import FileEventStore, open_event_store
from features.postgres_events import SCHEMA_VERSION, PostgresEventStore

PURCHASES = [
    {"order_id": "O1", "customer_id": "C1", "item_id": "I1", "quantity": 2, "unit_price": 9.5,
     "ordered_at": pd.Timestamp("2026-01-05T08:30:00Z"), "channel": "web"},
    {"order_id": "O1", "customer_id": "C1", "item_id": "I2", "quantity": 1, "unit_price": None,
     "ordered_at": pd.Timestamp("2026-01-05T08:30:00Z"), "channel": None},
]  # fmt: skip
FEEDBACK = [
    {"customer_id": "C1", "created_at": pd.Timestamp("2026-01-06T10:00:00Z"), "kind": "rating",
     "item_id": "I1", "order_id": "O1", "rating": 4, "text": None},
]  # fmt: skip
ITEMS = [
    {"item_id": "I1", "name": None, "category": None, "price": 10.0, "available": None},
    {"item_id": "I1", "name": None, "category": None, "price": None, "available": False},
]


def _store_all(store: object, when: datetime) -> None:
    store.append(PURCHASES, FEEDBACK, when, ITEMS)  # type: ignore[attr-defined]


def test_the_database_gives_back_what_the_file_log_gives_back_and_a_retry_once(
    postgres_database: str, tmp_path: Path
) -> None:
    when = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
    database = open_event_store(f"{postgres_database}?schema=shop_events")
    files = open_event_store(tmp_path / "events")
    assert isinstance(database, PostgresEventStore) and isinstance(files, FileEventStore)
    try:
        for store in (database, files):
            _store_all(store, when)
            _store_all(store, when)  # a client's retry
        (purchases, feedback, items), from_files = database.read_events(), files.read_events()
        pd.testing.assert_frame_equal(purchases, from_files[0])
        pd.testing.assert_frame_equal(items, from_files[2])
        # The file log keeps a retried feedback row twice; the database's unique key once.
        pd.testing.assert_frame_equal(feedback, from_files[1].drop_duplicates())
        assert len(purchases) == 2 and len(feedback) == 1
        assert items.loc[0, "price"] == 10.0 and not items.loc[0, "available"]
        with psycopg.connect(postgres_database) as connection:
            counts = connection.execute(
                "SELECT (SELECT count(*) FROM shop_events.purchases), "
                "(SELECT count(*) FROM shop_events.feedback), "
                "(SELECT max(version) FROM shop_events.schema_version)"
            ).fetchone()
        assert counts == (2, 1, SCHEMA_VERSION), "the retry was stored again"
    finally:
        database.close()


def test_a_follower_reads_each_append_once_and_wakes_on_notify(postgres_database: str) -> None:
    url = f"{postgres_database}?schema=follow"
    writer, follower = PostgresEventStore(url), PostgresEventStore(url)
    try:
        records, cursor = follower.records_after(None)
        assert records == []
        follower.wait_for_news(0.01, threading.Event())  # LISTEN from now on
        _store_all(writer, datetime.now(UTC))
        started = datetime.now(UTC)
        follower.wait_for_news(5.0, threading.Event())
        assert (datetime.now(UTC) - started).total_seconds() < 2.0, "no NOTIFY woke the follower"
        records, cursor = follower.records_after(cursor)
        assert [r["event"] for r in records] == ["purchase"] * 2 + ["feedback"] + ["item"] * 2
        assert follower.records_after(cursor)[0] == []
    finally:
        writer.close()
        follower.close()


def test_a_store_of_a_newer_schema_version_is_refused(postgres_database: str) -> None:
    url = f"{postgres_database}?schema=newer"
    store = PostgresEventStore(url)
    store.records_after(None)
    store.close()
    with psycopg.connect(postgres_database) as connection:
        connection.execute("INSERT INTO newer.schema_version (version) VALUES (%s)", [99])
    with pytest.raises(OSError, match="schema version 99.*upgrade Patronage"):
        PostgresEventStore(url).records_after(None)


def test_rows_the_database_store_does_not_keep_are_refused_and_nothing_is_stored(
    postgres_database: str,
) -> None:
    store = PostgresEventStore(f"{postgres_database}?schema=online")
    view = {"customer_id": "C1", "item_id": "I1", "kind": "view",
            "occurred_at": pd.Timestamp("2026-01-06T09:00:00Z")}  # fmt: skip
    try:
        assert "impressions" not in store.tables and "purchases" in store.tables
        with pytest.raises(ValueError, match="need the file event log"):
            store.append(PURCHASES, [], datetime.now(UTC), interactions=[view])
        assert store.records_after(None)[0] == []
    finally:
        store.close()
