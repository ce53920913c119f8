"""`make bench`: run every benchmark in its own process, then write BENCHMARKS.md.

Each benchmark module writes `benchmarks/results/<name>.json`; BENCHMARKS.md is assembled only
from those files, so every figure in it was produced by a benchmark run.
Usage: python -m benchmarks.run_all [--only NAME ...] [--report-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.report import RESULTS_DIR, write_report

BENCHMARKS: dict[str, list[str]] = {
    # name (= results/<name>.json) -> the module and its arguments
    "generate_scale": ["benchmarks.generate_scale"],
    "load_shop": ["benchmarks.load_shop"],
    "features_scale": ["benchmarks.features_scale"],
    "recommenders": ["benchmarks.recommenders"],
    "recommenders_scale": ["benchmarks.recommenders", "--scale"],
    "churn_cdnow": ["benchmarks.churn_cdnow"],
    "completejourney": ["benchmarks.completejourney"],
    "scores_scale": ["benchmarks.scores_scale"],
    "train_sample": ["benchmarks.train_sample"],
    "shops": ["benchmarks.shops"],
    "crash": ["benchmarks.crash"],
    "event_rate": ["benchmarks.event_rate"],
    "postgres_events": ["benchmarks.postgres_events"],
    "spark_scoring": ["benchmarks.spark_scoring"],
    "deployment": ["benchmarks.deployment"],
    "limits": ["benchmarks.limits"],
    "crm_console": ["benchmarks.crm_console"],
    "chain_effect": ["benchmarks.chain_effect"],
    "live": ["benchmarks.live"],
    # the setting of the published figures: 12 rounds of 6 s per route (the default is 8)
    "serving": ["benchmarks.serving", "--rounds", "12", "--seconds", "72"],
}


def run(names: list[str]) -> dict[str, int]:
    """Run the named benchmarks one after the other, each in its own process; returns their
    exit codes. An unknown name is refused before anything runs."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    codes: dict[str, int] = {}
    for name in names:
        started = time.perf_counter()
        print(f"[bench] {name}: running", flush=True)
        codes[name] = subprocess.call([sys.executable, "-m", *BENCHMARKS[name]], env=env)
        elapsed = time.perf_counter() - started
        print(f"[bench] {name}: exit {codes[name]} after {elapsed:.0f} s", flush=True)
    return codes


def main() -> int:
    """Run the benchmarks and write BENCHMARKS.md; exit 1 if any benchmark failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    codes = {} if args.report_only else run(list(args.only or BENCHMARKS))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = write_report()
    print(f"[bench] wrote {path}")
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
