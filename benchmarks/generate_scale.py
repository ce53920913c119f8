"""Benchmark `generate_shop`: time and peak memory at default size and at 1M x 50k x ~10M lines.

Each size runs in its own child process so its peak resident memory (ru_maxrss) is its own.
Also checks, on the default-size shop, that the planted churn is learnable but not trivial:
a gradient-boosted model on simple history features, cross-validated ROC-AUC.
Usage: python -m benchmarks.generate_scale [--customers N] [--items M] [--days D] [--format F]
Writes benchmarks/results/generate_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_result

RESULT_PATH = Path(__file__).resolve().parent / "results" / "generate_scale.json"
DEFAULT_SIZE = {"customers": 5000, "items": 500, "days": 365}
TARGET_SECONDS = 300.0
TARGET_PEAK_GIB = 8.0


def measure_one(out_dir: Path, customers: int, items: int, days: int, file_format: str) -> dict:
    """Generate one shop in this process; its wall time, peak RSS and what it wrote."""
    from features.sample_shop import generate_shop

    started = time.perf_counter()
    summary = generate_shop(
        out_dir, customers=customers, items=items, days=days, seed=0, file_format=file_format
    )
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    return {
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # the 2 cores are shared
        "customers": customers,
        "items": items,
        "days": days,
        "format": file_format,
        "orders": summary.orders,
        "purchase_lines": summary.purchase_lines,
        "feedback_rows": summary.feedback_rows,
        "leavers": summary.leavers,
        "complementary_pairs": summary.complementary_pairs,
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak_kib / 2**20, 3),
        "tables_mib": round(size / 2**20, 1),
    }


def run_child(size: dict[str, int], file_format: str, keep: Path | None = None) -> dict:
    """Run `measure_one` in a fresh Python process (so peak memory is this size's alone)."""
    out_dir = keep or Path(tempfile.mkdtemp(prefix="patronage_generate_")) / "shop"
    command = [sys.executable, "-m", "benchmarks.generate_scale", "--child", str(out_dir)]
    command += ["--customers", str(size["customers"]), "--items", str(size["items"])]
    command += ["--days", str(size["days"]), "--format", file_format]
    try:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    finally:
        if keep is None:
            shutil.rmtree(out_dir.parent, ignore_errors=True)
    return json.loads(output.strip().splitlines()[-1])


def churn_signal(directory: Path, horizon_days: int = 90) -> dict[str, Any]:
    """How well history before a cut-off predicts leaving in the next `horizon_days` days.

    Customers who bought before the cut-off and had not left yet; label from `_truth/leavers.csv`;
    features: recency, frequency, tenure, mean gap, complaints, returns, low ratings (5-fold CV)."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    purchases = pd.read_csv(directory / "purchases.csv", parse_dates=["ordered_at"])
    feedback = pd.read_csv(directory / "feedback.csv", parse_dates=["created_at"])
    leavers = pd.read_csv(directory / "_truth" / "leavers.csv", parse_dates=["left_at"])
    end = purchases["ordered_at"].max().ceil("D")
    as_of = end - pd.Timedelta(days=horizon_days)
    before = purchases[purchases["ordered_at"] < as_of]
    orders = before.drop_duplicates("order_id")
    per_customer = orders.groupby("customer_id")["ordered_at"].agg(["min", "max", "count"])
    left_at = leavers.set_index("customer_id")["left_at"].reindex(per_customer.index)

    days = pd.Timedelta(days=1)
    features = pd.DataFrame(index=per_customer.index)
    features["recency_days"] = (as_of - per_customer["max"]) / days
    features["orders"] = per_customer["count"]
    features["tenure_days"] = (as_of - per_customer["min"]) / days
    features["mean_gap_days"] = (
        (per_customer["max"] - per_customer["min"])
        / days
        / np.maximum(per_customer["count"] - 1, 1)
    )
    seen = feedback[feedback["created_at"] < as_of]
    unhappy_rows = seen[seen["kind"].isin(["complaint", "return"]) | (seen["rating"] <= 2)]
    for name, rows in {
        "complaints": seen[seen["kind"] == "complaint"],
        "returns": seen[seen["kind"] == "return"],
        "low_ratings": seen[seen["rating"] <= 2],
        "unhappy_last_60d": unhappy_rows[unhappy_rows["created_at"] >= as_of - 60 * days],
    }.items():
        features[name] = rows.groupby("customer_id").size().reindex(features.index).fillna(0)
    last_unhappy = unhappy_rows.groupby("customer_id")["created_at"].max()
    features["days_since_unhappy"] = (as_of - last_unhappy.reindex(features.index)) / days

    # What a shop sees: every customer with an order before the cut-off, quiet or not after it.
    later = purchases[purchases["ordered_at"] >= as_of]["customer_id"].unique()
    no_purchase = ~features.index.isin(later)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=0)
    with threadpool_limits(1):  # a shared 2-core machine: no OpenMP fan-out
        return _cross_validated_aucs(model, features, left_at, as_of, no_purchase, horizon_days)


def _cross_validated_aucs(
    model: Any,
    features: Any,
    left_at: Any,
    as_of: Any,
    no_purchase: Any,
    horizon_days: int,
) -> dict[str, Any]:
    """The AUC figures of `churn_signal` (5-fold cross-validated predictions)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    # The planted truth: among customers who have not left yet, who leaves within the horizon.
    still_here = ~(left_at < as_of).to_numpy()
    label = left_at.notna().to_numpy()[still_here]
    history = features[still_here]

    scores = cross_val_predict(model, history, label, cv=5, method="predict_proba")[:, 1]
    purchase_only = history[["recency_days", "orders", "tenure_days", "mean_gap_days"]]
    without_feedback = cross_val_predict(model, purchase_only, label, cv=5, method="predict_proba")[
        :, 1
    ]
    quiet_scores = cross_val_predict(model, features, no_purchase, cv=5, method="predict_proba")
    unhappy = history["days_since_unhappy"].notna().to_numpy()
    return {
        "as_of": str(as_of.date()),
        "horizon_days": horizon_days,
        "customers": int(len(features)),
        "customers_not_left": int(len(label)),
        "leave_rate": round(float(label.mean()), 4),
        "auc_boosted_history": round(float(roc_auc_score(label, scores)), 4),
        "auc_recency_alone": round(float(roc_auc_score(label, history["recency_days"])), 4),
        "auc_without_feedback": round(float(roc_auc_score(label, without_feedback)), 4),
        "no_purchase_rate": round(float(no_purchase.mean()), 4),
        "auc_no_purchase_label": round(float(roc_auc_score(no_purchase, quiet_scores[:, 1])), 4),
        "leave_rate_after_bad_experience": round(float(label[unhappy].mean()), 4),
        "leave_rate_without": round(float(label[~unhappy].mean()), 4),
    }


def main() -> int:
    """Run the default-size and the large-size generation, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--format", dest="file_format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure_one(args.child, args.customers, args.items, args.days, args.file_format)
        print(json.dumps(result))
        return 0

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    default = run_child(DEFAULT_SIZE, args.file_format)
    print(f"default size: {default}", flush=True)
    with tempfile.TemporaryDirectory(prefix="patronage_generate_") as scratch:
        from features.sample_shop import generate_shop

        # Big enough for a steady AUC (about 13k customers with history), still quick.
        generate_shop(Path(scratch), customers=20_000, items=2000, days=365, seed=0)
        signal = churn_signal(Path(scratch))
        print(f"churn signal: {signal}", flush=True)
    large_size = {"customers": args.customers, "items": args.items, "days": args.days}
    large = run_child(large_size, args.file_format)
    print(f"large size: {large}", flush=True)

    meets = large["seconds"] <= TARGET_SECONDS and large["peak_rss_gib"] <= TARGET_PEAK_GIB
    full_scale = args.customers >= 1_000_000 and args.items >= 50_000
    result = {
        "title": "Sample-shop generator: speed, memory and churn signal",
        "command": "python -m benchmarks.generate_scale",
        "notes": [
            f"Target: 1M customers x 50k items x ~10M lines within {TARGET_SECONDS:.0f} s and "
            f"{TARGET_PEAK_GIB:.0f} GiB; the default size in a few seconds.",
            "Each size runs in its own process; peak_rss_gib is that process's ru_maxrss "
            "(Python start-up and imports included).",
            "Churn signal (20k-customer shop, cut-off 90 days before the end): 5-fold "
            "cross-validated ROC-AUC of a boosted model on simple history features, for two "
            "labels: the planted truth (leaves within 90 days, among customers who have not "
            "left yet) and what a shop sees (no purchase within 90 days). Learnable means well "
            "above 0.5, not trivial means well below 1.",
        ],
        "tables": {
            "generation": [
                {"size": "default", **default},
                {"size": "large" if full_scale else "large (reduced)", **large},
            ],
            "churn signal": [signal],
        },
        "large_meets_target": bool(meets and full_scale),
    }
    write_result(RESULT_PATH, result)
    print(f"wrote {RESULT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
