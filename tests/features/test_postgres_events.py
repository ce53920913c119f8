"""The PostgreSQL event store (issue 25, build 2) against the file log, on a real server: every
posted kind (purchases, feedback, item updates, views and carts, impressions, clicks) read back
as the file log gives it, a retry stored once, followers see appends in id order, the online
report equal to the file log's on the same events, the schema created at first use, versioned,
and a store made by version 1 upgraded in place."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from features.event_log import EventBatch, interactions_from_records
from features.event_store import FileEventStore, open_event_store
from features.online_metrics import online_report, read_online_events
from features.posted_rows import check_posted_rows
from features.postgres_events import SCHEMA_VERSION, PostgresEventStore
from patronage.cli import main

RID = "a" * 32 + "~champion~personal~patronage.shop.recommender/1~discovery"
PURCHASES = [
    {"order_id": "O1", "customer_id": "C1", "item_id": "I1", "quantity": 2, "unit_price": 9.5,
     "ordered_at": pd.Timestamp("2026-01-05T08:30:00Z"), "channel": "web",
     "recommendation_id": RID},
    {"order_id": "O1", "customer_id": "C1", "item_id": "I2", "quantity": 1, "unit_price": None,
     "ordered_at": pd.Timestamp("2026-01-05T08:30:00Z"), "channel": None,
     "recommendation_id": None},
]  # fmt: skip
FEEDBACK = [
    {"customer_id": "C1", "created_at": pd.Timestamp("2026-01-06T10:00:00Z"), "kind": "rating",
     "item_id": "I1", "order_id": "O1", "rating": 4, "text": None},
]  # fmt: skip
ITEMS = [
    {"item_id": "I1", "name": None, "category": None, "price": 10.0, "available": None},
    {"item_id": "I1", "name": None, "category": None, "price": None, "available": False},
]
INTERACTIONS = [
    {"customer_id": "C1", "item_id": "I3", "kind": "view",
     "occurred_at": pd.Timestamp("2026-01-05T08:00:00Z")},
    {"customer_id": "C1", "item_id": "I3", "kind": "cart",
     "occurred_at": pd.Timestamp("2026-01-05T08:01:00Z")},
]  # fmt: skip
IMPRESSIONS = [
    {"recommendation_id": RID, "customer_id": "C1", "session_id": None,
     "items": ("I1", "I3", "I4"), "shown_at": pd.Timestamp("2026-01-05T07:59:00Z")},
]  # fmt: skip
CLICKS = [
    {"recommendation_id": RID, "item_id": "I1", "clicked_at": pd.Timestamp("2026-01-05T08:02Z")},
]
BATCH = EventBatch(PURCHASES, FEEDBACK, ITEMS, INTERACTIONS, IMPRESSIONS, CLICKS)
ONLINE_EVENTS = Path(__file__).parent / "fixtures" / "online_events"
TABLE_OF_EVENT = {"purchase": "purchases", "impression": "impressions", "click": "clicks"}


def _by_event(records: list[dict]) -> dict[str, list[dict]]:
    events = ("purchase", "feedback", "item", "view", "cart", "impression", "click")
    return {event: [r for r in records if r["event"] == event] for event in events}


def _counts(url: str, schema: str) -> dict[str, int]:
    tables = ("purchases", "feedback", "item_updates", "interactions", "impressions", "clicks")
    with psycopg.connect(url) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
            for table in tables
        }


def test_every_kind_comes_back_as_the_file_log_gives_it_and_a_retry_once(
    postgres_database: str, tmp_path: Path
) -> None:
    when = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
    database = open_event_store(f"{postgres_database}?schema=shop_events")
    files = open_event_store(tmp_path / "events")
    assert isinstance(database, PostgresEventStore) and isinstance(files, FileEventStore)
    try:
        for store in (database, files):
            store.append(BATCH, when)
            store.append(BATCH, when)  # a client's retry
        (purchases, feedback, items), from_files = database.read_events(), files.read_events()
        pd.testing.assert_frame_equal(purchases, from_files[0])
        pd.testing.assert_frame_equal(items, from_files[2])
        # The file log keeps a retried row twice (its readers count it once); the database once.
        pd.testing.assert_frame_equal(feedback, from_files[1].drop_duplicates())
        stored, logged = database.read_records(), files.read_records()
        pd.testing.assert_frame_equal(
            interactions_from_records(stored),
            interactions_from_records(logged).drop_duplicates().reset_index(drop=True),
        )
        # The database holds the first post's records as the file log wrote them, and the
        # retried item updates again (a history).
        expected = _by_event(logged[: len(logged) // 2])
        expected["item"] = _by_event(logged)["item"]
        assert _by_event(stored) == expected
        impression = next(r for r in stored if r["event"] == "impression")
        assert impression["items"] == ["I1", "I3", "I4"]
        assert impression["shown_at"] == "2026-01-05T07:59:00+00:00"
        on_files, on_database = (
            read_online_events(tmp_path / "events"),
            read_online_events(f"{postgres_database}?schema=shop_events"),
        )
        assert on_database == on_files and len(on_database.impressions) == 1
        assert on_database.purchases[("O1", "I1")].recommendation_id == RID
        assert _counts(postgres_database, "shop_events") == {
            "purchases": 2, "feedback": 1, "item_updates": 4, "interactions": 2,
            "impressions": 1, "clicks": 1,
        }, "a retry was stored again"  # fmt: skip
    finally:
        database.close()


def test_a_follower_reads_each_append_once_and_wakes_on_notify(postgres_database: str) -> None:
    url = f"{postgres_database}?schema=follow"
    writer, follower = PostgresEventStore(url), PostgresEventStore(url)
    try:
        records, cursor = follower.records_after(None)
        assert records == []
        follower.wait_for_news(0.01, threading.Event())  # LISTEN from now on
        writer.append(BATCH, datetime.now(UTC))
        started = datetime.now(UTC)
        follower.wait_for_news(5.0, threading.Event())
        assert (datetime.now(UTC) - started).total_seconds() < 2.0, "no NOTIFY woke the follower"
        records, cursor = follower.records_after(cursor)
        assert [r["event"] for r in records] == [
            "purchase", "purchase", "feedback", "item", "item", "view", "cart", "impression",
            "click",
        ]  # fmt: skip
        assert follower.records_after(cursor)[0] == []
        writer.append(EventBatch(clicks=[{**CLICKS[0], "item_id": "I3"}]), datetime.now(UTC))
        assert [r["item_id"] for r in follower.records_after(cursor)[0]] == ["I3"]
    finally:
        writer.close()
        follower.close()


def test_the_online_report_from_the_database_equals_the_file_logs(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hand-counted event file of tests/features/test_online_metrics.py, posted record by
    record through the one validator into the database (retries and all)."""
    url = f"{postgres_database}?schema=online"
    store = PostgresEventStore(url)
    received = datetime(2026, 1, 11, tzinfo=UTC)
    try:
        logged, _ = FileEventStore(ONLINE_EVENTS).records_after(None)  # the torn line left out
        for record in logged:
            table = TABLE_OF_EVENT[record.pop("event")]
            del record["received_at"]
            accepted, rejected = check_posted_rows({table: [record]}, received)
            assert rejected == [], rejected
            store.append(EventBatch.from_tables(accepted), received)
    finally:
        store.close()
    from_files = online_report(read_online_events(ONLINE_EVENTS)).to_json()
    from_database = online_report(read_online_events(url)).to_json()
    assert from_database == from_files
    assert len(from_database["groups"]) == 5 and from_database["unmatched_clicks"] == 2
    printed = []
    for events in (str(ONLINE_EVENTS), url):  # `patronage online-report --events DIR|URL`
        assert main(["online-report", "--events", events, "--json"]) == 0
        printed.append(json.loads(capsys.readouterr().out))
    assert printed[1] == printed[0] == from_files


