"""Bulk CRM scores at scale: fit the customer scorer and score every customer of a big shop.

What `patronage score --fit` (and the training pipeline's churn/loyalty step) costs for a shop of
`--customers` customers (default 1M, 50k items, about 10M purchase lines, generated once in
Parquet by `features.sample_shop.generate_shop`, seed 0): the churn model's rolling cut-offs
(features and BG/NBD at each), the bagged trees, BG/NBD and Gamma-Gamma at `as_of`, then the
score table with up to three reasons per customer at medium or high churn risk (the low tier
gets none). `as_of` = 90 days before the end of the data,
horizon 90 days. Runs in one child process (peak resident memory of that child, reading
included), OpenMP and BLAS at one thread as in production defaults. No target is set by an
issue; the figures say what a nightly bulk run costs on the 2-core machine.

Usage: python -m benchmarks.scores_scale [--customers N] [--items M] [--keep DIR]
Writes benchmarks/results/scores_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.report import write_result

RESULT_PATH = Path(__file__).resolve().parent / "results" / "scores_scale.json"
DAYS = 365
START = pd.Timestamp("2025-01-01", tz="UTC")
AS_OF = START + pd.Timedelta(days=DAYS - 90)
HORIZON_DAYS = 90


def measure(shop_dir: Path) -> dict:
    """Fit and score in this process; seconds per step and the churn of the scored table."""
    from threadpoolctl import threadpool_limits

    from benchmarks.features_scale import read_shop
    from models.customer_scores import CustomerScorer

    with threadpool_limits(1):
        started = time.perf_counter()
        shop = read_shop(shop_dir)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        scorer = CustomerScorer().fit(shop, AS_OF, churn_horizon_days=HORIZON_DAYS, seed=0)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        table = scorer.score(shop, AS_OF)
        score_seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "purchase_lines": int(len(shop.purchases)),
        "customers_scored": int(len(table)),
        "training_cutoffs": len(scorer.cutoffs_),
        "read_seconds": round(read_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "score_seconds": round(score_seconds, 1),
        "customers_per_second_scored": round(len(table) / score_seconds),
        "peak_gib": round(peak, 2),
        "mean_churn_probability": round(float(table["churn_probability"].mean()), 4),
        "with_reasons_share": round(float((table["churn_reasons"] != "").mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse `--keep`), measure in a child process, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--keep", default=None, help="generate into / reuse this folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(Path(args.child))), flush=True)
        return 0

    from features.sample_shop import generate_shop

    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="patronage-scores-")
    shop_dir = Path(args.keep or scratch.name) / "shop"  # type: ignore[union-attr]
    if not (shop_dir / "purchases.parquet").exists():
        print(f"[scores_scale] generating {args.customers:,} x {args.items:,}", flush=True)
        generate_shop(shop_dir, customers=args.customers, items=args.items, days=DAYS, seed=0,
                      file_format="parquet")  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print("[scores_scale] fitting and scoring in a child process", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scores_scale", "--child", str(shop_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        return 1
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "title": "Bulk CRM scores at scale (fit + score every customer)",
        "command": "python -m benchmarks.scores_scale",
        "notes": [
            f"Shop: generate_shop(customers={args.customers:,}, items={args.items:,}, "
            f"days={DAYS}, seed=0), Parquet; as_of {AS_OF:%Y-%m-%d}, horizon {HORIZON_DAYS} days.",
            "fit = CustomerScorer.fit (six churn cut-offs: features and BG/NBD at each, five "
            "bagged tree models; BG/NBD, Gamma-Gamma and RFM at as_of); score = the full score "
            "table with up to three reasons per medium- or high-risk customer (the low tier gets "
            "none). One child process, one thread.",
            "No issue sets a target here; measured on the shared 2-core machine.",
        ],
        "tables": {"Bulk scores": [{"customers": args.customers, **figures}]},
        "figures": figures,
    }
    write_result(RESULT_PATH, result)
    print(json.dumps(figures, indent=1))
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
