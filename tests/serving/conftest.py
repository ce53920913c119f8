"""Fixtures of the serving tests: keys, settings with a temp event log, apps on test doubles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore
from tests.serving.doubles import TinySource

KEYS = {"storefront": "sf-key-1", "crm": "crm-key-1", "admin": "admin-key-1"}
API_KEYS = "storefront=sf-key-1,crm=crm-key-1,admin=admin-key-1,storefront=sf-key-2"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Keys for every scope, events under tmp_path, no polling, no load at start."""
    return Settings(
        api_keys=API_KEYS,
        events_dir=tmp_path / "events",
        poll_seconds=0,
        load_on_start=False,
        tracking_uri="sqlite:///unused.db",
    )


@pytest.fixture
def tiny_source() -> TinySource:
    """The registry stand-in."""
    return TinySource()


@pytest.fixture
def tiny_store(tiny_source: TinySource) -> ModelStore:
    """A store already loaded from the stand-in."""
    store = ModelStore(tiny_source, poll_seconds=0)
    assert store.reload().outcome == "loaded"
    return store


@pytest.fixture
def tiny_app(settings: Settings, tiny_store: ModelStore) -> FastAPI:
    """The real app on the test-double models."""
    return create_app(settings, model_store=tiny_store)


@pytest.fixture
def client(tiny_app: FastAPI) -> Iterator[TestClient]:
    """A TestClient with the lifespan running."""
    with TestClient(tiny_app) as test_client:
        yield test_client


def key(scope: str) -> dict[str, str]:
    """Headers carrying the key of one scope."""
    return {"X-API-Key": KEYS[scope]}
