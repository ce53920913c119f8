"""Benchmark the scoring service: requests per second and p50/p99 latency on loopback.

One run: generate a shop of 100k customers and 50k items, train it with the training pipeline
into a temporary MLflow store, start `patronage serve` (1 worker) and, with the same settings,
`mlflow models serve` of the same churn champion; then drive each route with the same load
generator for the same time: `/health/live` (the server's own no-op ceiling), recommendations,
cross-sell, churn and loyalty, and churn through `mlflow models serve`.

The load generator is built for low client cost (the client shares the 2 cores with the server):
keep-alive connections on raw sockets, requests pre-encoded, responses parsed by Content-Length;
`--connections` connections spread over `--client-processes` processes. `wrk` is used instead
when installed (`--wrk`), with the same connections and duration.
Usage: python -m benchmarks.serving [--customers N] [--items M] [--seconds S] [--quick]
Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import write_result
from models.registry_names import registered_name

RESULT_PATH = Path(__file__).resolve().parent / "results" / "serving.json"
KEYS = {"storefront": "bench-sf", "crm": "bench-crm", "admin": "bench-admin"}
TARGETS = {"recommendations": 0.6, "churn": 0.8, "loyalty": 0.8}
TARGET_VS_MLFLOW = 10.0


# --- load generator --------------------------------------------------------------------------
def _encode(method: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one HTTP/1.1 response (Content-Length framed) from `sock`; returns its status."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    status = int(head[9:12])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
            break
    total = end + 4 + length
    while len(buffer) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    del buffer[:total]
    return status


def _connection_loop(
    port: int, requests: list[bytes], start_at: int, deadline: float, warmup_until: float
) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    count = 0
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    n = len(requests)
    index = start_at
    clock = time.perf_counter
    try:
        while True:
            started = clock()
            if started >= deadline:
                break
            sock.sendall(requests[index % n])
            index += 1
            status = _read_response(sock, buffer)
            if started >= warmup_until:
                latencies.append(clock() - started)
                count += 1
                if status >= 400:
                    errors += 1
    finally:
        sock.close()
    return latencies, count, errors


def _client_process(args: tuple[int, list[bytes], int, int, float, float]) -> tuple[Any, ...]:
    port, requests, first, threads, seconds, warmup = args
    warmup_until = time.perf_counter() + warmup
    deadline = warmup_until + seconds
    results: list[tuple[list[float], int, int]] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        outcome = _connection_loop(port, requests, first + offset * 7919, deadline, warmup_until)
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    latencies = [x for r in results for x in r[0]]
    return latencies, sum(r[1] for r in results), sum(r[2] for r in results)


def drive(
    port: int,
    requests: list[bytes],
    seconds: float,
    connections: int,
    processes: int,
    warmup: float = 1.0,
) -> dict[str, float]:
    """Keep `connections` requests in flight for `seconds` (after `warmup`); throughput and
    latency percentiles (ms) of the measured part."""
    per_process = max(1, connections // processes)
    jobs = [(port, requests, p * 104729, per_process, seconds, warmup) for p in range(processes)]
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        outcomes = pool.map(_client_process, jobs)
    latencies = np.array([x for o in outcomes for x in o[0]])
    return summarise([latencies], sum(o[1] for o in outcomes), sum(o[2] for o in outcomes), seconds)


def summarise(
    latencies: list[np.ndarray], count: int, errors: int, seconds: float
) -> dict[str, Any]:
    """Throughput over `seconds` and pooled latency percentiles (ms)."""
    pooled = np.concatenate(latencies) if latencies else np.array([])
    return {
        "requests_per_second": round(count / seconds, 1),
        "p50_ms": round(float(np.percentile(pooled, 50)) * 1000, 3) if len(pooled) else None,
        "p99_ms": round(float(np.percentile(pooled, 99)) * 1000, 3) if len(pooled) else None,
        "requests": count,
        "errors": errors,
        "_latencies": pooled,
    }


def drive_wrk(
    port: int, method: str, paths: list[str], headers: dict[str, str], body: bytes | None,
    seconds: float, connections: int,
) -> dict[str, float]:  # fmt: skip
    """The same measurement with `wrk` (a Lua script cycles the paths)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    body_line = f"wrk.body = {json.dumps((body or b'').decode())}\n" if body else ""
    if body:
        header_lines += 'wrk.headers["Content-Type"] = "application/json"\n'
    paths_lua = ",".join(json.dumps(p) for p in paths[:2000])
    script.write(
        f'wrk.method = "{method}"\n{header_lines}{body_line}'
        f"local paths = {{{paths_lua}}}\nlocal i = 0\n"
        "request = function() i = i + 1; return wrk.format(nil, paths[(i % #paths) + 1]) end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"rps\\": %f, \\"p50\\": %f, \\"p99\\": %f, '
        '\\"errors\\": %d, \\"requests\\": %d}\\n", summary.requests / (summary.duration / 1e6), '
        "latency:percentile(50) / 1000, latency:percentile(99) / 1000, "
        "summary.errors.status + summary.errors.connect + summary.errors.read + "
        "summary.errors.write + summary.errors.timeout, summary.requests))\nend\n"
    )
    script.close()
    output = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s", "-s", script.name,
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in output.splitlines() if x.startswith("JSON "))
    figures = json.loads(line[5:])
    return {
        "requests_per_second": round(figures["rps"], 1),
        "p50_ms": round(figures["p50"], 3),
        "p99_ms": round(figures["p99"], 3),
        "requests": figures["requests"],
        "errors": figures["errors"],
    }


