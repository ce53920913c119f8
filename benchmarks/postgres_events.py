"""Events into the PostgreSQL event store: sustained rows per second through `POST /v1/events`.

A throwaway PostgreSQL cluster (`benchmarks.postgres_cluster`, or PATRONAGE_TEST_DATABASE_URL),
one real `patronage serve` on 127.0.0.1 with `PATRONAGE_EVENTS_URL` (events only, no models),
and client threads posting purchase batches (one request = one batch = one transaction) for a
fixed time. Rows per second counts only rows answered 201; afterwards every acknowledged row
must be in the store (what `patronage train --events postgresql://...` reads).
`start_replica` is shared with tests/test_postgresql.py (two replicas on one store).

`python -m benchmarks.postgres_events` writes benchmarks/results/postgres_events.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS_DIR, write_result

RESULT_PATH = RESULTS_DIR / "postgres_events.json"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_replica(
    events_url: str,
    workdir: Path,
    log: Path,
    tracking_uri: str | None = None,
    shop: str | None = None,
    follow_seconds: float = 1.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """`patronage serve` on a free port with its events in `events_url`; returns it when live.

    Without `tracking_uri` it serves events only (no model load); with one, it loads `shop`'s
    champions from that MLflow store and the return waits until it is ready."""
    process, url = spawn_replica(events_url, workdir, log, tracking_uri, shop, follow_seconds)
    wait_until_serving(process, url, log, models=tracking_uri is not None)
    return process, url


def spawn_replica(
    events_url: str,
    workdir: Path,
    log: Path,
    tracking_uri: str | None = None,
    shop: str | None = None,
    follow_seconds: float = 1.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """`start_replica` without the wait (start several, then `wait_until_serving` each)."""
    port = free_port()
    env = dict(
        os.environ,
        PATRONAGE_EVENTS_URL=events_url,
        PATRONAGE_EVENTS_FOLLOW_SECONDS=str(follow_seconds),
        MLFLOW_TRACKING_URI=tracking_uri or f"sqlite:///{workdir / 'unused.db'}",
        PATRONAGE_LOAD_ON_START="true" if tracking_uri else "false",
    )
    env.pop("MLFLOW_REGISTRY_URI", None)
    if shop:
        env["PATRONAGE_SHOP"] = shop
    process = subprocess.Popen(
        [sys.executable, "-m", "patronage", "serve", "--insecure-dev", "--port", str(port),
         "--poll-seconds", "0"],
        cwd=workdir, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def wait_until_serving(
    process: subprocess.Popen[bytes], url: str, log: Path, models: bool = False
) -> None:
    """Return once the server is live (with `models`: ready); RuntimeError after 180 s."""
    import httpx

    probe = "/health/ready" if models else "/health/live"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"patronage serve exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"patronage serve not ready within 180 s:\n{log.read_text()[-3000:]}")


def _poster(url: str, name: str, batch: int, until: float, counts: dict[str, Any]) -> None:
    """Post batches of `batch` purchase lines (one order each) until `until` (monotonic)."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        number = 0
        while time.monotonic() < until:
            number += 1
            rows = [
                {
                    "order_id": f"{name}-{number}",
                    "customer_id": f"customer-{number % 997}",
                    "item_id": f"item-{line}",
                    "quantity": 1,
                    "unit_price": 9.5,
                    "ordered_at": "2026-01-05T08:30:00Z",
                }
                for line in range(batch)
            ]
            answer = http.post("/v1/events", json={"purchases": rows})
            with counts["lock"]:
                if answer.status_code == 201:
                    counts["rows"] += len(rows)
                    counts["posts"] += 1
                else:
                    counts["refused"] += 1


def measure(events_url: str, workdir: Path, clients: int, batch: int, seconds: float) -> dict:
    """Start one replica, post for `seconds` with `clients` threads, read the store back."""
    from features.event_store import open_event_store

    process, url = start_replica(events_url, workdir, workdir / "serve.log")
    counts: dict[str, Any] = {"rows": 0, "posts": 0, "refused": 0, "lock": threading.Lock()}
    try:
        started = time.monotonic()
        threads = [
            threading.Thread(target=_poster, args=(url, f"t{t}", batch, started + seconds, counts))
            for t in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)
    store = open_event_store(events_url)
    try:
        purchases, _, _ = store.read_events()
    finally:
        store.close()
    return {
        "rows_acknowledged": counts["rows"],
        "posts_acknowledged": counts["posts"],
        "posts_refused": counts["refused"],
        "seconds": round(elapsed, 2),
        "rows_per_second": round(counts["rows"] / elapsed, 1),
        "posts_per_second": round(counts["posts"] / elapsed, 2),
        "rows_in_store": len(purchases),
    }


def main() -> int:
    """Measure and write benchmarks/results/postgres_events.json; exit 1 below 1,000 rows/s or
    when an acknowledged row is missing."""
    from benchmarks.postgres_cluster import database_url, wait_until_ready

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="purchase rows per request")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    workdir = tempfile.TemporaryDirectory(prefix="patronage-pg-")
    with database_url(fsync=True) as base, workdir as work:
        wait_until_ready(base)
        events_url = f"{base}?schema=bench_{int(time.time())}"
        figures = measure(events_url, Path(work), args.clients, args.batch, args.seconds)
    ok = figures["rows_per_second"] >= 1000 and figures["rows_in_store"] >= figures[
        "rows_acknowledged"
    ] and not figures["posts_refused"]  # fmt: skip
    result: dict[str, Any] = {
        "title": "Events into PostgreSQL (the event store shared by replicas)",
        "command": " ".join(["python -m benchmarks.postgres_events", *sys.argv[1:]]),
        "notes": [
            f"One `patronage serve` (events only) with PATRONAGE_EVENTS_URL on a local "
            "PostgreSQL 15 (throwaway cluster, fsync on, synchronous commit), "
            f"{args.clients} client threads posting {args.batch} purchase rows per request "
            f"for {args.seconds:.0f} s; each "
            "request is validated, then one transaction (advisory lock, INSERT ... ON CONFLICT "
            "DO NOTHING, NOTIFY) committed before the 201. Client, server and database share "
            "the machine's 2 cores. The contract validation of each request costs more than "
            "its transaction (measured in-process: about 20 ms to store 100 rows, 80 ms to "
            "validate them, on the loaded machine), so larger batches give more rows/s.",
            f"{figures['rows_per_second']:,.0f} acknowledged rows per second sustained "
            f"({figures['posts_per_second']:.1f} requests/s); {figures['rows_in_store']:,} "
            f"rows in the store for {figures['rows_acknowledged']:,} acknowledged. "
            + ("Target of 1,000 rows/s met." if ok else "BELOW TARGET OR ROWS MISSING."),
        ],
        "clients": args.clients,
        "rows_per_request": args.batch,
        **figures,
        "meets_1000_rows_per_second": ok,
    }
    write_result(RESULT_PATH, result)
    print(result["notes"][1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
