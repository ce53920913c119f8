"""Posting 1,000 events per second, durably: does a real `patronage serve` keep up?

A real `patronage serve` on 127.0.0.1 (events only, one worker; the same start as
`benchmarks.crash`), and a paced client: every second one `POST /v1/events` of 1,000 events
(`--batch`: 60% impressions, 30% clicks, 10% purchase lines, a storefront's mix, batched as a
storefront's event buffer would), from two threads taking turns, for `--seconds` (60). Every
answer must be a 201, which means fsynced. Sustained means: the events acknowledged per second
from the first scheduled post to the last answer (a backlog left at the end counts against it)
reach 98% of the target; how far the client ever fell behind its schedule is reported. Then the
same batches as fast as two threads can post them, for 20 s: the capacity. Finally every
acknowledged impression must be in what the online metrics read (`read_online_events`).

`python -m benchmarks.event_rate` writes benchmarks/results/event_rate.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.crash import start_events_server
from benchmarks.report import RESULTS_DIR, write_result

RESULT_PATH = RESULTS_DIR / "event_rate.json"
MIX = {"impressions": 0.6, "clicks": 0.3, "purchases": 0.1}


def batch(name: str, size: int) -> dict[str, list[dict[str, Any]]]:
    """One request's `size` events in the `MIX`, with ids unique to `name`."""
    shown = "2026-01-05T08:00:00Z"
    shown_count, click_count = round(size * MIX["impressions"]), round(size * MIX["clicks"])
    purchase_count = size - shown_count - click_count
    impressions = [
        {"recommendation_id": f"{name}-r{n}", "customer_id": f"customer-{n}",
         "items": [f"item-{n % 50}", f"item-{(n + 1) % 50}", f"item-{(n + 2) % 50}"],
         "shown_at": shown}
        for n in range(shown_count)
    ]  # fmt: skip
    clicks = [
        {"recommendation_id": f"{name}-r{n}", "item_id": f"item-{n % 50}",
         "clicked_at": "2026-01-05T08:00:10Z"}
        for n in range(click_count)
    ]  # fmt: skip
    purchases = [
        {"order_id": f"{name}-o{n}", "customer_id": f"customer-{n}", "item_id": f"item-{n % 50}",
         "quantity": 1, "unit_price": 9.5, "ordered_at": "2026-01-05T08:01:00Z"}
        for n in range(purchase_count)
    ]  # fmt: skip
    return {"impressions": impressions, "clicks": clicks, "purchases": purchases}


@dataclass
class Phase:
    """What one phase of posting achieved."""

    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0
    most_behind_s: float = 0.0
    elapsed_s: float = 0.0
    """From the first scheduled post to the last answer (a backlog at the end counts)."""
    impressions: set[str] = field(default_factory=set)

    def summary(self, seconds: float, size: int) -> dict[str, Any]:
        """Events per second acknowledged, latency percentiles (ms), refusals."""
        ms = np.asarray(self.latencies_ms or [np.nan])
        return {
            "events_per_post": size,
            "posts_acknowledged": len(self.latencies_ms),
            "events_per_s": round(len(self.latencies_ms) * size / (self.elapsed_s or seconds), 1),
            "post_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "post_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "posts_refused": self.refused,
            "most_behind_schedule_s": round(self.most_behind_s, 3),
            "finished_after_s": round(self.elapsed_s, 2),
        }


