"""What was shown and clicked, and champion and challenger on real traffic (issue 23, builds 3-5):
every recommendation answer names its `recommendation_id` and `variant`; impressions and clicks
are validated by the one contract, logged durably and counted once; a fixed share of shoppers,
always the same ones, gets the challenger."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from features.event_log import read_event_log
from features.recommendation_ids import origin_of
from serving.app import create_app
from serving.challenger import assigned_variant, challenger_models
from serving.config import Settings
from serving.model_store import ModelStore
from tests.conftest import TrainedSampleStore
from tests.serving.conftest import key
from tests.serving.doubles import TinySource

CRM, STOREFRONT, ADMIN = key("crm"), key("storefront"), key("admin")


@pytest.fixture
def split_client(settings: Settings, tiny_store: ModelStore) -> Iterator[TestClient]:
    """The app with a challenger (version 2) for 20% of shoppers."""
    challenger_source = TinySource()
    challenger_source.version = "2"
    challenger = ModelStore(challenger_source, poll_seconds=0)
    assert challenger.reload().outcome == "loaded"
    shared = settings.model_copy(update={"challenger_share": 0.2})
    with TestClient(create_app(shared, tiny_store, challenger_store=challenger)) as client:
        yield client


def test_a_fifth_of_3000_customers_get_the_challenger_and_never_switch(
    split_client: TestClient,
) -> None:
    customers = [f"customer-{number}" for number in range(3000)]
    assigned = {customer: assigned_variant(customer, 0.2) for customer in customers}
    share = sum(v == "challenger" for v in assigned.values()) / len(assigned)
    assert 0.18 <= share <= 0.22, share
    # The answers follow the assignment (150 asked over HTTP, each twice: never a switch).
    for customer in customers[:150]:
        for _ in range(2):
            answer = split_client.get(
                f"/v1/customers/{customer}/recommendations?k=2", headers=STOREFRONT
            ).json()
            assert answer["variant"] == assigned[customer]
            expected = "rec/2" if assigned[customer] == "challenger" else "rec/1"
            assert answer["model_version"] == expected
            assert origin_of(answer["recommendation_id"]).variant == answer["variant"]
    first_challenger = next(c for c in customers if assigned[c] == "challenger")
    basket = split_client.post(
        "/v1/recommendations/cross-sell",
        json={"items": ["i0"], "customer_id": first_challenger},
        headers=STOREFRONT,
    )
    assert basket.json()["variant"] == "challenger"
    models = split_client.get("/v1/models", headers=ADMIN).json()
    assert models["challenger_share"] == 0.2 and models["challenger"]["version"] == "2"


def test_the_variant_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Workers are separate processes with their own `hash()` salt: the split must not use it."""
    ids = [f"customer-{n}" for n in range(500)] + [f"session-{n}" for n in range(500)]
    here = [assigned_variant(i, 0.2) for i in ids]
    program = (
        "import json, sys; from serving.challenger import assigned_variant, challenger_models; "
        "print(json.dumps([assigned_variant(i, 0.2) for i in json.load(sys.stdin)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.getcwd()}
    other = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(other.stdout) == here
    assert 0 < here.count("challenger") < len(ids)


def test_without_a_share_everyone_gets_the_champion_and_every_route_names_its_answer(
    client: TestClient,
) -> None:
    answers = [
        client.get("/v1/customers/c1/recommendations", headers=STOREFRONT).json(),
        client.post(
            "/v1/recommendations/cross-sell", json={"items": ["i1"]}, headers=STOREFRONT
        ).json(),
        client.get("/v1/items/i1/similar", headers=STOREFRONT).json(),
    ]
    routes = [origin_of(a["recommendation_id"]).route for a in answers]
    assert routes == ["personal", "cross_sell", "similar"]
    assert {a["variant"] for a in answers} == {"champion"}
    assert len({a["recommendation_id"] for a in answers}) == 3


def _shown(client: TestClient) -> tuple[str, list[str]]:
    answer = client.get("/v1/customers/c2/recommendations?k=3", headers=STOREFRONT).json()
    return answer["recommendation_id"], [i["item_id"] for i in answer["items"]]


def test_impressions_clicks_and_a_named_purchase_are_logged_and_counted_once(
    client: TestClient, settings: Settings
) -> None:
    rid, items = _shown(client)
    body = {
        "impressions": [
            {"recommendation_id": rid, "customer_id": "c2", "items": items,
             "shown_at": "2026-01-05T08:00:00Z"}
        ],
        "clicks": [{"recommendation_id": rid, "item_id": items[1],
                    "clicked_at": "2026-01-05T08:00:05Z"}],
        "purchases": [{"order_id": "o-1", "customer_id": "c2", "item_id": items[1],
                       "quantity": 2, "unit_price": 2.5, "ordered_at": "2026-01-05T08:03:00Z",
                       "recommendation_id": rid}],
    }  # fmt: skip
    for _ in range(2):  # a client retry: the same rows again
        answer = client.post("/v1/events", json=body, headers=CRM)
        assert answer.status_code == 201, answer.text
    assert answer.json()["accepted_impressions"] == 1 and answer.json()["accepted_clicks"] == 1
    logged = [
        json.loads(line)
        for path in Path(settings.events_dir).glob("events-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r["event"] for r in logged].count("impression") == 2
    assert logged[1]["items"] == items and logged[0]["recommendation_id"] == rid
    purchases, _ = read_event_log(settings.events_dir)  # training reads the contract's columns
    assert "recommendation_id" not in purchases.columns and len(purchases) == 1
    online = client.get("/v1/models", headers=ADMIN).json()["online"]
    (group,) = online["groups"]
    assert (group["route"], group["variant"], group["model_version"]) == (
        "personal",
        "champion",
        "rec/1",
    )
    assert (group["impressions"], group["clicked"], group["bought"]) == (1, 1, 1)
    assert group["revenue"] == 5.0
    exposition = client.get("/metrics").text
    assert (
        'patronage_online_revenue_total{model_version="rec/1",route="personal",'
        'strategy="tiny-v1",variant="champion"} 5.0'
    ) in exposition


def test_bad_impressions_and_clicks_are_refused_by_the_contract(
    client: TestClient, settings: Settings
) -> None:
    rid, items = _shown(client)
    good = {"recommendation_id": rid, "customer_id": "c2", "items": items,
            "shown_at": "2026-01-05T08:00:00Z"}  # fmt: skip
    body = {
        "impressions": [
            good,
            {**good, "customer_id": None},  # nobody saw it
            {**good, "recommendation_id": "r-2", "items": ["i1", "i1"]},  # an item twice
            {**good, "items": ["i2"]},  # the same recommendation again in one request
            {**good, "recommendation_id": "r-3", "shown_at": "2200-01-01T00:00:00Z"},
        ],
        "clicks": [{"recommendation_id": rid, "item_id": "i1", "clicked_at": "yesterday"}],
    }
    answer = client.post("/v1/events", json=body, headers=CRM)
    assert answer.status_code == 422
    reasons = [(r["table"], r["row"], r["reason"].split(":")[0]) for r in answer.json()["rejected"]]
    assert reasons == [
        ("impressions", 1, "missing_shopper"),
        ("impressions", 2, "bad_item_list"),
        ("impressions", 3, "duplicate_impression"),
        ("impressions", 4, "after_as_of"),
        ("clicks", 0, "clicked_at"),  # the row model: not ISO 8601
    ]
    assert not list(Path(settings.events_dir).glob("events-*.jsonl"))  # nothing written


def test_the_challenger_version_comes_from_the_registry(
    trained_sample_store: TrainedSampleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real MLflow source: a second recommender version under `@challenger` is loaded beside
    the champion and answers its share; with the alias on the champion's version, nobody is
    told `challenger`."""
    import mlflow

    root = tmp_path / "mlruns"
    root.mkdir()
    shutil.copyfile(trained_sample_store.root / "mlflow.db", root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the registry resolves a version's source through it
    mlflow.set_registry_uri(uri)
    try:
        _challenger_answers_its_share(uri, tmp_path)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _challenger_answers_its_share(uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "patronage.sample.recommender"
    first = client.get_model_version(name, "1")
    client.create_model_version(name, first.source, first.run_id)
    settings = Settings(
        api_keys="storefront=sf,admin=ad",
        events_dir=tmp_path / "events",
        poll_seconds=0,
        load_on_start=False,
        tracking_uri=uri,
        shop="sample",
        challenger_share=0.5,
        precompute_top_k=0,  # two loads of the sample recommender: skip the precomputed lists
    )
    app = create_app(settings)
    services = app.state.services
    assert services.store.reload().outcome == "loaded"
    services.challenger.reload()
    assert challenger_models(services.challenger) is None  # @challenger is version 1, the champion
    client.set_registered_model_alias(name, "challenger", "2")
    assert services.challenger.reload().outcome == "loaded"
    customers = [f"C{n:04d}" for n in range(1, 25)]
    with TestClient(app) as http:
        for customer in customers:
            answer = http.get(
                f"/v1/customers/{customer}/recommendations", headers={"X-API-Key": "sf"}
            ).json()
            assert answer["variant"] == assigned_variant(customer, 0.5)
            version = "2" if answer["variant"] == "challenger" else "1"
            assert answer["model_version"] == f"{name}/{version}"
        models = http.get("/v1/models", headers={"X-API-Key": "ad"}).json()
    assert models["challenger"]["version"] == "2"
    assert {assigned_variant(c, 0.5) for c in customers} == {"champion", "challenger"}
