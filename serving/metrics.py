"""Prometheus metrics: requests and latency by route, loaded model versions, reload outcomes.

Each app has its own `CollectorRegistry` (several apps in one test process do not collide). The
request metrics come from a plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware);
the route label is the route's path template (`/v1/customers/{customer_id}/churn`), never the raw
path, so customer ids do not explode the label set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.model_store import ModelStore

# `*_created` series double the exposition size and no dashboard here reads them.
disable_created_metrics()

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ModelStoreCollector(Collector):
    """Reads the store at scrape time: which versions serve, reload counts."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Yield the model gauges and reload counters."""
        info = GaugeMetricFamily(
            "patronage_model_info",
            "Loaded model version per role (value 1; labels carry the version)",
            labels=["role", "name", "version"],
        )
        models = self.store.current
        if models is not None:
            for role, model in models.versions.items():
                info.add_metric([role, model.name, model.version], 1.0)
        yield info
        ready = GaugeMetricFamily("patronage_models_ready", "1 once models are loaded, else 0")
        ready.add_metric([], 0.0 if models is None else 1.0)
        yield ready
        failures = CounterMetricFamily(
            "patronage_model_reload_failures", "Model loads that failed (old models kept serving)"
        )
        failures.add_metric([], float(self.store.reload_failures))
        yield failures
        loaded = CounterMetricFamily("patronage_model_reloads", "Model snapshots swapped in")
        loaded.add_metric([], float(self.store.reloads_loaded))
        yield loaded


class ServingMetrics:
    """The app's metric objects."""

    def __init__(self, store: ModelStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "patronage_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "patronage_http_request_duration_seconds",
            "Time from request to last response byte, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "patronage_events_appended",
            "Events appended to the event log",
            ["event"],
            registry=self.registry,
        )
        self.registry.register(ModelStoreCollector(store))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its latency (children cached: `.labels()` is not free)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times every HTTP request and labels it with its matched route template."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                template, scope.get("method", ""), status, time.perf_counter() - started
            )