def _post(http: Any, name: str, size: int, phase: Phase, lock: threading.Lock) -> None:
    body = batch(name, size)
    started = time.perf_counter()
    answer = http.post("/v1/events", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    with lock:
        if answer.status_code == 201:
            phase.latencies_ms.append(elapsed)
            phase.impressions.update(r["recommendation_id"] for r in body["impressions"])
        else:
            phase.refused += 1


def paced(url: str, seconds: float, per_second: float, size: int, tag: str) -> Phase:
    """Post one batch every 1/`per_second` s (two threads taking turns) for `seconds`."""
    import httpx

    phase, lock = Phase(), threading.Lock()
    start = time.perf_counter() + 0.2
    posts = int(seconds * per_second)

    def worker(parity: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for n in range(parity, posts, 2):
                due = start + n / per_second
                now = time.perf_counter()
                if now < due:
                    time.sleep(due - now)
                else:
                    with lock:
                        phase.most_behind_s = max(phase.most_behind_s, now - due)
                _post(http, f"{tag}-{n}", size, phase, lock)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.elapsed_s = time.perf_counter() - start
    return phase


def flat_out(url: str, seconds: float, size: int, tag: str) -> Phase:
    """Post batches back to back from two threads for `seconds`."""
    import httpx

    phase, lock = Phase(), threading.Lock()
    end = time.perf_counter() + seconds

    def worker(parity: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            n = parity
            while time.perf_counter() < end:
                _post(http, f"{tag}-{n}", size, phase, lock)
                n += 2

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.elapsed_s = seconds
    return phase


def main() -> int:
    """Run both phases and write benchmarks/results/event_rate.json; exit 1 when not sustained."""
    from features.online_metrics import read_online_events

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", type=float, default=1000.0, help="events per second")
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    args = parser.parse_args()
    per_second = args.target / args.batch
    with tempfile.TemporaryDirectory(prefix="patronage-bench-events-") as directory:
        workdir = Path(directory)
        events_dir = workdir / "events"
        process, url = start_events_server(events_dir, workdir, workdir / "serve.log")
        try:
            paced_phase = paced(url, args.seconds, per_second, args.batch, "paced")
            capacity_seconds = 20.0
            fast_phase = flat_out(url, capacity_seconds, args.batch, "fast")
        finally:
            process.terminate()
            process.wait(15)
        stored = set(read_online_events(events_dir).impressions)
        log_bytes = sum(p.stat().st_size for p in events_dir.glob("events-*.jsonl"))
    acknowledged = paced_phase.impressions | fast_phase.impressions
    missing = len(acknowledged - stored)
    sustained = paced_phase.summary(args.seconds, args.batch)
    capacity = fast_phase.summary(capacity_seconds, args.batch)
    ok = (
        sustained["events_per_s"] >= 0.98 * args.target
        and paced_phase.refused == 0
        and missing == 0
    )
    result: dict[str, Any] = {
        "title": "Events per second, durably (impressions, clicks, purchases)",
        "command": " ".join(["python -m benchmarks.event_rate", *sys.argv[1:]]),
        "notes": [
            f"One `patronage serve` worker (events only) on this 2-core machine; every 201 is "
            f"fsynced. Paced: {args.batch} events per request (60% impressions, 30% clicks, 10% "
            f"purchase lines), {per_second:g} requests per second from two "
            f"threads, for {args.seconds:g} s: {sustained['events_per_s']:,} events/s "
            f"acknowledged (target {args.target:,.0f}), post p99 {sustained['post_p99_ms']} ms, "
            f"at most {sustained['most_behind_schedule_s']} s behind schedule, the last answer "
            f"{sustained['finished_after_s']} s after the first post: "
            + ("sustained." if ok else "NOT SUSTAINED."),
            f"Flat out (two threads, back to back, {capacity_seconds:g} s): "
            f"{capacity['events_per_s']:,} events/s, post p50 {capacity['post_p50_ms']} ms.",
            f"{len(acknowledged):,} impressions acknowledged, {missing} missing from what the "
            f"online metrics read; the log grew to {log_bytes / 1e6:.1f} MB. The machine is "
            f"shared: load average {os.getloadavg()[0]:.1f} (1 min) at the end of the run.",
        ],
        "tables": {
            "posting": [
                {"phase": "paced", **sustained},
                {"phase": "flat out", **capacity},
            ]
        },
        "target_events_per_s": args.target,
        "sustained": ok,
        "impressions_missing": missing,
        "log_mb": round(log_bytes / 1e6, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    write_result(RESULT_PATH, result)
    print("\n".join(result["notes"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
