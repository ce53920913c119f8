"""The server's view of the online metrics: the event log followed incrementally, the report
(`features.online_metrics`) recomputed only when the log grew, and Prometheus counters from it.

Every worker process follows the same log, so every worker reports the same totals, whichever
one `/v1/models` or a scrape of `/metrics` reaches, and a retried post counts once. Nothing here
runs on the recommendation path: the report is built when `/v1/models` or `/metrics` asks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from features.event_log import EVENT_FILE_GLOB, read_new_records
from features.online_metrics import OnlineEvents, OnlineReport, online_report

LABELS = ["model_version", "route", "strategy", "variant"]


class OnlineMetricsView:
    """The online events of one event-log directory, read as they are appended."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.events = OnlineEvents()
        self._offsets: dict[str, int] = {}
        self._report: OnlineReport | None = None
        self._lock = threading.Lock()

    def _read_new(self) -> int:
        """Take the records appended since the last read; returns how many."""
        if not self.directory.is_dir():
            return 0
        count = 0
        for path in sorted(self.directory.glob(EVENT_FILE_GLOB)):
            offset = self._offsets.get(path.name, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
                records, self._offsets[path.name] = read_new_records(path, offset)
            except FileNotFoundError:  # archived by the operator in between
                continue
            self.events.add(records)
            count += len(records)
        return count

    def report(self) -> OnlineReport:
        """The report over the whole log, rebuilt only when records were appended."""
        with self._lock:
            if self._read_new() or self._report is None:
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
