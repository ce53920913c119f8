"""Schemathesis over the OpenAPI document, against the REAL models of the sample shop (trained
once per session by the training pipeline into a temp MLflow store): generated requests (valid
and invalid) never get a 500, and every answer matches its documented status, content type and
schema. Hand-written probes add the inputs that broke similar services before: a lone surrogate
in ids and text, "now" as a timestamp, `true` and "2" as a quantity, huge ids.

`FUZZ_EXAMPLES` (default 100) sets the examples per operation. Measured on the 2-core machine:
see the report of the quality change (about 1,100 requests in total)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore
from tests.conftest import TrainedSampleStore
from tests.serving.doubles import TinySource

ALL_SCOPES_KEY = "fuzz-all-scopes"
API_KEYS = ",".join(f"{s}={ALL_SCOPES_KEY}" for s in ("storefront", "crm", "admin"))
HEADERS = {"X-API-Key": ALL_SCOPES_KEY}


def _document_schema() -> Any:
    """The OpenAPI document, read from an app on the test doubles (the document does not depend
    on the models). Built at import: `@schema.parametrize()` needs it when tests are collected
    (`schemathesis.pytest.from_fixture` does not work with this pytest version); the requests
    go to the real app (`real_app`), passed to each call."""
    store = ModelStore(TinySource(), poll_seconds=0)
    app = create_app(
        Settings(
            api_keys=API_KEYS,
            events_dir=Path(DOCUMENT_EVENTS_DIR.name),
            poll_seconds=0,
            load_on_start=False,
        ),
        model_store=store,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


DOCUMENT_EVENTS_DIR = tempfile.TemporaryDirectory(prefix="patronage-fuzz-document-")
schema = _document_schema()


@pytest.fixture(scope="module")
def real_app(
    trained_sample_store: TrainedSampleStore, tmp_path_factory: pytest.TempPathFactory
) -> FastAPI:
    """The app as `patronage serve` builds it, on the trained store's champions (loaded here,
    before the first request, so no answer is a 503 for models still loading)."""
    app = create_app(
        Settings(
            api_keys=API_KEYS,
            events_dir=tmp_path_factory.mktemp("fuzz_events"),
            poll_seconds=0,
            load_on_start=False,
            tracking_uri=trained_sample_store.tracking_uri,
        )
    )
    outcome = app.state.services.store.reload()
    assert outcome.outcome == "loaded", outcome
    return app


@pytest.fixture(scope="module")
def client(real_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(real_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def known(trained_sample_store: TrainedSampleStore) -> dict[str, str]:
    """A customer and an item the models know."""
    import pandas as pd

    purchases = pd.read_csv(trained_sample_store.shop_dir / "purchases.csv", dtype=str, nrows=50)
    return {"customer": purchases["customer_id"].iloc[0], "item": purchases["item_id"].iloc[0]}


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # no .hypothesis/ examples database in the repository
)
def test_no_server_errors_and_answers_match_the_schema(case: Any, real_app: FastAPI) -> None:
    # The data contract has rules a JSON schema cannot state (timestamps not in the future, a
    # rating for kind=rating, no duplicate lines), so a schema-valid event may be rejected.
    excluded = [positive_data_acceptance] if case.path == "/v1/events" else []
    # The key replaces a generated one; a case generated without it (a negative case) goes
    # without, or adding it would turn the case valid and its acceptance into a "failure".
    headers = HEADERS if "X-API-Key" in (case.headers or {}) else {}
    case.call_and_validate(headers=headers, excluded_checks=excluded, app=real_app)


SURROGATE = "\ud800"
HUGE_ID = "9" * 5000


def _post_json(client: TestClient, path: str, body: Any) -> Any:
    # ensure_ascii: a lone surrogate travels as the JSON escape \ud800, as a client may send it.
    return client.post(
        path,
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={**HEADERS, "Content-Type": "application/json"},
    )


def _no_server_error(answer: Any) -> None:
    assert answer.status_code < 500 or answer.status_code == 503, (
        answer.status_code,
        answer.text[:300],
    )
    assert answer.status_code != 503 or answer.json()["error"] != "internal_error"


@pytest.mark.parametrize(
    "customer_id", ["%ED%A0%80", "%F0%9F%98%80", HUGE_ID, "-1", "0" * 300, "a%2Fb"]
)
def test_customer_routes_survive_odd_ids(
    client: TestClient, known: dict[str, str], customer_id: str
) -> None:
    for route in ("recommendations?k=5", "churn", "loyalty"):
        answer = client.get(f"/v1/customers/{customer_id}/{route}", headers=HEADERS)
        _no_server_error(answer)
    _no_server_error(client.get(f"/v1/items/{customer_id}/similar", headers=HEADERS))


@pytest.mark.parametrize(
    "odd",
    [SURROGATE, "x" + SURROGATE, HUGE_ID, "\x00", "now"],
    ids=["lone-surrogate", "surrogate-inside", "huge", "nul", "now"],
)
def test_json_routes_survive_odd_strings(
    client: TestClient, known: dict[str, str], odd: str
) -> None:
    _no_server_error(_post_json(client, "/v1/customers/scores:batch", {"customer_ids": [odd]}))
    basket = {"items": [odd, known["item"]], "customer_id": odd, "k": 3}
    _no_server_error(_post_json(client, "/v1/recommendations/cross-sell", basket))
    feedback = {"customer_id": odd, "created_at": "2025-06-01T00:00:00Z", "kind": "review",
                "text": odd}  # fmt: skip
    _no_server_error(_post_json(client, "/v1/events", {"feedback": [feedback]}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ordered_at", "now"),
        ("ordered_at", SURROGATE),
        ("quantity", True),
        ("quantity", "2"),
        ("quantity", 2**80),
        ("order_id", HUGE_ID),
        ("customer_id", SURROGATE),
    ],
)
def test_purchase_events_refuse_odd_values_with_a_4xx(
    client: TestClient, known: dict[str, str], field: str, value: Any
) -> None:
    row = {"order_id": "fuzz-1", "customer_id": known["customer"], "item_id": known["item"],
           "quantity": 1, "ordered_at": "2025-06-01T00:00:00Z", field: value}  # fmt: skip
    answer = _post_json(client, "/v1/events", {"purchases": [row]})
    _no_server_error(answer)
    if field in ("ordered_at", "quantity") or value == SURROGATE:
        assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
