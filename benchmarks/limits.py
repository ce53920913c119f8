"""What abusive or heavy clients cost a running `patronage serve`: memory and the latency other
clients see (issue 22's probe, measured).

One trained shop, one `patronage serve --workers 1` on 127.0.0.1. While a separate process asks
`GET /health/live` back to back (and another asks for recommendations, in the last phase), the
run does, one phase at a time:
- `quiet`: nothing (the reference);
- `big_bodies`: three unauthenticated 100 MB `POST /v1/events` at once, repeated for 5 s;
- `big_header`: a request with a 50 MB header, repeated for 5 s;
- `slowloris`: 100 connections that drip a request a byte every half second;
- `event_post_10k`: a legitimate crm post of 10,000 purchase rows.
For each phase: the server's resident memory rise over its level before the phase (sampled
every 5 ms from /proc), the health probe's p50 / p99 / max, and what the clients got.

Usage: python -m benchmarks.limits [--customers N] [--items N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import RESULTS_DIR, write_result
from benchmarks.serving import KEYS, SHOP, _free_port, _stop, _wait_http, _wait_precomputed, prepare

RESULT_PATH = RESULTS_DIR / "limits.json"
MB = 1024 * 1024
HEALTH_P99_TARGET_MS = 50.0
RSS_RISE_TARGET_MB = 20.0


def _rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class _RssPeak:
    """Samples a process's resident memory every 5 ms in a thread; `peak` is the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = _rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _probe(port: int, request: bytes, stop: Any, out: str) -> None:
    """Child process: send `request` over one keep-alive connection back to back until `stop`
    is set; write `[started_at, seconds]` pairs (time.time) to `out` as JSON."""
    samples: list[tuple[float, float]] = []
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    while not stop.is_set():
        started = time.time()
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += connection.recv(65536)
        samples.append((started, time.time() - started))
        time.sleep(0.002)
    Path(out).write_text(json.dumps(samples))


def _request(path: str, key: str | None = None) -> bytes:
    headers = f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
    if key:
        headers += f"X-API-Key: {key}\r\n"
    return (headers + "\r\n").encode()


def _latencies(samples: list[list[float]], start: float, end: float) -> dict[str, float]:
    inside = np.array([s for t, s in samples if start <= t <= end]) * 1000
    if inside.size == 0:
        return {"requests": 0}
    return {
        "requests": int(inside.size),
        "p50_ms": round(float(np.percentile(inside, 50)), 2),
        "p99_ms": round(float(np.percentile(inside, 99)), 2),
        "max_ms": round(float(inside.max()), 2),
    }


# --- the phases: each returns what its clients got -----------------------------------------
def _flood(port: int, head: bytes, chunk: bytes, total: int) -> dict[str, Any]:
    """Send `head`, then `chunk` until `total` bytes or until the server closes; the status it
    answered, the seconds to it and the MB sent before it closed."""
    started = time.perf_counter()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        try:
            while sent < total:
                connection.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = connection.recv(4096)
    return {
        "status": int(answer.split(b" ")[1]) if answer else None,
        "seconds": round(time.perf_counter() - started, 3),
        "mb_sent_before_close": round(sent / MB, 2),
    }


def _big_body(port: int) -> dict[str, Any]:
    """An unauthenticated 100 MB POST /v1/events."""
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {100 * MB}\r\n\r\n".encode()
    )
    return _flood(port, head, b" " * MB, 100 * MB)


def _big_header(port: int) -> dict[str, Any]:
    """A request with a 50 MB header."""
    head = b"GET /health/live HTTP/1.1\r\nHost: bench\r\nX-Big: "
    return _flood(port, head, b"a" * 65536, 50 * MB)


