"""`kill -9` while clients post events: is every acknowledged row still there?

A real `patronage serve` on 127.0.0.1 (no models needed: events only), 8 client threads posting
small batches (purchases with unique order ids, one impression with a unique recommendation id
and a click on it), and a `SIGKILL` at a random moment (seeded) in each cycle. Every other
cycle a torn fragment (the start of a record, no newline: what a crash mid-write leaves) is
appended to the day's log and left in place. After the last cycle the server
starts once more; then every row that got a `201` must be in what training reads
(`read_event_log`, as `patronage train --events` does) and in the server's replay count, and
every acknowledged impression and click in what the online metrics read (`read_online_events`).

`python -m benchmarks.crash` runs 20 cycles and writes benchmarks/results/crash.json;
`tests/serving/test_crash.py` runs 2 cycles of the same code in `make test`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import RESULTS_DIR, write_result

RESULT_PATH = RESULTS_DIR / "crash.json"
TORN_FRAGMENT = b'{"event": "purchase", "received_at": "2026-'


@dataclass
class CrashRun:
    """What the cycles acknowledged and what survived them."""

    acknowledged: set[tuple[str, str]] = field(default_factory=set)
    """(order_id, item_id) of every row answered 201."""
    impressions: set[str] = field(default_factory=set)
    """recommendation_id of every impression answered 201 (each post clicks its first item)."""
    posts_acknowledged: int = 0
    posts_failed: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    """Answers other than 201, by status (each is a failure of the run: the posts are valid)."""
    torn_fragments: int = 0
    kill_after_s: list[float] = field(default_factory=list)
    read_back: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    missing_impressions: list[str] = field(default_factory=list)
    missing_clicks: list[str] = field(default_factory=list)
    replayed: int | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_events_server(
    events_dir: Path, workdir: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`patronage serve` serving events only (no model load); returns it when live."""
    import httpx

    port = _free_port()
    env = dict(
        os.environ,
        PATRONAGE_EVENTS_DIR=str(events_dir),
        PATRONAGE_LOAD_ON_START="false",
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'unused.db'}",
        PATRONAGE_EVENTS_FOLLOW_SECONDS="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "patronage", "serve", "--insecure-dev", "--port", str(port),
         "--poll-seconds", "0"],
        cwd=workdir, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"patronage serve exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"patronage serve not live within 120 s:\n{log.read_text()[-3000:]}")


def _client(
    url: str,
    name: str,
    stop: threading.Event,
    run: CrashRun,
    lock: threading.Lock,
    online: bool = True,
) -> None:
    """Post batches of 1 to 20 purchases (with `online`, also one impression and one click)
    until the server dies or `stop` is set. Without `online`: purchases only, what every event
    store keeps (the PostgreSQL store keeps no impressions or clicks yet)."""
    import httpx

    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    with httpx.Client(base_url=url, timeout=10) as http:
        number = 0
        while not stop.is_set():
            number += 1
            customer = f"customer-{rng.integers(1000)}"  # an order belongs to one customer
            rows = [
                {
                    "order_id": f"{name}-{number}",
                    "customer_id": customer,
                    "item_id": f"item-{line}",
                    "quantity": 1,
                    "ordered_at": "2026-01-05T08:30:00Z",
                }
                for line in range(int(rng.integers(1, 21)))
            ]
            shown = f"{name}-{number}-shown"
            impression = {
                "recommendation_id": shown,
                "customer_id": customer,
                "items": ["item-0", "item-1"],
                "shown_at": "2026-01-05T08:29:00Z",
            }
            click = {"recommendation_id": shown, "item_id": "item-0",
                     "clicked_at": "2026-01-05T08:29:30Z"}  # fmt: skip
            body: dict[str, list[Any]] = {"purchases": rows}
            if online:
                body |= {"impressions": [impression], "clicks": [click]}
            try:
                answer = http.post("/v1/events", json=body)
            except httpx.TransportError:
                with lock:
                    run.posts_failed += 1
                return  # the server is gone
            with lock:
                if answer.status_code == 201:
                    run.posts_acknowledged += 1
                    run.acknowledged.update((str(r["order_id"]), str(r["item_id"])) for r in rows)
                    if online:
                        run.impressions.add(shown)
                else:
                    run.refused[answer.status_code] = run.refused.get(answer.status_code, 0) + 1


