"""Answers and errors of every route, on test-double models with obvious right answers."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import Settings
from serving.model_store import ModelStore
from tests.serving.conftest import key
from tests.serving.doubles import TinySource

STOREFRONT, CRM, ADMIN = key("storefront"), key("crm"), key("admin")


def test_known_customer_gets_personal_items_without_purchases(client: TestClient) -> None:
    answer = client.get("/v1/customers/c1/recommendations?k=3", headers=STOREFRONT).json()
    assert [i["item_id"] for i in answer["items"]] == ["i1", "i2", "i3"]
    assert answer["strategy"] == "tiny-v1"
    assert answer["model_version"] == "rec/1"
    scores = [i["score"] for i in answer["items"]]
    assert scores == sorted(scores, reverse=True)


def test_unknown_customer_falls_back_to_trending(client: TestClient) -> None:
    answer = client.get("/v1/customers/nobody/recommendations?k=2", headers=STOREFRONT)
    assert answer.status_code == 200
    assert (answer.json()["strategy"], answer.json()["note"]) == ("trending", "new customer")
    assert [i["item_id"] for i in answer.json()["items"]] == ["i0", "i1"]


def test_exclude_purchased_none_keeps_bought_items(client: TestClient) -> None:
    answer = client.get(
        "/v1/customers/c1/recommendations?k=1&exclude_purchased=none", headers=STOREFRONT
    ).json()
    assert answer["items"][0]["item_id"] == "i0"


def test_cross_sell_never_returns_the_basket(client: TestClient) -> None:
    answer = client.post(
        "/v1/recommendations/cross-sell", json={"items": ["i0", "i1"], "k": 2}, headers=STOREFRONT
    ).json()
    assert [i["item_id"] for i in answer["items"]] == ["i2", "i3"]
    assert answer["basket"] == ["i0", "i1"] and answer["model_version"] == "rec/1"


def test_similar_items_and_unknown_item(client: TestClient) -> None:
    answer = client.get("/v1/items/i0/similar?k=2", headers=STOREFRONT).json()
    assert [i["item_id"] for i in answer["items"]] == ["i1", "i2"]
    missing = client.get("/v1/items/nope/similar", headers=STOREFRONT)
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_item"


def test_churn_answer_names_model_and_as_of(client: TestClient) -> None:
    answer = client.get("/v1/customers/c3/churn", headers=CRM).json()
    assert answer == {
        "customer_id": "c3",
        "churn_probability": 0.9,
        "churn_risk": "high",
        "churn_reasons": ["no order for 94 days", "2 complaints"],
        "as_of": "2025-12-31T00:00:00+00:00",
        "model_version": "churn/1",
        "strategy": "tiny-churn",
    }


def test_loyalty_answer_has_every_field_and_null_for_unknown_values(client: TestClient) -> None:
    answer = client.get("/v1/customers/c3/loyalty", headers=CRM).json()
    assert answer["segment"] == "Lost" and answer["loyalty_score"] == 10.0
    assert answer["predicted_clv_365d"] is None  # NaN in the table is null, never "NaN"
    assert answer["last_order_at"] == "2025-06-01T00:00:00+00:00"
    assert answer["days_since_last_order"] == 213.0  # at as_of, 2025-12-31
    assert answer["model_version"] == "loyalty/1"


def test_loyalty_days_since_last_order_count_to_as_of_not_to_now(client: TestClient) -> None:
    # Every other field of the answer is at as_of; "now" would make the answer move with the
    # wall clock while the scores beside it do not.
    for customer_id in ("c1", "c2", "c3"):
        answer = client.get(f"/v1/customers/{customer_id}/loyalty", headers=CRM).json()
        gap = pd.Timestamp(answer["as_of"]) - pd.Timestamp(answer["last_order_at"])
        assert answer["days_since_last_order"] == gap / pd.Timedelta(days=1)


@pytest.mark.parametrize("route", ["churn", "loyalty"])
def test_unknown_customer_is_a_clear_404(client: TestClient, route: str) -> None:
    answer = client.get(f"/v1/customers/nobody/{route}", headers=CRM)
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_customer"
    assert "nobody" in answer.json()["detail"]


def test_batch_keeps_order_lists_unknown_and_caps_size(client: TestClient) -> None:
    answer = client.post(
        "/v1/customers/scores:batch", json={"customer_ids": ["c3", "zz", "c1", "c3"]}, headers=CRM
    ).json()
    assert [s["customer_id"] for s in answer["scores"]] == ["c3", "c1"]
    assert answer["unknown_customer_ids"] == ["zz"]
    assert answer["model_versions"] == {"churn": "churn/1", "loyalty": "loyalty/1"}
    too_many = client.post(
        "/v1/customers/scores:batch", json={"customer_ids": ["c1"] * 1001}, headers=CRM
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "batch_too_large"  # the documented code
    assert "1000" in too_many.json()["detail"]
    most = client.post(
        "/v1/customers/scores:batch", json={"customer_ids": ["c1"] * 1000}, headers=CRM
    )
    assert most.status_code == 200


def test_segments_add_up(client: TestClient) -> None:
    answer = client.get("/v1/segments", headers=CRM).json()
    assert sum(s["customers"] for s in answer["segments"]) == answer["customers"] == 3


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/customers/c1/recommendations?k=0", "query.k"),
        ("/v1/customers/c1/recommendations?k=101", "query.k"),
        ("/v1/customers/c1/recommendations?k=ten", "query.k"),
        ("/v1/customers/c1/recommendations?exclude_purchased=some", "exclude_purchased"),
        ("/v1/customers/c1/recommendations?k=", "query.k"),
        (f"/v1/customers/c1/recommendations?category={'x' * 257}", "query.category"),
        ("/v1/items/i1/similar?k=-1", "query.k"),
    ],
)
def test_bad_parameters_get_422_saying_what_to_fix(
    client: TestClient, path: str, fragment: str
) -> None:
    answer = client.get(path, headers=STOREFRONT)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request" and fragment in body["detail"]


@pytest.mark.parametrize(
    "body",
    [{}, {"items": []}, {"items": "i1"}, {"items": ["i1"], "k": 0}, {"items": ["i1"], "x": 1}],
)
def test_bad_cross_sell_bodies_get_422(client: TestClient, body: object) -> None:
    answer = client.post("/v1/recommendations/cross-sell", json=body, headers=STOREFRONT)
    assert answer.status_code == 422 and set(answer.json()) >= {"error", "detail"}


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    answer = client.post(
        "/v1/customers/scores:batch",
        content=b"{not json",
        headers={**CRM, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert client.get("/v2/nothing").json()["error"] == "not_found"
    assert client.delete("/v1/segments", headers=CRM).json()["error"] == "method_not_allowed"


def test_not_ready_before_first_load(settings: Settings) -> None:
    store = ModelStore(TinySource(), poll_seconds=0)
    with TestClient(create_app(settings, model_store=store)) as fresh:
        assert fresh.get("/health/live").status_code == 200
        assert fresh.get("/health/ready").status_code == 503
        answer = fresh.get("/v1/customers/c1/churn", headers=CRM)
        assert answer.status_code == 503 and answer.json()["error"] == "models_not_loaded"
        assert fresh.get("/v1/models", headers=ADMIN).json()["ready"] is False
        assert fresh.post("/v1/admin/reload", headers=ADMIN).json()["outcome"] == "loaded"
        assert fresh.get("/health/ready").status_code == 200


def test_models_route_reports_versions_metrics_and_last_reload(client: TestClient) -> None:
    answer = client.get("/v1/models", headers=ADMIN).json()
    assert answer["ready"] is True
    assert {m["role"]: m["version"] for m in answer["models"]} == {
        "recommender": "1",
        "churn": "1",
        "loyalty": "1",
    }
    assert answer["models"][0]["metrics"] == {"auc": 0.8}
    assert answer["last_reload"]["outcome"] == "loaded"


def test_failed_reload_keeps_old_models_and_is_reported(
    client: TestClient, tiny_source: TinySource
) -> None:
    tiny_source.version = "2"
    tiny_source.fail_next_load = True
    failed = client.post("/v1/admin/reload", headers=ADMIN)
    assert failed.status_code == 503
    assert "corrupt artifact" in failed.json()["detail"]
    assert client.get("/health/ready").status_code == 200
    still = client.get("/v1/customers/c1/churn", headers=CRM).json()
    assert still["model_version"] == "churn/1"
    models = client.get("/v1/models", headers=ADMIN).json()
    assert models["reload_failures"] == 1 and models["last_reload"]["outcome"] == "failed"
    metrics = client.get("/metrics").text
    assert "patronage_model_reload_failures_total 1.0" in metrics
    assert client.post("/v1/admin/reload", headers=ADMIN).json()["outcome"] == "loaded"
    assert client.get("/v1/customers/c1/churn", headers=CRM).json()["model_version"] == "churn/2"


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    for customer_id in ("c1", "c2", "c3"):
        client.get(f"/v1/customers/{customer_id}/churn", headers=CRM)
    text = client.get("/metrics").text
    line = (
        'patronage_http_requests_total{method="GET",'
        'route="/v1/customers/{customer_id}/churn",status="200"} 3.0'
    )
    assert line in text
    assert 'patronage_model_info{name="churn",role="churn",version="1"} 1.0' in text
    assert "patronage_http_request_duration_seconds_bucket" in text
    assert "c2" not in text  # customer ids never become labels


@pytest.mark.parametrize(
    ("query", "error"),
    [("K=5", "unknown_query_parameter"), ("k=2&k=3", "repeated_query_parameter")],
)
def test_unknown_or_repeated_query_parameter_is_422(
    client: TestClient, query: str, error: str
) -> None:
    answer = client.get(f"/v1/customers/c1/recommendations?{query}", headers=STOREFRONT)
    assert answer.status_code == 422 and answer.json()["error"] == error


@pytest.mark.parametrize(
    ("route", "headers"),
    [("churn", CRM), ("loyalty", CRM), ("recommendations", STOREFRONT)],
)
def test_hot_reads_check_their_input_by_hand(
    client: TestClient, route: str, headers: dict[str, str]
) -> None:
    """These routes check key, query and id themselves (FastAPI's solving is skipped on the
    hottest routes); the rules and the OpenAPI schema stay those of every other route."""
    too_long = client.get(f"/v1/customers/{'c' * 257}/{route}", headers=headers)
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "invalid_request"
    assert "path.customer_id" in too_long.json()["detail"]
    assert "1 to 256 characters" in too_long.json()["detail"]
    longest = client.get(f"/v1/customers/{'c' * 256}/{route}", headers=headers)
    # a valid id the model does not know: no score, or the new-customer fallback
    assert longest.status_code == (200 if route == "recommendations" else 404)
    typo = client.get(f"/v1/customers/c1/{route}?kk=5", headers=headers)
    assert typo.status_code == 422 and typo.json()["error"] == "unknown_query_parameter"
    assert "'kk'" in typo.json()["detail"]
    operation = client.get("/openapi.json").json()["paths"][
        f"/v1/customers/{{customer_id}}/{route}"
    ]
    assert operation["get"]["security"] == [{"ApiKey": []}]
    parameters = operation["get"]["parameters"]
    assert parameters[0]["name"] == "customer_id" and parameters[0]["in"] == "path"
    assert parameters[0]["schema"]["maxLength"] == 256


def test_recommendation_query_is_read_as_declared(client: TestClient) -> None:
    base = "/v1/customers/c1/recommendations"
    assert len(client.get(f"{base}?k=1", headers=STOREFRONT).json()["items"]) == 1
    every = client.get(f"{base}?k=100&category=&exclude_purchased=none", headers=STOREFRONT)
    assert every.status_code == 200
    kept = [item["item_id"] for item in every.json()["items"]]
    dropped = client.get(f"{base}?k=100&exclude_purchased=all", headers=STOREFRONT).json()
    assert "i0" in kept and "i0" not in [item["item_id"] for item in dropped["items"]]
    assert client.get(f"{base}?k=2&k=3", headers=STOREFRONT).json()["error"] == (
        "repeated_query_parameter"
    )