# --- set-up ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_precomputed(port: int, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait until the server's default recommendation lists are all precomputed; seconds."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError("server exited while precomputing")
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"X-API-Key": KEYS["admin"]}, timeout=5
        ).json()
        status = (answer.get("recommender_status") or {}).get("precomputed")
        if status is None or status["done"]:
            return time.perf_counter() - started
        time.sleep(1.0)
    raise RuntimeError(f"recommendations not precomputed within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def prepare(
    workdir: Path, customers: int, items: int, time_budget_s: float, seed: int = 0
) -> tuple[Path, str, dict[str, float]]:
    """Generate and train with the training's `seed` (skipped when `workdir` already holds both
    from an earlier run with `--workdir`); returns (shop dir, tracking URI, seconds per step)."""
    from features.sample_shop import generate_shop
    from training.pipeline import TrainOptions, train

    seconds: dict[str, float] = {}
    shop_dir = workdir / "shop"
    uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    if (workdir / "trained.json").exists():
        return shop_dir, uri, json.loads((workdir / "trained.json").read_text())
    started = time.perf_counter()
    generate_shop(shop_dir, customers=customers, items=items, days=365, seed=0,
                  file_format="parquet")  # fmt: skip
    seconds["generate"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    train(
        TrainOptions(
            directory=shop_dir,
            tracking_uri=uri,
            progress=False,
            time_budget_s=time_budget_s,
            shop=SHOP,
            seed=seed,
        )
    )
    seconds["train"] = round(time.perf_counter() - started, 1)
    (workdir / "trained.json").write_text(json.dumps(seconds))
    return shop_dir, uri, seconds


SHOP = "bench"
"""The shop name the benchmark trains and serves (its models are patronage.bench.ROLE)."""

Scenario = tuple[int, str, list[str], dict[str, str], list[bytes | None]]
"""(port, method, paths, headers, bodies) of one route's load."""


def _measure(scenario: Scenario, seconds: float, args: argparse.Namespace, use_wrk: bool) -> dict:
    """Drive one route for `seconds` with the run's load settings; its figures."""
    target, method, paths, headers, bodies = scenario
    if use_wrk and len(bodies) == 1:
        return drive_wrk(target, method, paths, headers, bodies[0], seconds, args.connections)
    requests = [
        _encode(method, paths[i % len(paths)], headers, bodies[i % len(bodies)])
        for i in range(max(len(paths), len(bodies)))
    ]
    return drive(target, requests, seconds, args.connections, args.client_processes)


def main() -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument(
        "--seconds",
        type=float,
        default=48.0,
        help="measured seconds per route (all rounds); 2 s per round measured too noisy",
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="routes are measured in interleaved rounds, so a change of machine load hits all",
    )
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--wrk", action="store_true", help="use wrk when installed")
    parser.add_argument("--quick", action="store_true", help="small shop, 3 s per route")
    parser.add_argument(
        "--workdir", default=None, help="keep the shop and store here (reused when present)"
    )
    parser.add_argument(
        "--time-budget", type=float, default=30.0, help="training's model-search budget, s"
    )
    args = parser.parse_args()
    if args.quick:
        args.customers, args.items, args.seconds = 5000, 500, 6.0
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    use_wrk = args.wrk and shutil.which("wrk") is not None

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="patronage-bench-serving-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"[serving] generating {args.customers} customers x {args.items} items, training",
          flush=True)  # fmt: skip
    shop_dir, uri, setup_seconds = prepare(workdir, args.customers, args.items, args.time_budget)
    print(f"[serving] set-up {setup_seconds}", flush=True)

    import pandas as pd

    purchases = pd.read_parquet(shop_dir / "purchases.parquet", columns=["customer_id", "item_id"])
    rng = np.random.default_rng(0)
    customer_ids = rng.permutation(purchases["customer_id"].astype(str).unique())[:2000].tolist()
    top_items = purchases["item_id"].astype(str).value_counts().index[:500].tolist()

    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=uri,
        PATRONAGE_API_KEYS=",".join(f"{s}={k}" for s, k in KEYS.items()),
        PATRONAGE_EVENTS_DIR=str(workdir / "events"),
        OPENBLAS_NUM_THREADS="1",
        # `mlflow models serve` runs `uvicorn` from PATH: use this environment's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    port = _free_port()
    server_log = workdir / "patronage-serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "patronage", "serve", "--port", str(port), "--workers", "1",
         "--poll-seconds", "0", "--shop", SHOP],
        cwd=workdir, env=env, stdout=server_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    mlflow_port = _free_port()
    mlflow_log = workdir / "mlflow-serve.log"
    mlflow_server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m",
         f"models:/{registered_name(SHOP, 'churn')}@champion", "--env-manager", "local",
         "-p", str(mlflow_port),
         "-h", "127.0.0.1", "-w", "1"],
        cwd=workdir, env=env, stdout=mlflow_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    try:
        ready_s = _wait_http(f"http://127.0.0.1:{port}/health/ready", server, 900, server_log)
        precompute_s = _wait_precomputed(port, server, 1800)
        mlflow_ready_s = _wait_http(
            f"http://127.0.0.1:{mlflow_port}/ping", mlflow_server, 600, mlflow_log
        )
        storefront = {"X-API-Key": KEYS["storefront"]}
        crm = {"X-API-Key": KEYS["crm"]}
        scenarios: dict[str, Scenario] = {
            "noop_health_live": (port, "GET", ["/health/live"], {}, [None]),
            "recommendations": (
                port, "GET", [f"/v1/customers/{c}/recommendations?k=10" for c in customer_ids],
                storefront, [None],
            ),
            "cross_sell": (
                port, "POST", ["/v1/recommendations/cross-sell"], storefront,
                [json.dumps({"items": [top_items[i % len(top_items)],
                                       top_items[(i * 7 + 3) % len(top_items)]], "k": 10})
                 .encode() for i in range(500)],
            ),
            "churn": (port, "GET", [f"/v1/customers/{c}/churn" for c in customer_ids], crm,
                      [None]),
            "loyalty": (port, "GET", [f"/v1/customers/{c}/loyalty" for c in customer_ids], crm,
                        [None]),
            "mlflow_models_serve_churn": (
                mlflow_port, "POST", ["/invocations"], {},
                [json.dumps({"dataframe_split": {"columns": ["customer_id"], "data": [[c]]}})
                 .encode() for c in customer_ids],
            ),
        }  # fmt: skip
        per_round = args.seconds / args.rounds
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        # Each route is measured right after a no-op slice of its own, and the routes run in a
        # seeded shuffled order per round: a route then meets the same machine load as the
        # no-op it is compared with, whatever its place in the round (in a fixed order the
        # last routes were compared with a no-op measured half a minute earlier).
        paired: dict[str, list[float]] = {name: [] for name in scenarios}
        order_rng = np.random.default_rng(0)
        routes = [name for name in scenarios if name != "noop_health_live"]
        for round_number in range(args.rounds):
            for name in order_rng.permutation(routes).tolist():
                for step in ("noop_health_live", name):
                    figures = _measure(scenarios[step], per_round, args, use_wrk)
                    rounds[step].append(figures)
                    shown = {k: v for k, v in figures.items() if not k.startswith("_")}
                    print(f"[serving] round {round_number + 1} {step}: {shown}", flush=True)
                noop_rps = rounds["noop_health_live"][-1]["requests_per_second"]
                paired[name].append(figures["requests_per_second"] / max(noop_rps, 1e-9))
        for name, measured in rounds.items():
            combined = summarise(
                [m["_latencies"] for m in measured if "_latencies" in m],
                sum(int(m["requests"]) for m in measured),
                sum(int(m["errors"]) for m in measured),
                per_round * len(measured),
            )
            combined.pop("_latencies")
            if use_wrk and "_latencies" not in measured[0]:  # wrk gives percentiles per round
                combined["p50_ms"] = float(np.median([m["p50_ms"] for m in measured]))
                combined["p99_ms"] = float(max(m["p99_ms"] for m in measured))
            combined["rps_per_round"] = [m["requests_per_second"] for m in measured]
            if name in paired and paired[name]:
                combined["x_noop_per_round"] = [round(r, 3) for r in paired[name]]
            results[name] = combined
    finally:
        _stop(server)
        _stop(mlflow_server)

    noop = results["noop_health_live"]["requests_per_second"]
    # Ratios per round (each route against the no-op slice measured just before it), then the
    # median over rounds: a burst of load from other work then skews one round, not all.
    ratios = {
        name: round(float(np.median(results[name]["x_noop_per_round"])), 3)
        for name in ("recommendations", "cross_sell", "churn", "loyalty")
    }
    vs_mlflow = round(
        float(
            np.median(
                [
                    mine / max(other, 1e-9)
                    for mine, other in zip(
                        results["churn"]["rps_per_round"],
                        results["mlflow_models_serve_churn"]["rps_per_round"],
                        strict=True,
                    )
                ]
            )
        ),
        1,
    )
    checks = {f"{name} >= {t}x no-op": ratios[name] >= t for name, t in TARGETS.items()}
    checks[f"churn >= {TARGET_VS_MLFLOW}x mlflow models serve"] = vs_mlflow >= TARGET_VS_MLFLOW
    rows = [
        {
            "route": name,
            **{k: v for k, v in figures.items() if k not in ("rps_per_round", "x_noop_per_round")},
            "x no-op": ratios.get(name, round(figures["requests_per_second"] / noop, 3)),
        }
        for name, figures in results.items()
    ]
    result = {
        "title": "Scoring service: throughput and latency on loopback",
        "command": " ".join(["python -m benchmarks.serving", *sys.argv[1:]]),
        "notes": [
            f"Shop: {args.customers:,} customers x {args.items:,} items (generated, seed 0), "
            "trained with the training pipeline; `patronage serve --workers 1` and "
            "`mlflow models serve -w 1 --env-manager local` of the same churn champion.",
            f"Load: {args.connections} keep-alive connections over {args.client_processes} "
            f"client processes ({'wrk' if use_wrk else 'raw-socket Python client'}), "
            f"{args.seconds:g} s measured per route in {args.rounds} interleaved rounds (1 s "
            f"warm-up each), on the same {os.cpu_count()}-core machine as the servers (shared "
            "with other work: compare ratios measured in the same run, not absolute figures).",
            "Recommendations ask the default question (k=10, non-repeatable excluded) for "
            "known customers, answered from the lists the server precomputes in the background "
            "after loading (the run waits until they are done); churn and loyalty from the "
            "score table held in memory. Cross-sell scores every basket live (no target).",
            "Ratios: median over rounds of (route req/s) / (req/s of the no-op slice measured "
            "just before it; routes in a seeded shuffled order per round); "
            "throughput and percentiles pool all rounds. "
            "Targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()),
        ],
        "tables": {"Routes": rows},
        "ratios_to_noop": ratios,
        "churn_vs_mlflow_models_serve": vs_mlflow,
        "targets_met": checks,
        "setup_seconds": {
            **setup_seconds,
            "server_ready": round(ready_s, 1),
            "precompute_after_ready": round(precompute_s, 1),
            "mlflow_ready": round(mlflow_ready_s, 1),
        },  # fmt: skip
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "routes": results,
    }
    write_result(RESULT_PATH, result)
    print(json.dumps({"ratios_to_noop": ratios, "churn_vs_mlflow": vs_mlflow, **checks}, indent=1))
    print(f"[serving] wrote {RESULT_PATH}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
