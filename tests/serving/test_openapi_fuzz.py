"""Schemathesis over the OpenAPI document: generated requests (valid and invalid) never get a
500, and every answer matches its documented status, content type and schema."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore
from tests.serving.doubles import TinySource

ALL_SCOPES_KEY = "fuzz-all-scopes"


def _app_schema() -> Any:
    """The schema of an app on the test doubles, with one key holding every scope.

    Built at import: `@schema.parametrize()` needs the schema when tests are collected
    (`schemathesis.pytest.from_fixture` does not work with this pytest version)."""
    store = ModelStore(TinySource(), poll_seconds=0)
    store.reload()
    app = create_app(
        Settings(
            api_keys=",".join(f"{s}={ALL_SCOPES_KEY}" for s in ("storefront", "crm", "admin")),
            events_dir=Path(EVENTS_DIR.name),
            poll_seconds=0,
            load_on_start=False,
        ),
        model_store=store,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


EVENTS_DIR = tempfile.TemporaryDirectory(prefix="patronage-fuzz-events-")
schema = _app_schema()


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_answers_match_the_schema(case: Any) -> None:
    # The data contract has rules a JSON schema cannot state (timestamps not in the future, a
    # rating for kind=rating, no duplicate lines), so a schema-valid event may be rejected.
    excluded = [positive_data_acceptance] if case.path == "/v1/events" else []
    case.call_and_validate(headers={"X-API-Key": ALL_SCOPES_KEY}, excluded_checks=excluded)
