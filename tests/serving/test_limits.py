"""What a client sends cannot exhaust the server or give a 500 (issue 22's probe, each case a
test that failed on main before 2026-12-07): body size, bad text, over-long ids, loose types,
health checks, redirects and keys in logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import Settings
from serving.limits import redact_access_log
from serving.model_store import ModelStore
from tests.serving.conftest import key

CRM = key("crm")
STOREFRONT = key("storefront")
LONE = "\\ud800"  # a lone UTF-16 surrogate: valid JSON, not valid text


def _purchase(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "order_id": "o-1",
        "customer_id": "c2",
        "item_id": "i0",
        "quantity": 1,
        "ordered_at": "2026-01-05T08:30:00Z",
    }
    row.update(changes)
    return row


@pytest.fixture
def small_limit_client(settings: Settings, tiny_store: ModelStore) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": 2048})
    with TestClient(create_app(limited, model_store=tiny_store)) as client:
        yield client


def test_a_body_over_the_limit_is_refused_before_the_key_check(
    small_limit_client: TestClient,
) -> None:
    body = b'{"purchases": [' + b" " * 4096 + b"]}"
    # No key at all: the size is refused first, nothing read (Content-Length says it all).
    answer = small_limit_client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "body_too_large"
    assert "PATRONAGE_MAX_BODY_BYTES" in answer.json()["detail"]


def test_a_chunked_body_over_the_limit_is_refused_while_read(
    small_limit_client: TestClient,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"purchases": ['
        for _ in range(10):
            yield b" " * 1000
        yield b"]}"

    answer = small_limit_client.post(
        "/v1/events", content=chunks(), headers={**CRM, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"


def test_a_body_within_the_limit_passes(small_limit_client: TestClient) -> None:
    answer = small_limit_client.post("/v1/events", json={"purchases": [_purchase()]}, headers=CRM)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("path", "headers", "body", "field"),
    [
        ("/v1/recommendations/cross-sell", STOREFRONT,
         '{"items": ["LONE"]}'.replace("LONE", LONE), "body.items.0"),
        ("/v1/recommendations/cross-sell", STOREFRONT,
         '{"items": ["i0"], "customer_id": "LONE"}'.replace("LONE", LONE), "body.customer_id"),
        ("/v1/customers/scores:batch", CRM,
         '{"customer_ids": ["LONE"]}'.replace("LONE", LONE), "body.customer_ids.0"),
        ("/v1/events", CRM,
         '{"feedback": [{"customer_id": "c1", "created_at": "2026-01-05T08:30:00Z", '
         '"kind": "review", "text": "LONE"}]}'.replace("LONE", LONE), "text"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: TestClient, path: str, headers: dict[str, str], body: str, field: str
) -> None:
    answer = client.post(
        path, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert f"{field}: Input should be a valid string, unable to parse raw data" in answer.text


def test_ids_in_bodies_are_capped_like_path_ids(client: TestClient) -> None:
    long_id = "x" * 257
    cross_sell = client.post(
        "/v1/recommendations/cross-sell", json={"items": [long_id]}, headers=STOREFRONT
    )
    assert cross_sell.status_code == 422 and long_id not in cross_sell.text
    batch = client.post("/v1/customers/scores:batch", json={"customer_ids": [long_id]}, headers=CRM)
    assert batch.status_code == 422
    events = client.post(
        "/v1/events", json={"purchases": [_purchase(customer_id=long_id)]}, headers=CRM
    )
    assert events.status_code == 422
    assert [r["row"] for r in events.json()["rejected"]] == [0]


@pytest.mark.parametrize(
    "changes",
    [
        {"ordered_at": "now"},
        {"ordered_at": "today"},
        {"quantity": True},
        {"quantity": "2"},
    ],
)
def test_event_values_have_strict_types(client: TestClient, changes: dict[str, object]) -> None:
    answer = client.post("/v1/events", json={"purchases": [_purchase(**changes)]}, headers=CRM)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "events_rejected"


def test_health_answers_head_and_ready_keeps_details_private(
    settings: Settings, tiny_store: ModelStore
) -> None:
    class Broken:
        def champion_versions(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("sqlite:////secret/path/mlflow.db: SELECT * FROM registered_models")

    broken = ModelStore(Broken(), poll_seconds=0)  # type: ignore[arg-type]
    broken.reload()
    with TestClient(create_app(settings, model_store=broken)) as client:
        assert client.head("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "RuntimeError" in ready.json()["detail"]
        assert "secret" not in ready.text and "SELECT" not in ready.text
        assert client.head("/health/ready").status_code == 503
        models = client.get("/v1/models", headers=key("admin")).json()
        assert "SELECT" in models["last_reload"]["detail"]  # the admin sees the cause


def test_a_trailing_slash_is_not_redirected(client: TestClient) -> None:
    answer = client.get(
        "/v1/models/", headers={**key("admin"), "Host": "evil.example"}, follow_redirects=False
    )
    assert answer.status_code == 404
    assert "location" not in answer.headers


def test_keys_in_a_query_string_never_reach_the_access_log() -> None:
    redact_access_log()
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/models?api_key=sk-secret&k=5", "1.1", 401), None,
    )  # fmt: skip
    for log_filter in logging.getLogger("uvicorn.access").filters:
        log_filter.filter(record)
    message = record.getMessage()
    assert "sk-secret" not in message and "api_key=***" in message and "k=5" in message


def test_settings_read_the_body_limit_from_the_environment() -> None:
    settings = Settings.from_env(
        {"PATRONAGE_MAX_BODY_BYTES": "4096", "PATRONAGE_INSECURE_DEV": "1"}
    )
    assert settings.max_body_bytes == 4096
