"""End to end on real parts: the sample shop trained by the training pipeline into a temp MLflow
store, `patronage serve` as a real uvicorn process on 127.0.0.1, and answers checked against
the same champion models loaded with `mlflow.pyfunc.load_model` in this process. Then a new
champion is promoted while threads hammer the server: no request may fail; a corrupt version
must leave the old models serving."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import SAMPLE_SHOP_NAME, TrainedSampleStore

KEYS = {"storefront": "e2e-sf", "crm": "e2e-crm", "admin": "e2e-admin"}
SHOP = SAMPLE_SHOP_NAME
MODEL_NAMES = tuple(f"patronage.{SHOP}.{role}" for role in ("recommender", "churn", "loyalty"))


@dataclass(frozen=True)
class TrainedRegistry:
    """A temp MLflow store holding champions trained on the sample shop."""

    tracking_uri: str
    shop_dir: Path


@dataclass(frozen=True)
class RunningServer:
    """A `patronage serve` subprocess."""

    url: str
    events_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="module")
def trained_registry(
    trained_sample_store: TrainedSampleStore, tmp_path_factory: pytest.TempPathFactory
) -> TrainedRegistry:
    """The session's sample shop champions (all three models, trained once by the training
    pipeline), in a private copy of the store's database: the tests here register new
    versions. The artifacts stay where the session's store keeps them, read-only."""
    assert trained_sample_store.tracking_uri.endswith("mlflow.db")
    root = tmp_path_factory.mktemp("serving_mlruns")
    shutil.copyfile(trained_sample_store.root / "mlflow.db", root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return TrainedRegistry(tracking_uri=uri, shop_dir=trained_sample_store.shop_dir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`patronage serve` on a free port, polling the registry every second; ready or fail."""
    workdir = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=trained_registry.tracking_uri,
        PATRONAGE_API_KEYS=",".join(f"{scope}={key}" for scope, key in KEYS.items()),
        PATRONAGE_EVENTS_DIR=str(workdir / "events"),
        OPENBLAS_NUM_THREADS="1",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    # training in this process set it; the server must quiet MLflow's download bars itself
    env.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "patronage", "serve", "--port", str(port), "--poll-seconds", "1"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, workdir / "server.log")
        yield RunningServer(
            url=url, events_dir=workdir / "events", process=process, log_path=workdir / "server.log"
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    live_seen = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"patronage serve exited early:\n{log_path.read_text()}")
        try:
            if not live_seen:
                live_seen = httpx.get(f"{url}/health/live", timeout=1).status_code == 200
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                assert live_seen, "/health/live must answer before the models are ready"
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready within 90 s:\n{log_path.read_text()}")


def _get(server: RunningServer, path: str, scope: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}{path}", headers={"X-API-Key": KEYS[scope]}, timeout=10, **kwargs
    )


def _post(server: RunningServer, path: str, scope: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}", headers={"X-API-Key": KEYS[scope]}, json=body, timeout=30
    )


def _pyfunc(tracking_uri: str, name: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}@champion")


def _known_customers(shop_dir: Path, n: int) -> list[str]:
    purchases = pd.read_csv(shop_dir / "purchases.csv", dtype={"customer_id": str})
    counts = purchases["customer_id"].value_counts()
    return counts.index[:n].astype(str).tolist()


def test_models_route_names_the_registry_champions(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    answer = _get(server, "/v1/models", "admin").json()
    assert answer["ready"] is True and answer["last_reload"]["outcome"] in ("loaded", "unchanged")
    versions = {m["name"]: m["version"] for m in answer["models"]}
    assert versions == {name: "1" for name in MODEL_NAMES}
    churn = next(m for m in answer["models"] if m["name"] == "patronage.sample.churn")
    assert "roc_auc" in churn["metrics"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert (
        'patronage_model_info{name="patronage.sample.churn",role="churn",version="1"} 1.0'
        in metrics
    )
    log = server.log_path.read_text()
    assert "loaded patronage.sample.churn version 1" in log
    assert "Downloading artifacts" not in log  # no per-file progress bars in the service log


def test_answers_equal_the_champion_models(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    customers = _known_customers(trained_registry.shop_dir, 5)
    recommender = _pyfunc(trained_registry.tracking_uri, "patronage.sample.recommender")
    expected = recommender.predict(pd.DataFrame({"customer_id": customers}), params={"k": 5})
    churn_model = _pyfunc(trained_registry.tracking_uri, "patronage.sample.churn")
    churn_expected = churn_model.predict(pd.DataFrame({"customer_id": customers}))
    loyalty_model = _pyfunc(trained_registry.tracking_uri, "patronage.sample.loyalty")
    loyalty_expected = loyalty_model.predict(pd.DataFrame({"customer_id": customers}))
    for position, customer_id in enumerate(customers):
        answer = _get(server, f"/v1/customers/{customer_id}/recommendations?k=5", "storefront")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows = expected[expected["customer_id"] == customer_id]
        assert [i["item_id"] for i in body["items"]] == rows["item_id"].tolist()
        assert body["strategy"] == rows["strategy"].iloc[0]
        assert body["model_version"] == "patronage.sample.recommender/1"

        churn = _get(server, f"/v1/customers/{customer_id}/churn", "crm").json()
        assert churn["churn_probability"] == pytest.approx(
            float(churn_expected["churn_probability"].iloc[position])
        )
        assert churn["churn_risk"] == churn_expected["churn_risk"].iloc[position]
        assert churn["model_version"] == "patronage.sample.churn/1" and churn["strategy"]
        loyalty = _get(server, f"/v1/customers/{customer_id}/loyalty", "crm").json()
        assert loyalty["segment"] == loyalty_expected["segment"].iloc[position]
        assert loyalty["loyalty_score"] == pytest.approx(
            float(loyalty_expected["loyalty_score"].iloc[position])
        )
        assert loyalty["model_version"] == "patronage.sample.loyalty/1"
        # every scored customer ordered before as_of: the answer knows when, and how long ago
        assert loyalty["last_order_at"] is not None and loyalty["days_since_last_order"] > 0


def test_unknown_customers(server: RunningServer) -> None:
    answer = _get(server, "/v1/customers/never-seen/recommendations?k=3", "storefront").json()
    assert (answer["strategy"], answer["note"]) == ("trending", "new customer")
    assert len(answer["items"]) == 3
    for route in ("churn", "loyalty"):
        missing = _get(server, f"/v1/customers/never-seen/{route}", "crm")
        assert missing.status_code == 404 and missing.json()["error"] == "unknown_customer"


def test_serve_refuses_an_oversized_header_before_any_route(server: RunningServer) -> None:
    """`patronage serve` runs the guarded protocol (tests/serving/test_http_protocol.py)."""
    answer = httpx.get(f"{server.url}/health/live", headers={"X-Big": "a" * 200_000}, timeout=10)
    assert answer.status_code == 431
    assert "PATRONAGE_MAX_HEADER_BYTES" in answer.text
    assert httpx.get(f"{server.url}/health/live", timeout=10).status_code == 200


def test_storefront_and_crm_routes_answer(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    customer_id = _known_customers(trained_registry.shop_dir, 1)[0]
    first = _get(server, f"/v1/customers/{customer_id}/recommendations?k=2", "storefront").json()
    basket = [i["item_id"] for i in first["items"]]
    cross = _post(server, "/v1/recommendations/cross-sell", "storefront", {"items": basket})
    assert cross.status_code == 200 and not set(basket) & {
        i["item_id"] for i in cross.json()["items"]
    }
    similar = _get(server, f"/v1/items/{basket[0]}/similar?k=4", "storefront").json()
    assert len(similar["items"]) == 4 and basket[0] not in [i["item_id"] for i in similar["items"]]
    batch = _post(
        server, "/v1/customers/scores:batch", "crm", {"customer_ids": [customer_id, "nope"]}
    ).json()
    assert [s["customer_id"] for s in batch["scores"]] == [customer_id]
    assert batch["unknown_customer_ids"] == ["nope"]
    segments = _get(server, "/v1/segments", "crm").json()
    assert sum(s["customers"] for s in segments["segments"]) == segments["customers"] > 0
    assert all(s["thresholds"]["rfm_cells"] for s in segments["segments"])


def test_posted_purchase_is_durable_and_reflected(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    customer_id = _known_customers(trained_registry.shop_dir, 3)[2]
    # With exclude_purchased=all every bought item must leave (with the default, only items
    # the model does not consider repeatable do).
    path = f"/v1/customers/{customer_id}/recommendations?k=5&exclude_purchased=all"
    before = _get(server, path, "storefront").json()
    bought = before["items"][0]["item_id"]
    now = pd.Timestamp.now(tz="UTC").floor("s").isoformat()
    event = {"order_id": "e2e-1", "customer_id": customer_id, "item_id": bought, "quantity": 1,
             "ordered_at": now}  # fmt: skip
    answer = _post(server, "/v1/events", "crm", {"purchases": [event]})
    assert answer.status_code == 201, answer.text
    lines = (server.events_dir / answer.json()["log_file"]).read_text().splitlines()
    assert json.loads(lines[-1])["order_id"] == "e2e-1"
    after = _get(server, path, "storefront").json()
    assert bought not in [i["item_id"] for i in after["items"]]
    assert after["excluded_recent_purchases"] == 1
    loyalty = _get(server, f"/v1/customers/{customer_id}/loyalty", "crm").json()
    assert loyalty["last_order_at"] == now and loyalty["days_since_last_order"] < 0.01


def test_item_posted_unavailable_leaves_every_answer_at_once(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    customer_id = _known_customers(trained_registry.shop_dir, 4)[3]
    path = f"/v1/customers/{customer_id}/recommendations?k=5"
    before = _get(server, path, "storefront").json()
    basket = {"items": [before["items"][0]["item_id"]], "k": 5}
    cross_before = _post(server, "/v1/recommendations/cross-sell", "storefront", basket).json()
    gone = {before["items"][1]["item_id"], cross_before["items"][0]["item_id"]}

    def post(available: bool) -> None:
        rows = [{"item_id": item, "available": available} for item in sorted(gone)]
        answer = _post(server, "/v1/events", "crm", {"items": rows})
        assert answer.status_code == 201 and answer.json()["accepted_items"] == len(gone)

    post(False)
    try:
        after = _get(server, path, "storefront").json()
        cross = _post(server, "/v1/recommendations/cross-sell", "storefront", basket).json()
        for answer in (after, cross):
            items = [i["item_id"] for i in answer["items"]]
            assert not gone & set(items) and len(items) == 5
        # The rest keep their order: the next items move up.
        kept = [i["item_id"] for i in before["items"] if i["item_id"] not in gone]
        assert [i["item_id"] for i in after["items"]][: len(kept)] == kept
    finally:
        post(True)
    assert _get(server, path, "storefront").json()["items"] == before["items"]


def test_item_trained_unavailable_comes_back_when_posted_available(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    """A restock: the sample shop's best-selling item flagged unavailable (the model was
    trained with it masked) enters the new-customer list once posted `available: true`."""
    shop_dir = trained_registry.shop_dir
    items = pd.read_csv(shop_dir / "items.csv", dtype={"item_id": str})
    purchases = pd.read_csv(shop_dir / "purchases.csv", dtype={"item_id": str})
    flagged = set(items.loc[~items["available"].astype(bool), "item_id"])
    sales = purchases.loc[purchases["item_id"].isin(flagged), "item_id"].value_counts()
    restocked = str(sales.index[0])
    path = "/v1/customers/someone-new-e2e/recommendations?k=100"

    def listed() -> list[str]:
        return [i["item_id"] for i in _get(server, path, "storefront").json()["items"]]

    def post(available: bool) -> None:
        rows = [{"item_id": restocked, "available": available}]
        assert _post(server, "/v1/events", "crm", {"items": rows}).status_code == 201

    before = listed()
    assert restocked not in before and not flagged & set(before)
    post(True)
    try:
        after = listed()
        assert restocked in after and not (flagged - {restocked}) & set(after)
    finally:
        post(False)  # as trained: the other tests share this server
    assert listed() == before


def _new_champion_versions(tracking_uri: str, source_of: dict[str, str] | None = None) -> None:
    """Register a new champion version of each model in `source_of` (its source) or, without
    it, of every model (same artifacts)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for name in source_of or MODEL_NAMES:
        champion = client.get_model_version_by_alias(name, "champion")
        source = (source_of or {}).get(name, champion.source)
        version = client.create_model_version(name, source, run_id=champion.run_id)
        for key, value in champion.tags.items():
            if key.startswith("patronage.metric."):
                client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_alias(name, "champion", version.version)


def test_hot_swap_under_load_drops_no_request(
    server: RunningServer, trained_registry: TrainedRegistry
) -> None:
    customers = _known_customers(trained_registry.shop_dir, 20)
    failures: list[str] = []
    seen_versions: set[str] = set()
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                customer_id = customers[(worker + n) % len(customers)]
                n += 1
                paths = [
                    (f"/v1/customers/{customer_id}/recommendations", "storefront"),
                    (f"/v1/customers/{customer_id}/churn", "crm"),
                ]
                for path, scope in paths:
                    try:
                        answer = client.get(path, headers={"X-API-Key": KEYS[scope]})
                    except httpx.HTTPError as error:
                        failures.append(f"{path}: {error!r}")
                        continue
                    if answer.status_code != 200:
                        failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                    else:
                        seen_versions.add(answer.json()["model_version"])

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        _new_champion_versions(trained_registry.tracking_uri)
        reload = _post(server, "/v1/admin/reload", "admin", None)
        assert reload.status_code == 200, reload.text
        assert reload.json()["versions"] == {"recommender": "2", "churn": "2", "loyalty": "2"}
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert {"patronage.sample.churn/1", "patronage.sample.churn/2"} <= seen_versions
    models = _get(server, "/v1/models", "admin").json()
    assert {m["version"] for m in models["models"]} == {"2"}


def test_corrupt_champion_keeps_old_models_serving(
    server: RunningServer, trained_registry: TrainedRegistry, tmp_path: Path
) -> None:
    before = _get(server, "/v1/models", "admin").json()
    served = {m["name"]: m["version"] for m in before["models"]}
    corrupt = tmp_path / "corrupt-model"
    corrupt.mkdir()
    (corrupt / "MLmodel").write_text("not: a model\n")
    _new_champion_versions(
        trained_registry.tracking_uri, {"patronage.sample.churn": corrupt.resolve().as_uri()}
    )
    reload = _post(server, "/v1/admin/reload", "admin", None)
    assert reload.status_code == 503 and reload.json()["error"] == "reload_failed"
    # The reason names the role, the registered model and the version that failed.
    failed = r"loading the churn model patronage\.sample\.churn version \d+ failed"
    assert re.search(failed, reload.text), reload.text
    after = _get(server, "/v1/models", "admin").json()
    assert {m["name"]: m["version"] for m in after["models"]} == served
    assert after["last_reload"]["outcome"] == "failed" and after["reload_failures"] >= 1
    assert httpx.get(f"{server.url}/health/ready").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "patronage_model_reload_failures_total" in metrics
    assert "patronage_model_reload_failures_total 0.0" not in metrics
