"""Batch scoring on Spark: customers scored per second per core on a local[2] session.

What `patronage score --engine spark` (features as Spark SQL, the scorer on each partition,
models.spark_scores) costs per customer, to extrapolate a cluster's size (docs/scale.md). A
shop of `--customers` customers (default 20,000; 2,000 items; 365 days; seed 0) is generated
in Parquet; a scorer is fitted on a smaller shop (`--fit-customers`, default 5,000: the fit is
not what is measured, and scoring is row-wise once fitted). On one local[2] session (UI off,
`--partitions` shuffle partitions, default 2), timed apart:

- session: the JVM and SparkSession start;
- tables: the shop's four tables handed to Spark (Arrow) and cached;
- features: the customer feature table computed by Spark SQL and cached (`count()`);
- scoring: `score_on_spark` over the cached features into Spark's no-op sink (every row
  computed, nothing written), i.e. Python workers, Arrow batches and `CustomerScorer.score`;
- the same `CustomerScorer.score` on the same features in this process, one thread (the
  plain-Python cost the Spark figure is compared with);
- parity: the collected Spark table against the in-process one (max abs difference).

Per core = per second / 2 (local[2]); the machine's 2 cores are shared, so the 1-minute load
average at the end is recorded. Usage: python -m benchmarks.spark_scoring [--customers N]
Writes benchmarks/results/spark_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.report import write_result

RESULT_PATH = Path(__file__).resolve().parent / "results" / "spark_scoring.json"
DAYS = 365
START = pd.Timestamp("2025-01-01", tz="UTC")
AS_OF = START + pd.Timedelta(days=DAYS - 90)
CORES = 2


def _timed(step: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = step()
    return value, time.perf_counter() - started


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by this process and every live descendant
    (the Spark JVM and its Python workers), read from /proc; with finished children that were
    waited for. Linux only. Unlike wall time it does not grow when other jobs share the cores."""
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents[int(entry.name)] = int(fields[1])
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name
        ticks[int(entry.name)] = sum(int(value) for value in fields[11:15])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _timed_cpu(step: Any) -> tuple[Any, float, float]:
    """(value, wall seconds, CPU seconds of this process tree) of `step()`."""
    cpu = tree_cpu_seconds()
    value, seconds = _timed(step)
    return value, seconds, tree_cpu_seconds() - cpu


def largest_difference(left: pd.DataFrame, right: pd.DataFrame) -> float:
    """Max abs difference over the float columns (inf when NaNs differ or a text differs)."""
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return float("inf")
    largest = 0.0
    for column in left.columns:
        if pd.api.types.is_float_dtype(left[column]):
            a, b = left[column].to_numpy(), right[column].to_numpy()
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                return float("inf")
            known = ~np.isnan(a)
            largest = max(largest, float(np.abs(a[known] - b[known]).max(initial=0.0)))
        elif not left[column].equals(right[column]):
            return float("inf")
    return largest


