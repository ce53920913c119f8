"""The server's view of the online metrics: the event store (the file log or PostgreSQL)
followed incrementally, the report (`features.online_metrics`) recomputed only when the store
grew, and Prometheus counters from it.

Every worker process (and every replica sharing a PostgreSQL store) follows the same store, so
every one reports the same totals, whichever one `/v1/models` or a scrape of `/metrics`
reaches, and a retried post counts once. Nothing here runs on the recommendation path: the
report is built when `/v1/models` or `/metrics` asks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from features.event_store import EventStore
from features.online_metrics import OnlineEvents, OnlineReport, online_report

logger = logging.getLogger("patronage.events")
LABELS = ["model_version", "route", "strategy", "variant"]


class OnlineMetricsView:
    """The online events of one event store, read as they are appended."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.events = OnlineEvents()
        self._cursor: Any = None
        self._report: OnlineReport | None = None
        self._lock = threading.Lock()

    def _read_new(self) -> int:
        """Take the records appended since the last read; returns how many. Raises OSError
        when the store cannot be read."""
        records, self._cursor = self.store.records_after(self._cursor)
        self.events.add(records)
        return len(records)

    def report(self) -> OnlineReport:
        """The report over the whole store, rebuilt only when records were appended; while the
        store cannot be read (a database away), the last report (logged)."""
        with self._lock:
            try:
                fresh = self._read_new()
            except OSError as error:
                logger.error("online metrics: could not read %s: %s", self.store.location, error)
                fresh = 0
            if fresh or self._report is None:
                self._report = online_report(self.events)
            return self._report


class OnlineMetricsCollector(Collector):
    """Prometheus counters of the online metrics, from the log at scrape time."""

    def __init__(self, view: OnlineMetricsView) -> None:
        self.view = view

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registering the collector reads no log."""
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        """Impressions, clicked and bought-through impressions and revenue, per model version,
        route, strategy and variant."""
        families = _families()
        for key, tally in self.view.report().groups.items():
            labels = list(key)
            families["impressions"].add_metric(labels, float(tally.impressions))
            families["clicked"].add_metric(labels, float(tally.clicked))
            families["bought"].add_metric(labels, float(tally.bought))
            families["revenue"].add_metric(labels, tally.revenue)
        yield from families.values()


def _families() -> dict[str, CounterMetricFamily]:
    """The four online counter families, empty."""
    return {
        "impressions": CounterMetricFamily(
            "patronage_online_impressions", "Recommendation answers shown", labels=LABELS
        ),
        "clicked": CounterMetricFamily(
            "patronage_online_clicked_impressions",
            "Shown answers with at least one click on a shown item",
            labels=LABELS,
        ),
        "bought": CounterMetricFamily(
            "patronage_online_bought_impressions",
            "Shown answers with at least one attributed purchase (7 days, last impression)",
            labels=LABELS,
        ),
        "revenue": CounterMetricFamily(
            "patronage_online_revenue",
            "Quantity x unit price of purchases attributed to recommendations",
            labels=LABELS,
        ),
    }
