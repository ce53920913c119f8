"""FastAPI's native OpenTelemetry is off unless PATRONAGE_OPENTELEMETRY asks for it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore


def _spans_of_one_request(
    settings: Settings, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> int:
    """Spans recorded for one `/health/live` with an OpenTelemetry SDK configured."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The process-wide provider can be set only once; this swaps it for this test alone.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    with TestClient(create_app(settings, model_store=store)) as client:
        assert client.get("/health/live").status_code == 200
    return len(exporter.get_finished_spans())


def test_off_by_default_even_with_a_configured_sdk(
    settings: Settings, tiny_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.opentelemetry is False
    assert _spans_of_one_request(settings, tiny_store, monkeypatch) == 0


def test_on_when_asked_for(
    settings: Settings, tiny_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = Settings.from_env(
        {"PATRONAGE_OPENTELEMETRY": "true"}, **settings.model_dump(exclude={"opentelemetry"})
    )
    assert asked.opentelemetry is True
    assert _spans_of_one_request(asked, tiny_store, monkeypatch) > 0