def measure(shop_dir: Path, fit_dir: Path, partitions: int) -> dict[str, Any]:
    """Fit on `fit_dir`, then time every Spark step over `shop_dir` (see the module doc)."""
    from threadpoolctl import threadpool_limits

    from benchmarks.features_scale import read_shop
    from features.customers import customer_features, spark_customer_frame
    from features.engines import connect, local_spark_session, spark_shop_tables
    from models.customer_scores import CustomerScorer
    from models.spark_scores import collected_scores, score_on_spark

    shop = read_shop(shop_dir)
    with threadpool_limits(1):
        scorer, fit_seconds = _timed(
            lambda: CustomerScorer().fit(read_shop(fit_dir), AS_OF, churn_horizon_days=90, seed=0)
        )
    session, session_seconds = _timed(lambda: local_spark_session(CORES, partitions))
    session.sparkContext.setLogLevel("ERROR")
    backend = connect("spark", session)
    started = time.perf_counter()
    with spark_shop_tables(backend, shop) as tables:
        tables_seconds = time.perf_counter() - started
        features = spark_customer_frame(backend, tables, AS_OF).cache()
        customers, features_seconds, features_cpu = _timed_cpu(features.count)
        scores = score_on_spark(scorer, features, AS_OF)
        _, warm_up_seconds = _timed(lambda: scores.limit(1).collect())
        _, scoring_seconds, scoring_cpu = _timed_cpu(
            lambda: scores.write.format("noop").mode("overwrite").save()
        )
        on_spark = collected_scores(scores)
        features.unpersist()
    session.stop()
    with threadpool_limits(1):
        local_features = customer_features(shop, AS_OF)
        in_process, in_process_seconds, in_process_cpu = _timed_cpu(
            lambda: scorer.score(local_features, AS_OF)
        )
    per_second = customers / scoring_seconds
    return {
        "customers_scored": int(customers),
        "purchase_lines": int(len(shop.purchases)),
        "spark_partitions": partitions,
        "fit_seconds_not_measured_part": round(fit_seconds, 1),
        "session_seconds": round(session_seconds, 1),
        "tables_seconds": round(tables_seconds, 1),
        "features_seconds": round(features_seconds, 1),
        "features_seconds_per_million_customers_per_core": round(
            features_seconds * CORES * 1e6 / customers, 1
        ),
        "features_cpu_seconds": round(features_cpu, 1),
        "features_cpu_seconds_per_million_customers": round(features_cpu * 1e6 / customers, 1),
        "python_workers_warm_up_seconds": round(warm_up_seconds, 1),
        "scoring_seconds": round(scoring_seconds, 1),
        "scored_per_second": round(per_second),
        "scored_per_second_per_core": round(per_second / CORES),
        "scoring_core_seconds_per_million_customers": round(CORES * 1e6 / per_second, 1),
        "scoring_cpu_seconds": round(scoring_cpu, 1),
        "scoring_cpu_seconds_per_million_customers": round(scoring_cpu * 1e6 / customers, 1),
        "scored_per_cpu_second": round(customers / scoring_cpu),
        "in_process_seconds": round(in_process_seconds, 1),
        "in_process_cpu_seconds": round(in_process_cpu, 1),
        "in_process_scored_per_cpu_second": round(len(in_process) / in_process_cpu),
        "in_process_scored_per_second_one_core": round(len(in_process) / in_process_seconds),
        "parity_max_abs_difference": largest_difference(in_process, on_spark),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Generate the shops (or reuse `--keep`), measure, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--fit-customers", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--keep", default=None, help="generate into / reuse this folder")
    args = parser.parse_args(argv)

    from features.sample_shop import generate_shop

    scratch = None if args.keep else tempfile.TemporaryDirectory(prefix="patronage-spark-")
    root = Path(args.keep or scratch.name)  # type: ignore[union-attr]
    shops = {"shop": args.customers, "fit": args.fit_customers}
    for name, customers in shops.items():
        if not (root / name / "purchases.parquet").exists():
            print(f"[spark_scoring] generating {name}: {customers:,} customers", flush=True)
            generate_shop(root / name, customers=customers, items=args.items, days=DAYS,
                          seed=0, file_format="parquet", overwrite=True)  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print("[spark_scoring] measuring on local[2]", flush=True)
    figures = measure(root / "shop", root / "fit", args.partitions)
    result = {
        "title": "Batch scoring on Spark (local[2]): customers per second per core",
        "command": "python -m benchmarks.spark_scoring",
        "notes": [
            f"Shop: generate_shop(customers={args.customers:,}, items={args.items:,}, "
            f"days={DAYS}, seed=0), Parquet; as_of {AS_OF:%Y-%m-%d}; the scorer fitted on a "
            f"{args.fit_customers:,}-customer shop of the same generator (not measured).",
            "scoring = models.spark_scores.score_on_spark over the cached Spark feature table "
            "into the no-op sink (Python workers already started: their start-up is "
            "python_workers_warm_up_seconds); per core = per second / 2.",
            "in_process = CustomerScorer.score on the same features in one Python thread, what "
            "`patronage score` does; parity_max_abs_difference compares the two tables.",
            "The machine's 2 cores are shared with other work (see load_average_1m_at_end), "
            "which stretches wall seconds; *_cpu_seconds add up the user + system CPU time of "
            "this process, the Spark JVM and its Python workers (/proc), which it does not.",
        ],
        "tables": {
            "Spark scoring": [
                {
                    key: figures[key]
                    for key in (
                        "customers_scored",
                        "features_seconds",
                        "features_cpu_seconds_per_million_customers",
                        "scoring_seconds",
                        "scored_per_second_per_core",
                        "scored_per_cpu_second",
                        "in_process_scored_per_cpu_second",
                        "parity_max_abs_difference",
                        "load_average_1m_at_end",
                    )
                }
            ]
        },
        "figures": figures,
    }
    write_result(RESULT_PATH, result)
    print(json.dumps(figures, indent=1))
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
