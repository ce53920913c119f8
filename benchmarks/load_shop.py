"""Benchmark `load_shop` (read + validate + canonical types) on large synthetic data directories.

Writes a shop of N purchase lines (default 10M; 1M customers, 50k items, 500k feedback rows,
about 0.1% bad rows of several kinds) as CSV and as Parquet, then loads each in a fresh child
process: wall time and peak resident memory. For reference, the same process first times a bare
`pandas.read_csv(engine="pyarrow")` of purchases (no validation), the floor any loader pays.
Usage: python -m benchmarks.load_shop [--lines N]
Writes benchmarks/results/load_shop.json.
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

import numpy as np

from benchmarks.report import write_result

RESULT_PATH = Path(__file__).resolve().parent / "results" / "load_shop.json"
TARGET_SECONDS = 60.0
BAD_EVERY = 997
"""One row in this many gets a defect (rotating through the kinds below)."""


def write_shop(directory: Path, lines: int, customers: int, items: int, file_format: str) -> dict:
    """A synthetic shop with `lines` purchase lines; returns how many rows were made bad."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    sizes = rng.geometric(0.4, size=lines)  # order sizes, mean 2.5 lines
    order_of_line = np.repeat(np.arange(lines), sizes)[:lines]
    orders = int(order_of_line[-1]) + 1
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    order_customer = rng.integers(0, customers, orders)
    order_time = start + np.sort(rng.integers(0, 365 * 86400, orders))

    def ids(prefix: str, numbers: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")

    quantity = pc.cast(pa.array(rng.integers(1, 5, lines)), pa.string())
    unit_price = pc.cast(pa.array(np.round(rng.uniform(1, 100, lines), 2)), pa.string())
    ordered_at = pc.strftime(
        pa.array(order_time[order_of_line], pa.timestamp("s", tz="UTC")), "%Y-%m-%dT%H:%M:%SZ"
    )
    bad = np.zeros(lines, dtype=bool)
    bad[::BAD_EVERY] = True
    kind = np.arange(lines) % 3
    quantity = pc.if_else(pa.array(bad & (kind == 0)), "0", quantity)
    unit_price = pc.if_else(pa.array(bad & (kind == 1)), "cheap", unit_price)
    ordered_at = pc.if_else(pa.array(bad & (kind == 2)), "01/02/2024", ordered_at)
    purchases = pa.table(
        {
            "order_id": ids("O", order_of_line),
            "customer_id": ids("C", order_customer[order_of_line]),
            "item_id": ids("I", rng.integers(0, items, lines)),
            "quantity": quantity,
            "unit_price": unit_price,
            "ordered_at": ordered_at,
            "channel": pa.array(np.array(["web", "app", "store"])[rng.integers(0, 3, lines)]),
        }
    )
    feedback_rows = max(lines // 20, 1)
    feedback_line = rng.integers(0, lines, feedback_rows)
    kinds = np.array(["rating", "review", "complaint", "return"])[rng.integers(0, 4, feedback_rows)]
    feedback = pa.table(
        {
            "customer_id": ids("C", order_customer[order_of_line[feedback_line]]),
            "created_at": pc.strftime(
                pa.array(
                    order_time[order_of_line[feedback_line]] + 86400, pa.timestamp("s", tz="UTC")
                ),
                "%Y-%m-%dT%H:%M:%SZ",
            ),
            "kind": pa.array(kinds),
            "item_id": purchases["item_id"].take(pa.array(feedback_line)),
            "order_id": purchases["order_id"].take(pa.array(feedback_line)),
            "rating": pa.array(rng.integers(1, 6, feedback_rows), mask=kinds != "rating"),
            "text": pa.array(np.full(feedback_rows, "fine, thanks"), mask=kinds == "rating"),
        }
    )
    item_table = pa.table(
        {
            "item_id": ids("I", np.arange(items)),
            "name": ids("Item ", np.arange(items)),
            "category": pa.array(np.array(["a", "b", "c"])[np.arange(items) % 3]),
            "price": pa.array(np.round(rng.uniform(1, 100, items), 2)),
            "available": pa.array(np.ones(items, dtype=bool)),
        }
    )
    for name, table in (("purchases", purchases), ("feedback", feedback), ("items", item_table)):
        if file_format == "csv":
            pcsv.write_csv(table, directory / f"{name}.csv")
        else:
            pq.write_table(table, directory / f"{name}.parquet")
    return {"purchase_lines": lines, "orders": orders, "planted_bad_rows": int(bad.sum())}


def measure_load(directory: Path) -> dict:
    """Load `directory` with `load_shop` in this process: seconds, peak RSS, counts."""
    import pandas as pd

    from features.loading import load_shop

    bare = None
    if (directory / "purchases.csv").exists():
        started = time.perf_counter()
        pd.read_csv(directory / "purchases.csv", engine="pyarrow", dtype=str)
        bare = round(time.perf_counter() - started, 2)
    load_average = os.getloadavg()[0]  # other jobs on the machine slow the wall time
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    loaded = load_shop(directory, as_of=pd.Timestamp("2025-06-01", tz="UTC"), max_reject_rate=0.05)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    purchases = loaded.report.tables["purchases"]
    return {
        "seconds": round(seconds, 2),
        "bare_read_csv_seconds": bare,
        "cpu_seconds": round(
            usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime, 1
        ),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "machine_load_average_1min": round(load_average, 1),
        "purchases_read": purchases.read,
        "purchases_rejected": purchases.rejected,
        "purchases_rejected_by_reason": purchases.rejected_by_reason,
        "feedback_read": loaded.report.tables["feedback"].read,
        "feedback_rejected": loaded.report.tables["feedback"].rejected,
    }


def main() -> int:
    """Generate each format, load it in a child process, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_load(args.child)))
        return 0
    rows = []
    for file_format in ("csv", "parquet"):
        with tempfile.TemporaryDirectory(prefix="patronage_load_") as scratch:
            directory = Path(scratch)
            started = time.perf_counter()
            made = write_shop(directory, args.lines, args.customers, args.items, file_format)
            print(
                f"wrote {file_format} in {time.perf_counter() - started:.1f} s: {made}", flush=True
            )
            size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
            command = [sys.executable, "-m", "benchmarks.load_shop", "--child", str(directory)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            by_reason = result.pop("purchases_rejected_by_reason")
            row = {"format": file_format, **made, "files_mib": round(size / 2**20), **result}
            row["purchase_reasons"] = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items()))
            print(row, flush=True)
            rows.append(row)
    full_scale = args.lines >= 10_000_000
    result = {
        "title": "Loading and validating a data directory (load_shop)",
        "command": "python -m benchmarks.load_shop",
        "notes": [
            f"Target: about 10M purchase lines validated in well under {TARGET_SECONDS:.0f} s.",
            "Synthetic shop: 1M customers, 50k items, feedback = 5% of the lines; one line in "
            f"{BAD_EVERY} made bad (quantity 0, unit price 'cheap', or a non-ISO date), plus "
            "whatever duplicate (order, item) lines the random draw makes.",
            "Each format loads in its own process; peak_rss_gib is its ru_maxrss. "
            "bare_read_csv_seconds: pandas.read_csv(engine='pyarrow', dtype=str) of purchases "
            "alone, no validation, for reference. cpu_seconds: user + system CPU time of the "
            "load_shop call (all threads); the machine is shared with other jobs, so wall "
            "seconds vary from run to run while CPU seconds move less.",
        ],
        "tables": {"load_shop": rows},
        "meets_target": bool(full_scale and all(r["seconds"] < TARGET_SECONDS for r in rows)),
    }
    write_result(RESULT_PATH, result)
    print(f"wrote {RESULT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