def crash_cycles(workdir: Path, cycles: int, clients: int = 8, seed: int = 0) -> CrashRun:
    """Run `cycles` post-and-kill cycles in `workdir`, then restart once and read back."""
    from features.event_log import read_event_log
    from features.online_metrics import read_online_events

    events_dir = workdir / "events"
    log = workdir / "serve.log"
    rng = np.random.default_rng(seed)
    run = CrashRun()
    lock = threading.Lock()
    for cycle in range(cycles):
        process, url = start_events_server(events_dir, workdir, log)
        stop = threading.Event()
        threads = [
            threading.Thread(target=_client, args=(url, f"c{cycle}-t{t}", stop, run, lock))
            for t in range(clients)
        ]
        for thread in threads:
            thread.start()
        # The kill falls at a random moment after the first post of the cycle was answered (a
        # cold server's first answer can take a while on a busy machine).
        acknowledged_before = run.posts_acknowledged
        deadline = time.monotonic() + 60
        while run.posts_acknowledged == acknowledged_before and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_after = float(rng.uniform(0.3, 2.0))
        time.sleep(kill_after)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join(30)
        run.kill_after_s.append(round(kill_after, 2))
        if cycle % 2 == 1:
            today = events_dir / f"events-{datetime.now(UTC):%Y%m%d}.jsonl"
            with today.open("ab") as handle:
                handle.write(TORN_FRAGMENT)
            run.torn_fragments += 1
    marker = log.stat().st_size
    process, _ = start_events_server(events_dir, workdir, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.replayed is None:
            found = re.search(rb"replayed (\d+) event records", log.read_bytes()[marker:])
            if found:
                run.replayed = int(found.group(1))
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(15)
    purchases, _ = read_event_log(events_dir)
    stored = set(
        zip(purchases["order_id"].astype(str), purchases["item_id"].astype(str), strict=True)
    )
    run.read_back = len(stored)
    run.missing = sorted(run.acknowledged - stored)
    online = read_online_events(events_dir)
    run.missing_impressions = sorted(run.impressions - set(online.impressions))
    run.missing_clicks = sorted(run.impressions - {rid for rid, _ in online.clicks})
    return run


def main() -> int:
    """Run the cycles and write benchmarks/results/crash.json; exit 1 when a row was lost."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="patronage-bench-crash-") as directory:
        started = time.perf_counter()
        run = crash_cycles(Path(directory), args.cycles, args.clients)
        seconds = time.perf_counter() - started
    ok = (
        not run.missing
        and not run.missing_impressions
        and not run.missing_clicks
        and not run.refused
        and run.replayed is not None
        and run.replayed >= len(run.acknowledged)
    )
    result: dict[str, Any] = {
        "title": "Events through kill -9: every acknowledged row survives",
        "command": " ".join(["python -m benchmarks.crash", *sys.argv[1:]]),
        "notes": [
            f"{args.cycles} cycles of `patronage serve` (events only) with {args.clients} client "
            "threads posting 1 to 20 purchase rows, one impression and one click per request, "
            "killed with SIGKILL at a seeded "
            "random moment (0.3 to 2 s after the cycle's first answered post) in each; every "
            "other cycle a torn fragment is appended to the day's log and left there. Then one "
            "more start.",
            f"{len(run.acknowledged):,} rows acknowledged (201) in {run.posts_acknowledged:,} "
            f"posts; {len(run.missing)} of them missing from what training reads "
            f"(`read_event_log`: {run.read_back:,} rows); the server replayed "
            f"{run.replayed} records at the last start; {len(run.impressions):,} impressions and "
            f"as many clicks acknowledged, {len(run.missing_impressions)} impressions and "
            f"{len(run.missing_clicks)} clicks missing from what the online metrics read. "
            + ("Every acknowledged row survived." if ok else "ROWS WERE LOST."),
        ],
        "cycles": args.cycles,
        "clients": args.clients,
        "rows_acknowledged": len(run.acknowledged),
        "posts_acknowledged": run.posts_acknowledged,
        "posts_cut_by_the_kill": run.posts_failed,
        "posts_refused_by_status": run.refused,
        "torn_fragments_left": run.torn_fragments,
        "rows_read_back": run.read_back,
        "rows_missing": len(run.missing),
        "rows_replayed": run.replayed,
        "impressions_acknowledged": len(run.impressions),
        "impressions_missing": len(run.missing_impressions),
        "clicks_missing": len(run.missing_clicks),
        "kill_after_s": run.kill_after_s,
        "all_acknowledged_rows_survive": ok,
        "seconds": round(seconds, 1),
    }
    write_result(RESULT_PATH, result)
    print(result["notes"][1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
