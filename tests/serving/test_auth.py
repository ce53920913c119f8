"""Auth on every route: 401 without or with an unknown key, 403 with the wrong scope, 2xx with
the right one; open routes stay open; keys never appear in logs or errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.auth import KeyRing
from serving.config import Settings, SettingsError, parse_api_keys
from tests.serving.conftest import KEYS

EVENT = {
    "purchases": [
        {
            "order_id": "o-auth",
            "customer_id": "c2",
            "item_id": "i3",
            "quantity": 1,
            "ordered_at": "2026-01-02T10:00:00Z",
        }
    ]
}
# (method, path, json body, scope, success status)
PROTECTED: list[tuple[str, str, Any, str, int]] = [
    ("GET", "/v1/customers/c1/recommendations", None, "storefront", 200),
    ("POST", "/v1/recommendations/cross-sell", {"items": ["i0"]}, "storefront", 200),
    ("POST", "/v1/recommendations/session", {"items": ["i0"]}, "storefront", 200),
    ("GET", "/v1/items/i1/similar", None, "storefront", 200),
    ("GET", "/v1/customers/c1/churn", None, "crm", 200),
    ("GET", "/v1/customers/c1/loyalty", None, "crm", 200),
    ("POST", "/v1/customers/scores:batch", {"customer_ids": ["c1"]}, "crm", 200),
    ("GET", "/v1/segments", None, "crm", 200),
    ("POST", "/v1/events", EVENT, "crm", 201),
    ("GET", "/v1/models", None, "admin", 200),
    ("POST", "/v1/admin/reload", None, "admin", 200),
]
OPEN = ["/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"]


def _call(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.request(method, path, json=body, headers=headers)


def test_every_v1_route_is_in_the_auth_table(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    }
    covered = {(m, p) for m, p, *_ in PROTECTED}
    templated = {
        (m, p.replace("c1", "{customer_id}").replace("i1", "{item_id}")) for m, p in covered
    }
    assert routes == templated


@pytest.mark.parametrize(("method", "path", "body", "scope", "status"), PROTECTED)
def test_route_needs_a_key_of_its_scope(
    client: TestClient, method: str, path: str, body: Any, scope: str, status: int
) -> None:
    missing = _call(client, method, path, body, {})
    assert missing.status_code == 401
    assert missing.json()["error"] == "missing_api_key"
    unknown = _call(client, method, path, body, {"X-API-Key": "not-a-key"})
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_api_key"
    for other in KEYS:
        if other != scope:
            wrong = _call(client, method, path, body, {"X-API-Key": KEYS[other]})
            assert wrong.status_code == 403, (other, wrong.text)
            assert scope in wrong.json()["detail"]
    right = _call(client, method, path, body, {"X-API-Key": KEYS[scope]})
    assert right.status_code == status, right.text


def test_a_scope_may_have_several_keys(client: TestClient) -> None:
    for presented in ("sf-key-1", "sf-key-2"):
        answer = client.get("/v1/items/i1/similar", headers={"X-API-Key": presented})
        assert answer.status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_open_routes_need_no_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_keys_never_reach_logs_or_error_bodies(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        client.get("/v1/customers/c1/churn", headers={"X-API-Key": KEYS["storefront"]}),
        client.get("/v1/customers/c1/churn", headers={"X-API-Key": "guess-123"}),
    ]
    for answer in answers:
        assert KEYS["storefront"] not in answer.text and "guess-123" not in answer.text
    assert all(v not in caplog.text for v in KEYS.values())
    settings = Settings(api_keys="crm=secret-value")
    assert "secret-value" not in repr(settings) and "secret-value" not in str(settings)


def test_server_refuses_to_start_without_keys_unless_insecure_dev() -> None:
    with pytest.raises(SettingsError, match="--insecure-dev"):
        create_app(Settings(api_keys=""))
    app = create_app(Settings(api_keys="", insecure_dev=True, load_on_start=False))
    with TestClient(app) as open_client:
        # Open access in dev mode: the route answers 503 (no models), not 401.
        assert open_client.get("/v1/segments").status_code == 503


def test_insecure_dev_with_keys_still_checks_keys(tmp_path: Any) -> None:
    settings = Settings(api_keys="crm=k1", insecure_dev=True, load_on_start=False)
    with TestClient(create_app(settings)) as keyed:
        assert keyed.get("/v1/segments").status_code == 401


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("crm", "not `scope=key`"),
        ("crm=", "not `scope=key`"),
        ("root=abc", "unknown scope 'root'"),
    ],
)
def test_bad_key_configuration_says_what_to_fix(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_api_keys(raw)
    with pytest.raises(SettingsError, match="PATRONAGE_API_KEYS"):
        Settings.from_env({"PATRONAGE_API_KEYS": raw})


def test_key_ring_grants_every_scope_of_a_shared_key() -> None:
    ring = KeyRing.from_pairs((("crm", "k"), ("admin", "k"), ("storefront", "s")), False)
    assert ring.scopes_of("k") == {"crm", "admin"}
    assert ring.scopes_of("s") == {"storefront"}
    assert ring.scopes_of("") == frozenset()
    assert ring.scopes_of("k ") == frozenset()
