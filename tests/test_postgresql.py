"""Beyond one machine (issue 25): a shop trained from PostgreSQL and two serving replicas
sharing one PostgreSQL event store, with real parts only: the session's PostgreSQL server, a
real MLflow SQLite store, real `patronage serve` processes (uvicorn) on 127.0.0.1.

One tiny generated shop is exported to PostgreSQL (`patronage export-db`) and trained twice,
from its files and from the database (loyalty only, the role whose answers show posted
purchases): the two runs must have the same data hash and metrics. Its champion then serves on
two replicas with `PATRONAGE_EVENTS_URL`: a purchase posted to A shows in B's answer within 1 s,
and `kill -9` of A while clients post loses no acknowledged row while B answers every request.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from benchmarks.crash import CrashRun, _client
from benchmarks.postgres_events import spawn_replica, wait_until_serving
from features.postgres_url import with_database

TINY_SHOP = {"customers": 200, "items": 30, "days": 150, "seed": 3}
AS_OF = "2025-05-25"
SHOP = "tiny"


@dataclass(frozen=True)
class TrainedTwice:
    """The tiny shop's files and database, and the MLflow store both trainings logged to."""

    shop_dir: Path
    database: str
    tracking_uri: str
    workdir: Path


@pytest.fixture(scope="module")
def module_database(postgres_url: str) -> Iterator[str]:
    """A new database for this module on the session's server (dropped afterwards)."""
    name = f"patronage_replicas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(postgres_url, name)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def trained_twice(
    module_database: str, migrated_mlflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainedTwice:
    """Export the tiny shop with the CLI, then train it from the files (shop `tiny`) and from
    the database (schema `tiny_db`, registered as `tiny_db`)."""
    import mlflow

    from features.sample_shop import generate_shop
    from patronage.cli import main
    from training.pipeline import TrainOptions, train

    workdir = tmp_path_factory.mktemp("postgresql")
    shop_dir = workdir / SHOP
    generate_shop(shop_dir, **TINY_SHOP)
    database = f"{module_database}?schema=tiny_db"
    assert main(["export-db", str(shop_dir), database]) == 0
    (workdir / "mlruns").mkdir()
    shutil.copyfile(migrated_mlflow_db, workdir / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    for source in (shop_dir, database):
        train(
            TrainOptions(
                directory=source,
                as_of=AS_OF,
                tracking_uri=uri,
                progress=False,
                roles=("loyalty",),
                rejects_dir=workdir / "rejects",
            )
        )
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    return TrainedTwice(shop_dir, database, uri, workdir)


def test_the_shop_trains_from_postgresql_to_the_hash_and_metrics_of_its_files(
    trained_twice: TrainedTwice,
) -> None:
    from mlflow.tracking import MlflowClient

    from models.registry_names import DATA_SHA256_TAG

    client = MlflowClient(trained_twice.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    by_source = {run.data.params["data.source"]: run for run in runs}
    assert len(by_source) == 2, f"expected one run per source, got {list(by_source)}"
    from_files = by_source[str(trained_twice.shop_dir.resolve())]
    from_database = next(run for source, run in by_source.items() if "tiny_db" in source)
    assert from_files.data.tags[DATA_SHA256_TAG] == from_database.data.tags[DATA_SHA256_TAG]
    assert from_files.data.metrics, "the run logged no metrics: the comparison proves nothing"
    assert from_files.data.metrics == from_database.data.metrics


@dataclass
class Replica:
    """One `patronage serve` process and its base URL."""

    process: subprocess.Popen[bytes]
    url: str


@pytest.fixture(scope="module")
def replicas(trained_twice: TrainedTwice, module_database: str) -> Iterator[list[Replica]]:
    """Two replicas of shop `tiny` on different ports, one PostgreSQL event store (started
    side by side, then waited for)."""
    events_url = f"{module_database}?schema=events"
    started: list[Replica] = []
    logs = [trained_twice.workdir / f"serve-{name}.log" for name in ("a", "b")]
    try:
        for log in logs:
            process, url = spawn_replica(
                events_url, trained_twice.workdir, log, trained_twice.tracking_uri, SHOP
            )
            started.append(Replica(process, url))
        for replica, log in zip(started, logs, strict=True):
            wait_until_serving(replica.process, replica.url, log, models=True)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
                replica.process.wait(30)


def _orders_posted(url: str, customer: str) -> int:
    answer = httpx.get(f"{url}/v1/customers/{customer}/loyalty", timeout=5)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["orders_posted_since_as_of"])


def test_a_purchase_posted_to_one_replica_shows_on_the_other_within_a_second(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    customer = "C001"
    assert _orders_posted(b.url, customer) == 0
    ordered_at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    row = {"order_id": "replica-1", "customer_id": customer, "item_id": "I01", "quantity": 1,
           "ordered_at": ordered_at}  # fmt: skip
    posted = httpx.post(f"{a.url}/v1/events", json={"purchases": [row]}, timeout=10)
    assert posted.status_code == 201, posted.text
    assert posted.json()["log_file"] == "postgresql:events", "A does not store in PostgreSQL"
    acknowledged = time.monotonic()
    while _orders_posted(b.url, customer) == 0:
        assert time.monotonic() - acknowledged < 1.0, "replica B did not see the purchase in 1 s"
        time.sleep(0.02)
    # A client's retry is answered like the first post and stored once.
    again = httpx.post(f"{b.url}/v1/events", json={"purchases": [row]}, timeout=10)
    assert again.status_code == 201, again.text
    assert again.json()["log_file"] == "postgresql:events", "B does not store in PostgreSQL"
    time.sleep(0.3)
    assert _orders_posted(a.url, customer) == 1 and _orders_posted(b.url, customer) == 1


def test_kill_9_of_one_replica_loses_no_acknowledged_row_and_the_other_answers(
    replicas: list[Replica], module_database: str
) -> None:
    from features.event_store import open_event_store

    a, b = replicas
    run, lock, stop = CrashRun(), threading.Lock(), threading.Event()
    posters = [
        threading.Thread(target=_client, args=(a.url, f"kill-a{t}", stop, run, lock, False))
        for t in range(4)
    ]
    answers_from_b: list[int] = []

    def ask_b() -> None:
        with httpx.Client(base_url=b.url, timeout=10) as http:
            number = 0
            while not stop.is_set():
                number += 1
                row = {"order_id": f"kill-b-{number}", "customer_id": "C002", "item_id": "I02",
                       "quantity": 1, "ordered_at": "2026-01-05T08:30:00Z"}  # fmt: skip
                posted = http.post("/v1/events", json={"purchases": [row]})
                answers_from_b.append(posted.status_code)
                answers_from_b.append(http.get("/v1/customers/C002/loyalty").status_code)

    asker = threading.Thread(target=ask_b)
    for thread in [*posters, asker]:
        thread.start()
    deadline = time.monotonic() + 30
    while run.posts_acknowledged < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait()
    killed_at = len(answers_from_b)
    time.sleep(1.0)  # B goes on alone
    stop.set()
    for thread in [*posters, asker]:
        thread.join(30)
    assert run.posts_acknowledged >= 20, "A acknowledged too few posts: the run proves nothing"
    assert run.refused == {}, f"valid posts were refused by A: {run.refused}"
    assert len(answers_from_b) > killed_at + 2, "B answered nothing after A was killed"
    assert set(answers_from_b) == {200, 201}, f"B's answers: {sorted(set(answers_from_b))}"
    store = open_event_store(f"{module_database}?schema=events")
    try:
        purchases, _, _ = store.read_events()
    finally:
        store.close()
    stored = set(zip(purchases["order_id"], purchases["item_id"], strict=True))
    from_b = sum(order.startswith("kill-b-") for order, _ in stored)
    assert from_b >= answers_from_b.count(201), "B acknowledged rows the store does not hold"
    missing = run.acknowledged - stored
    assert not missing, (
        f"{len(missing)} of {len(run.acknowledged)} acknowledged rows lost, e.g. "
        f"{sorted(missing)[:3]}; the store holds {len(stored)} rows"
    )