def _slowloris(port: int, connections: int = 100, seconds: float = 60.0) -> dict[str, Any]:
    """`connections` clients each dripping a byte every 0.5 s; how long the server kept them."""
    request = b"GET /health/live HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 10_000
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]
    opened = time.perf_counter()
    closed_after: list[float] = []
    position = 0
    alive = list(sockets)
    while alive and time.perf_counter() - opened < seconds:
        for connection in list(alive):
            try:
                connection.sendall(request[position : position + 1])
            except OSError:
                closed_after.append(time.perf_counter() - opened)
                alive.remove(connection)
        position += 1
        time.sleep(0.5)
    for connection in sockets:
        connection.close()
    return {
        "connections": connections,
        "still_open_after_s": seconds if alive else None,
        "cut_off_after_s_median": round(float(np.median(closed_after)), 1)
        if closed_after
        else None,
        "cut_off": len(closed_after),
    }


def _event_post(port: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A legitimate crm post of `rows` purchases; its status and seconds."""
    import httpx

    started = time.perf_counter()
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/events",
        json={"purchases": rows},
        headers={"X-API-Key": KEYS["crm"]},
        timeout=120,
    )
    return {"status": answer.status_code, "seconds": round(time.perf_counter() - started, 3)}


def main() -> int:
    """Run the phases and write benchmarks/results/limits.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--workdir", default=None, help="keep the shop and store here (reused)")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="patronage-bench-limits-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shop_dir, uri, setup_seconds = prepare(workdir, args.customers, args.items, 30.0)

    import pandas as pd

    purchases = pd.read_parquet(shop_dir / "purchases.parquet", columns=["customer_id", "item_id"])
    rng = np.random.default_rng(0)
    customers = rng.permutation(purchases["customer_id"].astype(str).unique())[:2000].tolist()
    items = purchases["item_id"].astype(str).unique().tolist()
    rows = [
        {
            "order_id": f"bench-{i // 3}",
            "customer_id": customers[(i // 3) % len(customers)],
            "item_id": items[i % len(items)],
            "quantity": 1,
            "ordered_at": "2026-01-05T08:30:00Z",
        }
        for i in range(10_000)
    ]

    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=uri,
        PATRONAGE_API_KEYS=",".join(f"{s}={k}" for s, k in KEYS.items()),
        PATRONAGE_EVENTS_DIR=str(workdir / "events"),
        OPENBLAS_NUM_THREADS="1",
    )
    port = _free_port()
    log = workdir / "patronage-serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "patronage", "serve", "--port", str(port), "--workers", "1",
         "--poll-seconds", "0", "--shop", SHOP],
        cwd=workdir, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    phases: list[dict[str, Any]] = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/health/ready", server, 900, log)
        _wait_precomputed(port, server, 1800)
        stop = context.Event()
        health_out = str(workdir / "health.json")
        recs_out = str(workdir / "recommendations.json")
        probes = [
            context.Process(target=_probe, args=(port, _request("/health/live"), stop, health_out)),
            context.Process(
                target=_probe,
                args=(
                    port,
                    _request(
                        f"/v1/customers/{customers[0]}/recommendations?k=10", KEYS["storefront"]
                    ),
                    stop,
                    recs_out,
                ),
            ),
        ]
        for probe in probes:
            probe.start()
        time.sleep(2.0)  # the probes connect and warm up
        plan: list[tuple[str, Callable[[], Any]]] = [
            ("quiet", lambda: _quiet(5.0)),
            ("big_bodies", lambda: _repeat(lambda: _in_threads([lambda: _big_body(port)] * 3))),
            ("big_header", lambda: _repeat(lambda: [_big_header(port)])),
            ("slowloris", lambda: _slowloris(port)),
            ("event_post_10k", lambda: _event_post(port, rows)),
            ("quiet_after", lambda: _quiet(5.0)),
        ]
        windows: list[tuple[str, float, float, float, float, Any]] = []
        for name, action in plan:
            before = _rss_mb(server.pid)
            with _RssPeak(server.pid) as rss:
                start = time.time()
                outcome = action()
                end = time.time()
            windows.append((name, start, end, before, rss.peak, outcome))
            print(f"[limits] {name}: {outcome} rss {before:.0f} -> peak {rss.peak:.0f} MiB")
        stop.set()
        for probe in probes:
            probe.join(60)
        health = json.loads(Path(health_out).read_text())
        recommendations = json.loads(Path(recs_out).read_text())
        for name, start, end, before, peak, outcome in windows:
            phases.append(
                {
                    "phase": name,
                    "seconds": round(end - start, 1),
                    "rss_before_mb": round(before),
                    "rss_rise_mb": round(peak - before, 1),
                    "health": _latencies(health, start, end),
                    "recommendations": _latencies(recommendations, start, end),
                    "outcome": outcome,
                }
            )
    finally:
        _stop(server)

    by_name = {p["phase"]: p for p in phases}
    bodies = by_name["big_bodies"]["outcome"]
    header = by_name["big_header"]["outcome"]
    checks = {
        "100 MB unauthenticated bodies answer 413": bodies["statuses"] == [413],
        f"RSS rises <= {RSS_RISE_TARGET_MB:g} MB during them": by_name["big_bodies"]["rss_rise_mb"]
        <= RSS_RISE_TARGET_MB,
        "50 MB headers refused (431) within 1 s": header["statuses"] == [431]
        and header["max_seconds"] < 1.0,
        "slowloris connections all cut off": by_name["slowloris"]["outcome"]["still_open_after_s"]
        is None,
        f"/health/live p99 < {HEALTH_P99_TARGET_MS:g} ms in every phase": all(
            p["health"].get("p99_ms", 1e9) < HEALTH_P99_TARGET_MS for p in phases
        ),
    }
    rows_out = [
        {
            "phase": p["phase"],
            "s": p["seconds"],
            "RSS before MiB": p["rss_before_mb"],
            "RSS rise MiB": p["rss_rise_mb"],
            "health p50 ms": p["health"].get("p50_ms"),
            "health p99 ms": p["health"].get("p99_ms"),
            "health max ms": p["health"].get("max_ms"),
            "recs p50 ms": p["recommendations"].get("p50_ms"),
            "recs p99 ms": p["recommendations"].get("p99_ms"),
            "recs max ms": p["recommendations"].get("max_ms"),
        }
        for p in phases
    ]
    result = {
        "title": "Scoring service under abusive and heavy clients: memory and others' latency",
        "command": " ".join(["python -m benchmarks.limits", *sys.argv[1:]]),
        "notes": [
            f"Shop: {args.customers:,} customers x {args.items:,} items (generated, seed 0), "
            "`patronage serve --workers 1` with the default limits (16 MiB body, 64 KiB "
            "header, 15 s request read timeout).",
            "Two probe processes ask back to back over one keep-alive connection each: "
            "`GET /health/live` and a known customer's recommendations (k=10). Each phase's "
            "latencies are the probe requests started during it; RSS is the server's resident "
            "memory, sampled every 5 ms, peak during the phase minus the level before it.",
            "Phases: three 100 MB unauthenticated event posts at once, again and again for 5 s; "
            "a request with a 50 MB header, again and again for 5 s; 100 "
            "connections dripping a byte each every 0.5 s; a legitimate 10,000-row crm event "
            "post. Targets: "
            + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()),
        ],
        "tables": {"Phases": rows_out},
        "targets_met": checks,
        "phases": phases,
        "setup_seconds": setup_seconds,
    }
    write_result(RESULT_PATH, result)
    print(json.dumps(checks, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _repeat(attack: Callable[[], list[dict[str, Any]]], seconds: float = 5.0) -> dict[str, Any]:
    """Repeat `attack` (a list of client outcomes per go) for `seconds`; a summary of them all
    (one go lasts a few milliseconds: too short for the probes to see alone)."""
    outcomes: list[dict[str, Any]] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        outcomes += attack()
    return {
        "requests": len(outcomes),
        "statuses": sorted({o["status"] for o in outcomes}, key=str),
        "max_seconds": max(o["seconds"] for o in outcomes),
        "max_mb_sent_before_close": max(o["mb_sent_before_close"] for o in outcomes),
    }


def _quiet(seconds: float) -> dict[str, Any]:
    """Do nothing for `seconds` (the reference phase)."""
    time.sleep(seconds)
    return {}


def _in_threads(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run the actions at once, one thread each; their results in order."""
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


if __name__ == "__main__":
    sys.exit(main())
