"""The FastAPI app factory: `create_app(settings, model_store=None)`.

`uvicorn --factory serving.app:app_from_env` (what `patronage serve` runs) builds the app from
`PATRONAGE_*` variables in each worker process.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from features.event_store import open_event_store
from models.threads import one_thread
from serving.auth import KeyRing
from serving.config import Settings
from serving.crm.console import install_console
from serving.deps import Services
from serving.errors import error_response, install_error_handlers
from serving.limits import BodyLimitMiddleware, redact_access_log
from serving.metrics import MetricsMiddleware, ServingMetrics
from serving.model_store import ModelStore, RoleNotTrained
from serving.online_view import OnlineMetricsCollector, OnlineMetricsView
from serving.overlay import EventOverlay
from serving.routes import customers, events, health, models, recommendations

logger = logging.getLogger("patronage.serving")

DESCRIPTION = """
Recommendations and CRM scores from the champion models, answered from memory.

Send an API key in `X-API-Key`: scope `storefront` for recommendation routes, `crm` for
customer scores, segments and events, `admin` for models and reload. `/health/*` and
`/metrics` are open. Errors are `{"error": code, "detail": what to fix}`.
"""


def create_app(
    settings: Settings | None = None,
    model_store: ModelStore | None = None,
    challenger_store: ModelStore | None = None,
) -> FastAPI:
    """Build the app. Raises `SettingsError` when no API key is configured and not dev mode.

    Models load in a background thread when the app starts (lifespan), so `/health/live`
    answers at once and `/health/ready` turns 200 when the champions are in memory. Pass
    `model_store` (and `challenger_store`) to serve from another source (tests). With
    `challenger_share` > 0 the `@challenger` recommender loads beside the champion."""
    settings = settings or Settings.from_env()
    settings.check_can_start()
    overlay = EventOverlay()
    if model_store is None:
        from serving.mlflow_source import MlflowModelSource

        source = MlflowModelSource(
            settings, hidden_items=overlay.hidden_items, shown_items=overlay.shown_items
        )
        model_store = ModelStore(source, settings.poll_seconds)
        if settings.challenger_share > 0:
            from serving.challenger import ChallengerSource

            second = MlflowModelSource(
                settings, hidden_items=overlay.hidden_items, shown_items=overlay.shown_items
            )
            challenger_store = ModelStore(ChallengerSource(second), settings.poll_seconds)
    store = model_store
    metrics = ServingMetrics(store)
    event_store = open_event_store(settings.events_url or settings.events_dir)
    online = OnlineMetricsView(event_store)
    metrics.registry.register(OnlineMetricsCollector(online))
    services = Services(
        settings=settings,
        keys=KeyRing.from_pairs(settings.keys_by_scope(), settings.insecure_dev),
        store=store,
        overlay=overlay,
        event_store=event_store,
        metrics=metrics,
        challenger=challenger_store,
        online=online,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # numpy top-k on the request path must not spawn BLAS threads that fight the event loop
        # and the other worker processes for the cores.
        limits = one_thread()
        if settings.insecure_dev and not services.keys.entries:
            logger.warning("serving WITHOUT API keys (--insecure-dev): every route is open")
        stop_following = threading.Event()
        threading.Thread(
            target=_follow_events,
            args=(services, stop_following),
            name="patronage-event-follow",
            daemon=True,
        ).start()
        if settings.load_on_start:
            store.start()
            if challenger_store is not None:
                challenger_store.start()
        try:
            yield
        finally:
            stop_following.set()
            store.stop()
            if challenger_store is not None:
                challenger_store.stop()
            services.event_store.close()
            limits.restore_original_limits()

    app = FastAPI(
        title="Patronage scoring service",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
        # A trailing slash answers 404, never a 307 whose Location is built from the request's
        # Host header (an open redirect).
        redirect_slashes=False,
        **_telemetry(settings),
    )
    redact_access_log()
    app.state.services = services
    install_error_handlers(app)
    app.add_exception_handler(RoleNotTrained, _role_not_trained)
    for module in (recommendations, customers, events, models, health):
        app.include_router(module.router)
    install_console(app, services)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _role_not_trained(request: Request, exc: Exception) -> Response:
    """503 `role_not_trained`: the served shop has no model for this route's role, and why
    (e.g. a one-product shop has no recommender; training said so and recorded it)."""
    assert isinstance(exc, RoleNotTrained)
    return error_response(503, "role_not_trained", str(exc))


TELEMETRY_OFF: dict[str, Any] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def _telemetry(settings: Settings) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry, off unless `settings.opentelemetry`: on, it checks on
    every request whether a provider is configured (about 10 us of a 120 us no-op request,
    measured in-process); the service's own metrics are Prometheus, at /metrics. FastAPI
    versions without native telemetry take no argument."""
    if settings.opentelemetry or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": TELEMETRY_OFF}


def _follow_events(services: Services, stop: threading.Event) -> None:
    """Reflect the events already stored (e.g. after a restart) in the in-memory overlay, then
    what other worker processes (or, with PostgreSQL, other replicas) append: at the latest
    every `events_follow_seconds`, at once when the store signals an append."""
    events, every = services.event_store, services.settings.events_follow_seconds
    # Listen first (a zero wait): an append between the replay and the first wait must still
    # wake the loop at once, not a poll later.
    events.wait_for_news(0, stop)
    try:
        count = services.overlay.replay(events)
        if count:
            logger.info("replayed %d event records from %s", count, events.location)
    except OSError as error:
        logger.error("could not replay the event log: %s", error)
    while every > 0 and not stop.is_set():
        events.wait_for_news(every, stop)
        if stop.is_set():
            return
        try:
            services.overlay.follow(events)
        except OSError as error:
            logger.error("could not read the event log: %s", error)


def app_from_env() -> FastAPI:
    """The app configured from `PATRONAGE_*` variables (uvicorn factory)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(Settings.from_env())
