"""The console before the first model load: every page that shows the served models answers
the 503 "loading" page to a signed-in marketer, and still sends a visitor without a session to
sign in first (in-process app on the test doubles' store, not yet loaded)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore
from tests.serving.conftest import KEYS
from tests.serving.doubles import TinySource

MODEL_PAGES = ("/crm/", "/crm/customers", "/crm/customers.csv", "/crm/customers/C1")


@pytest.fixture
def not_loaded(tmp_path: Path) -> Iterator[TestClient]:
    """A client of an app whose store has never loaded (no load at start, no polling)."""
    settings = Settings(
        api_keys=f"crm={KEYS['crm']}",
        events_dir=tmp_path / "events",
        poll_seconds=0,
        load_on_start=False,
        tracking_uri=f"sqlite:///{tmp_path / 'unused.db'}",
    )
    app = create_app(settings, model_store=ModelStore(TinySource(), poll_seconds=0))
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.mark.parametrize("path", MODEL_PAGES)
def test_without_a_session_the_browser_is_sent_to_sign_in(
    not_loaded: TestClient, path: str
) -> None:
    answer = not_loaded.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/crm/login")


def test_signed_in_pages_say_the_models_are_loading(not_loaded: TestClient) -> None:
    form = not_loaded.get("/crm/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None, form
    signed = not_loaded.post(
        "/crm/login", data={"csrf_token": token.group(1), "api_key": KEYS["crm"], "next": "/crm/"}
    )
    assert signed.status_code == 303
    for path in MODEL_PAGES:
        answer = not_loaded.get(path)
        assert answer.status_code == 503, path
        assert "Models are loading" in answer.text, path
        assert "Sign out" in answer.text, path  # the page knows the session
        assert answer.headers["cache-control"] == "no-store", path
