"""The deployment beyond one machine, end to end: an `mlflow server` whose backend store is
PostgreSQL, `patronage train` against it, two `patronage serve` replicas loading the champion
from it and sharing one PostgreSQL event store.

Real parts only: a throwaway PostgreSQL cluster (or PATRONAGE_TEST_DATABASE_URL), `mlflow
server --backend-store-uri postgresql+psycopg://...` with proxied artifacts in a temporary
directory, a generated shop trained with `patronage train` (loyalty, the role whose answers show
posted purchases), two replicas on 127.0.0.1. Checks that both replicas serve the same version
and that a purchase posted to one shows in the other's answer; records how long each step took
(the MLflow schema migrations on PostgreSQL dominate the server's first start). Not part of
`make test` (about two minutes on a busy 2-core machine); `python -m benchmarks.deployment`
writes benchmarks/results/deployment.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.postgres_events import free_port, spawn_replica, wait_until_serving
from benchmarks.report import RESULTS_DIR, write_result

RESULT_PATH = RESULTS_DIR / "deployment.json"
SHOP: dict[str, Any] = {"customers": 200, "items": 30, "days": 150, "seed": 3}


def _create_database(url: str, name: str) -> str:
    """Create database `name` on `url`'s server; returns its URL."""
    import psycopg
    from psycopg import sql

    from features.postgres_url import with_database

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(url, name)


def _mlflow_server(backend: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """`mlflow server` on PostgreSQL; returns it, its URL and the seconds until /health."""
    import httpx

    port = free_port()
    log = workdir / "mlflow-server.log"
    store = backend.replace("postgresql://", "postgresql+psycopg://", 1)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=workdir, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < 600:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url, time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"mlflow server not up in 600 s:\n{log.read_text()[-3000:]}")


def _reflected_after(a: str, b: str) -> float:
    """Post a purchase to replica `a`; seconds until replica `b`'s answer shows it."""
    import httpx

    row = {"order_id": "deployment-1", "customer_id": "C001", "item_id": "I01", "quantity": 1,
           "ordered_at": "2026-01-05T08:30:00Z"}  # fmt: skip
    answer = httpx.post(f"{a}/v1/events", json={"purchases": [row]}, timeout=10)
    if answer.status_code != 201:
        raise RuntimeError(f"post to A answered {answer.status_code}: {answer.text}")
    posted = time.monotonic()
    while time.monotonic() - posted < 10:
        seen = httpx.get(f"{b}/v1/customers/C001/loyalty", timeout=5).json()
        if seen["orders_posted_since_as_of"]:
            return time.monotonic() - posted
        time.sleep(0.02)
    raise RuntimeError("replica B did not show the purchase within 10 s")


def run(base_url: str, workdir: Path) -> dict[str, Any]:
    """The whole deployment once; returns its figures."""
    import httpx

    from features.sample_shop import generate_shop

    figures: dict[str, Any] = {}
    backend = _create_database(base_url, f"mlflow_{int(time.time())}")
    events = f"{_create_database(base_url, f'events_{int(time.time())}')}?schema=events"
    server, tracking, figures["mlflow_server_first_start_s"] = _mlflow_server(backend, workdir)
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        generate_shop(workdir / "tiny", **SHOP)
        env = dict(os.environ, MLFLOW_TRACKING_URI=tracking)
        env.pop("MLFLOW_REGISTRY_URI", None)
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "patronage", "train", str(workdir / "tiny"), "--roles",
             "loyalty", "--quiet"],
            cwd=workdir, env=env, check=True, capture_output=True,
        )  # fmt: skip
        figures["train_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        urls = []
        for name in ("a", "b"):
            log = workdir / f"serve-{name}.log"
            process, url = spawn_replica(events, workdir, log, tracking, "tiny")
            replicas.append(process)
            urls.append((process, url, log))
        for process, url, log in urls:
            wait_until_serving(process, url, log, models=True)
        figures["replicas_ready_s"] = round(time.monotonic() - started, 1)
        versions = [
            [m["version"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["models"]]
            for _, url, _ in urls
        ]
        figures["versions_served"] = versions
        figures["same_version_on_both"] = versions[0] == versions[1] == ["1"]
        figures["posted_to_a_seen_by_b_s"] = round(_reflected_after(urls[0][1], urls[1][1]), 3)
    finally:
        for process in [*replicas, server]:
            process.terminate()
            process.wait(30)
    figures["mlflow_server_first_start_s"] = round(figures["mlflow_server_first_start_s"], 1)
    return figures


def main() -> int:
    """Run once and write benchmarks/results/deployment.json; exit 1 when a check fails."""
    from benchmarks.postgres_cluster import database_url, wait_until_ready

    workdir = tempfile.TemporaryDirectory(prefix="patronage-deployment-")
    with database_url(fsync=True) as base, workdir as work:
        wait_until_ready(base)
        figures = run(base, Path(work))
    ok = figures["same_version_on_both"] and figures["posted_to_a_seen_by_b_s"] < 1.0
    result: dict[str, Any] = {
        "title": "Deployment: MLflow server on PostgreSQL, two replicas, one event store",
        "command": "python -m benchmarks.deployment",
        "notes": [
            "A throwaway PostgreSQL 15 cluster; `mlflow server --backend-store-uri "
            "postgresql+psycopg://...` (proxied artifacts); `patronage train` of a generated "
            "shop (200 customers, 150 days, loyalty) against it; two `patronage serve` "
            "replicas loading the champion from it, with PATRONAGE_EVENTS_URL on one "
            "PostgreSQL event store.",
            f"MLflow server first start (schema migrations on PostgreSQL) "
            f"{figures['mlflow_server_first_start_s']} s; training {figures['train_s']} s; "
            f"both replicas ready {figures['replicas_ready_s']} s; versions served "
            f"{figures['versions_served']}; a purchase posted to A shown by B after "
            f"{figures['posted_to_a_seen_by_b_s']} s. " + ("All checks pass." if ok else "FAILED."),
        ],
        **figures,
        "all_checks_pass": ok,
    }
    write_result(RESULT_PATH, result)
    print(result["notes"][1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
