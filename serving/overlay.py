"""Events posted since the model's data, in memory: what the answers reflect at once.

The in-memory `EventOverlay` reflects events where that is cheap and honest: items just bought
(and items just viewed or carted) join that customer's history for scoring, bought items leave
that customer's recommendations, the last order date moves, and an item posted with
`available: false` leaves every recommendation answer. It learns them from this process's own
posts at once and from the event log (`features.event_log`, which other worker processes append
to as well).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import INTERACTION_KINDS
from features.event_store import EventStore, FileEventStore


def _utc(when: datetime | str) -> pd.Timestamp:
    """A time as a UTC Timestamp: a validated row's own, or the log's ISO 8601 text (no zone
    means UTC)."""
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class EventOverlay:
    """Purchases, views, carts and item availability posted since the model's data, in memory:
    from this process's own posts at once, and from the log (`follow`: at start-up, then what
    other worker processes appended).

    Reads are plain dict/list lookups (safe under the GIL while a writer appends)."""

    def __init__(self) -> None:
        # customer -> (ordered_at epoch seconds, item_id, order_id) per posted purchase line
        self._purchases: dict[str, list[tuple[float, str, str | None]]] = {}
        self._purchase_keys: set[tuple[str, str]] = set()  # (order_id, item_id) seen
        # customer -> (occurred_at epoch seconds, item_id, kind) per posted view or cart
        self._interactions: dict[str, list[tuple[float, str, str]]] = {}
        self._interaction_keys: set[tuple[str, str, str, float]] = set()
        self._available: dict[str, tuple[float, bool]] = {}  # item -> (received_at, available)
        self._hidden: frozenset[str] = frozenset()
        self._shown: frozenset[str] = frozenset()
        self._cursor: Any = None  # how far the event store has been read
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
                stamp = _utc(when).timestamp()
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
                ordered_at = _utc(row["ordered_at"])
                entries = self._purchases.setdefault(str(row["customer_id"]), [])
                entries.append((ordered_at.timestamp(), str(row["item_id"]), order_id))

    def add_interactions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Remember `(occurred_at, item_id, kind)` per customer for each posted view or cart;
        `occurred_at` a UTC Timestamp or ISO. The same row seen again (this process's own post
        read back from the log) counts once."""
        with self._lock:
            for row in rows:
                at = _utc(row["occurred_at"]).timestamp()
                customer, item = str(row["customer_id"]), str(row["item_id"])
                kind = str(row["kind"])
                key = (customer, item, kind, at)
                if key in self._interaction_keys:
                    continue
                self._interaction_keys.add(key)
                self._interactions.setdefault(customer, []).append((at, item, kind))

    def interactions_since(self, customer_id: str, since: pd.Timestamp) -> list[tuple[str, str]]:
        """`(item_id, kind)` of the views and carts this customer posted at or after `since`,
        oldest first as posted."""
        entries = self._interactions.get(customer_id)
        if not entries:
            return []
        cutoff = since.timestamp()
        return [(item, kind) for at, item, kind in list(entries) if at >= cutoff]

    def follow(self, events: EventStore | Path | str) -> int:
        """Read what the event store (or a log directory) gained since the last call (the first
        call reads it all) and reflect its purchases and item updates; returns how many
        records were new.

        Every worker process (and every replica sharing a PostgreSQL store) calls this now and
        then, so a post to one reaches the others; records this process posted itself change
        nothing the second time. Raises OSError when the store cannot be read."""
        store = FileEventStore(Path(events)) if isinstance(events, str | Path) else events
        records, self._cursor = store.records_after(self._cursor)
        self.add_purchases(r for r in records if r["event"] == "purchase")
        self.add_items(r for r in records if r["event"] == "item")
        self.add_interactions(r for r in records if r["event"] in INTERACTION_KINDS)
        return len(records)

    def replay(self, events: EventStore | Path | str) -> int:
        """Load the purchases and item updates already stored; returns how many."""
        return self.follow(events)

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