def test_a_store_of_a_newer_schema_version_is_refused(postgres_database: str) -> None:
    url = f"{postgres_database}?schema=newer"
    store = PostgresEventStore(url)
    store.records_after(None)
    store.close()
    with psycopg.connect(postgres_database) as connection:
        connection.execute("INSERT INTO newer.schema_version (version) VALUES (%s)", [99])
    with pytest.raises(OSError, match="schema version 99.*upgrade Patronage"):
        PostgresEventStore(url).records_after(None)


VERSION_1 = """
CREATE SCHEMA old_events;
CREATE TABLE old_events.schema_version (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE old_events.purchases (
    id bigserial PRIMARY KEY, order_id text NOT NULL, customer_id text NOT NULL,
    item_id text NOT NULL, quantity bigint NOT NULL, unit_price double precision,
    ordered_at timestamptz NOT NULL, channel text, received_at timestamptz NOT NULL,
    UNIQUE (order_id, item_id));
CREATE TABLE old_events.feedback (
    id bigserial PRIMARY KEY, customer_id text NOT NULL, created_at timestamptz NOT NULL,
    kind text NOT NULL, item_id text, order_id text, rating bigint, text text,
    received_at timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (customer_id, created_at, kind, item_id, order_id));
CREATE TABLE old_events.item_updates (
    id bigserial PRIMARY KEY, item_id text NOT NULL, name text, category text,
    price double precision, available boolean, received_at timestamptz NOT NULL);
INSERT INTO old_events.schema_version (version) VALUES (1);
INSERT INTO old_events.purchases
    (order_id, customer_id, item_id, quantity, unit_price, ordered_at, channel, received_at)
    VALUES ('O0', 'C0', 'I0', 1, 3.0, '2026-01-01T10:00Z', NULL, '2026-01-01T10:00:01Z');
INSERT INTO old_events.item_updates (item_id, available, received_at)
    VALUES ('I0', false, '2026-01-01T10:00:02Z');
"""
"""A store as Patronage's schema version 1 made it (pg_dump of one, 2026-12-07), with rows."""


def test_a_store_made_by_version_1_is_upgraded_in_place_and_keeps_its_rows(
    postgres_database: str,
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute(VERSION_1)
    url = f"{postgres_database}?schema=old_events"
    first, second = PostgresEventStore(url), PostgresEventStore(url)
    try:
        (old_purchase, old_item), _ = first.records_after(None)
        assert (old_purchase["order_id"], old_purchase["recommendation_id"]) == ("O0", None)
        assert old_item["available"] is False
        first.append(BATCH, datetime(2026, 1, 7, 12, tzinfo=UTC))
        second.append(BATCH, datetime(2026, 1, 7, 12, tzinfo=UTC))  # another replica's retry
        purchases, _, items = second.read_events()
        assert purchases["order_id"].tolist() == ["O0", "O1", "O1"]
        assert items.set_index("item_id")["available"].to_dict() == {"I0": False, "I1": False}
        assert len(read_online_events(url).impressions) == 1
    finally:
        first.close()
        second.close()
    with psycopg.connect(postgres_database) as connection:
        versions = connection.execute(
            "SELECT version FROM old_events.schema_version ORDER BY version"
        ).fetchall()
    assert [v for (v,) in versions] == [1, SCHEMA_VERSION] == [1, 2]
    assert _counts(postgres_database, "old_events")["impressions"] == 1
