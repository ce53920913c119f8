"""Benchmark customer features at scale: DuckDB (our Ibis expressions) against plain pandas.

A generated shop of `--customers` customers (default 1M, with 50k items and about 10M purchase
lines, `features.sample_shop.generate_shop` in Parquet) is written once; then each engine runs in
its own child process that reads the tables into a `Shop`, computes the customer features at
`as_of` = 90 days before the end and reports wall time (features only, not reading) and peak
resident memory (ru_maxrss of the whole child, reading included). The pandas version is an
equivalent groupby implementation of the same features (below); the two tables are compared
(counts exact, floats within 1e-9 relative) so the race is between equal answers.
Usage: python -m benchmarks.features_scale [--customers N] [--items M] [--keep DIR]
Writes benchmarks/results/features_scale.json.
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

import numpy as np
import pandas as pd

from benchmarks.report import write_result

RESULT_PATH = Path(__file__).resolve().parent / "results" / "features_scale.json"
TARGET_SECONDS = 60.0
TARGET_PEAK_GIB = 6.0
DAYS = 365
START = pd.Timestamp("2025-01-01", tz="UTC")
AS_OF = START + pd.Timedelta(days=DAYS - 90)


def read_shop(directory: Path):  # noqa: ANN201 - returns features.shop.Shop
    """The generated Parquet tables in canonical types (no validation: the generator is valid)."""
    import pyarrow.parquet as pq

    from features.shop import Shop

    frames = {}
    for name in ("purchases", "feedback", "items", "customers"):
        frame = pq.read_table(directory / f"{name}.parquet").to_pandas()
        for column in ("ordered_at", "created_at", "signed_up_at"):
            if column in frame.columns:
                frame[column] = frame[column].astype("datetime64[ns, UTC]")
        if "rating" in frame.columns:
            frame["rating"] = frame["rating"].astype("Int64")
        frames[name] = frame
    return Shop(**frames)


# ---- the pandas reference implementation ---------------------------------------------------


def _sum_if_known(values: pd.Series, keys: list[pd.Series] | pd.Series) -> pd.Series:
    """Group sums of `values` that are NaN when any value of the group is NaN."""
    grouped = values.groupby(keys, sort=False)
    unknown = values.isna().groupby(keys, sort=False).sum()
    return grouped.sum().where(unknown == 0)


def pandas_customer_features(shop, as_of: pd.Timestamp) -> pd.DataFrame:  # noqa: ANN001, C901
    """The customer features of `features.customers` written as pandas groupbys (reference)."""
    day_s = 86_400
    now = as_of.value // 10**9
    purchases = shop.purchases[shop.purchases["ordered_at"] < as_of]
    categories = shop.items.drop_duplicates("item_id").set_index("item_id")["category"]
    lines = pd.DataFrame(
        {
            "customer_id": purchases["customer_id"].to_numpy(),
            "order_id": purchases["order_id"].to_numpy(),
            "item_id": purchases["item_id"].to_numpy(),
            "quantity": purchases["quantity"].to_numpy(),
            "value": (purchases["quantity"] * purchases["unit_price"]).to_numpy(),
            "t": purchases["ordered_at"].to_numpy().astype("datetime64[s]").astype("int64"),
            "channel": purchases["channel"].to_numpy(),
        }
    )
    lines["day"] = lines["t"] // day_s
    lines["category"] = categories.reindex(lines["item_id"]).to_numpy()

    order_keys = [lines["customer_id"], lines["order_id"]]
    orders = pd.DataFrame(
        {
            "t": lines["t"].groupby(order_keys, sort=False).min(),
            "value": _sum_if_known(lines["value"], order_keys),
            "channel": lines["channel"].groupby(order_keys, sort=False).min(),
        }
    ).reset_index()
    by_customer = orders.groupby("customer_id", sort=True)
    out = pd.DataFrame(
        {
            "orders": by_customer.size(),
            "first_t": by_customer["t"].min(),
            "last_t": by_customer["t"].max(),
            "total_spend": _sum_if_known(orders["value"], orders["customer_id"]),
        }
    )

    def window_spend(start: int, end: int) -> pd.Series:
        inside = (orders["t"] >= start) & (orders["t"] < end)
        unknown = (inside & orders["value"].isna()).groupby(orders["customer_id"]).sum()
        spend = orders["value"].where(inside, 0.0).groupby(orders["customer_id"]).sum()
        return spend.where(unknown == 0)

    for days in (30, 90, 365):
        recent = orders["t"] >= now - days * day_s
        out[f"orders_last_{days}d"] = recent.groupby(orders["customer_id"]).sum()
        out[f"spend_last_{days}d"] = window_spend(now - days * day_s, now)
    out["spend_previous_90d"] = window_spend(now - 180 * day_s, now - 90 * day_s)

    ordered = orders.sort_values(["customer_id", "t", "order_id"])
    gaps = ordered["t"].diff().where(ordered["customer_id"].eq(ordered["customer_id"].shift()))
    out["order_gap_std_days"] = (
        (gaps / day_s).groupby(ordered["customer_id"]).std(ddof=0).where(out["orders"] > 1)
    )

    channels = sorted(orders["channel"].dropna().unique())
    known_channel = orders["channel"].notna().groupby(orders["customer_id"]).sum()
    channel_counts = orders.groupby(["customer_id", "channel"]).size()
    top_channel = channel_counts.groupby(level=0).max() / known_channel.replace(0, np.nan)
    for value in channels:
        count = (orders["channel"] == value).groupby(orders["customer_id"]).sum()
        out[f"channel_share_{value}"] = count / known_channel.replace(0, np.nan)
    out["top_channel_share"] = top_channel

    per_line = lines.groupby("customer_id", sort=True)
    out["purchase_lines"] = per_line.size()
    out["units"] = per_line["quantity"].sum()
    out["distinct_items"] = per_line["item_id"].nunique()
    known_category = lines["category"].notna().groupby(lines["customer_id"]).sum()
    out["distinct_categories"] = per_line["category"].nunique().where(known_category > 0)
    category_counts = lines.groupby(["customer_id", "category"]).size()
    out["top_category_share"] = category_counts.groupby(level=0).max() / (
        category_counts.groupby(level=0).sum()
    )
    item_orders = lines.groupby(["customer_id", "item_id"])["order_id"].nunique()
    out["repeat_item_share"] = (item_orders > 1).groupby(level=0).mean()

    day_keys = [lines["customer_id"], lines["day"]]
    days = _sum_if_known(lines["value"], day_keys).rename("value").reset_index()
    days.columns = ["customer_id", "day", "value"]
    first_day = days.groupby("customer_id")["day"].transform("min")
    repeat = days["day"] > first_day
    per_day = days.groupby("customer_id")
    out["btyd_frequency"] = per_day.size() - 1
    out["btyd_recency_days"] = (per_day["day"].max() - per_day["day"].min()).astype(float)
    last_day = (as_of.value - 1) // (day_s * 10**9)
    out["btyd_T_days"] = (last_day - per_day["day"].min()).astype(float)
    repeat_unknown = (repeat & days["value"].isna()).groupby(days["customer_id"]).sum()
    repeat_mean = days["value"].where(repeat).groupby(days["customer_id"]).mean()
    out["btyd_monetary_value"] = repeat_mean.where(repeat_unknown == 0)

    feedback = shop.feedback[shop.feedback["created_at"] < as_of]
    ft = feedback["created_at"].to_numpy().astype("datetime64[s]").astype("int64")
    complaint = (feedback["kind"] == "complaint").to_numpy()
    returned = (feedback["kind"] == "return").to_numpy()
    rating = feedback["rating"].astype("float64").to_numpy()
    notes = pd.DataFrame(
        {
            "customer_id": feedback["customer_id"].to_numpy(),
            "complaint": complaint,
            "recent_complaint": complaint & (ft >= now - 90 * day_s),
            "returned": returned,
            "rating": rating,
            "complaint_t": np.where(complaint, ft, np.nan),
            "negative": complaint | returned | (np.nan_to_num(rating, nan=99) <= 2),
        }
    )
    per_note = notes.groupby("customer_id")
    note_table = pd.DataFrame(
        {
            "feedback": per_note.size(),
            "returns": per_note["returned"].sum(),
            "ratings": per_note["rating"].count(),
            "rating_mean": per_note["rating"].mean(),
            "rating_min": per_note["rating"].min(),
            "complaints": per_note["complaint"].sum(),
            "complaints_last_90d": per_note["recent_complaint"].sum(),
            "last_complaint_t": per_note["complaint_t"].max(),
            "negative": per_note["negative"].sum(),
        }
    ).reindex(out.index)
    signed = shop.customers[["customer_id", "signed_up_at"]]
    signed = signed[signed["signed_up_at"] < as_of]
    signed_t = pd.Series(
        signed["signed_up_at"].to_numpy().astype("datetime64[s]").astype("int64"),
        index=signed["customer_id"].to_numpy(),
    )
    signed_t = signed_t.groupby(level=0).min().reindex(out.index)

    days_since_last = (now - out["last_t"]) / day_s
    gap_mean = ((out["last_t"] - out["first_t"]) / day_s / (out["orders"] - 1)).where(
        out["orders"] > 1
    )
    returns = note_table["returns"].fillna(0).astype("int64")
    feedback_count = note_table["feedback"].fillna(0).astype("int64")
    table = pd.DataFrame(
        {
            "orders": out["orders"],
            "purchase_lines": out["purchase_lines"],
            "units": out["units"],
            "days_since_last_order": days_since_last,
            "tenure_days": (now - out["first_t"]) / day_s,
            "days_since_signup": (now - signed_t) / day_s,
            "order_gap_mean_days": gap_mean,
            "order_gap_std_days": out["order_gap_std_days"],
            "overdue_ratio": days_since_last / gap_mean.replace(0.0, np.nan),
            **{f"orders_last_{d}d": out[f"orders_last_{d}d"] for d in (30, 90, 365)},
            "total_spend": out["total_spend"],
            "mean_order_value": out["total_spend"] / out["orders"],
            **{f"spend_last_{d}d": out[f"spend_last_{d}d"] for d in (30, 90, 365)},
            "spend_previous_90d": out["spend_previous_90d"],
            "spend_trend_90d_diff": out["spend_last_90d"] - out["spend_previous_90d"],
            "spend_trend_90d_ratio": out["spend_last_90d"]
            / out["spend_previous_90d"].replace(0.0, np.nan),
            "distinct_items": out["distinct_items"],
            "distinct_categories": out["distinct_categories"],
            "top_category_share": out["top_category_share"],
            "repeat_item_share": out["repeat_item_share"],
            "returns": returns,
            "return_rate": returns / out["purchase_lines"],
            "ratings": note_table["ratings"].fillna(0).astype("int64"),
            "rating_mean": note_table["rating_mean"],
            "rating_min": note_table["rating_min"],
            "complaints": note_table["complaints"].fillna(0).astype("int64"),
            "complaints_last_90d": note_table["complaints_last_90d"].fillna(0).astype("int64"),
            "days_since_last_complaint": (now - note_table["last_complaint_t"]) / day_s,
            "feedback": feedback_count,
            "negative_feedback_share": note_table["negative"] / feedback_count.replace(0, np.nan),
            "top_channel_share": out["top_channel_share"],
            **{f"channel_share_{value}": out[f"channel_share_{value}"] for value in channels},
            "btyd_frequency": out["btyd_frequency"],
            "btyd_recency_days": out["btyd_recency_days"],
            "btyd_T_days": out["btyd_T_days"],
            "btyd_monetary_value": out["btyd_monetary_value"],
        }
    )
    table.index.name = "customer_id"
    return table.reset_index()


# ---- measuring -----------------------------------------------------------------------------


def measure(engine: str, shop_dir: Path, out_path: Path) -> dict:
    """In this (child) process: read the shop, time the features on `engine`, write them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    shop = read_shop(shop_dir)
    rss_after_reading = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if engine == "duckdb":
        from features.customers import customer_features

        table = customer_features(shop, AS_OF)
    else:
        table = pandas_customer_features(shop, AS_OF)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table.to_parquet(out_path, index=False)
    return {
        "engine": engine,
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak_kib / 2**20, 3),
        "peak_rss_after_reading_gib": round(rss_after_reading / 2**20, 3),
        "customers": len(table),
        "columns": table.shape[1],
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def compare(duckdb_path: Path, pandas_path: Path) -> dict:
    """How far the pandas table is from the DuckDB one (same columns, counts, floats)."""
    ours = pd.read_parquet(duckdb_path)
    theirs = pd.read_parquet(pandas_path)
    theirs = theirs.sort_values("customer_id").reset_index(drop=True)[list(ours.columns)]
    assert (ours["customer_id"].to_numpy() == theirs["customer_id"].to_numpy()).all()
    worst_relative = 0.0
    mismatched: list[str] = []
    for column in ours.columns[1:]:
        left = ours[column].to_numpy(dtype="float64")
        right = theirs[column].to_numpy(dtype="float64")
        if not np.array_equal(np.isnan(left), np.isnan(right)):
            mismatched.append(column)
            continue
        both = ~np.isnan(left)
        left, right = left[both], right[both]
        # a difference of two sums (spend_trend_90d_diff) can be 0 on one side and 1e-14 on
        # the other: relative to the larger value, with 1e-9 (days, currency units) absolute
        close = np.isclose(right, left, rtol=1e-9, atol=1e-9)
        nonzero = np.maximum(np.abs(left), np.abs(right)) > 1e-9
        if nonzero.any():
            relative = (
                np.abs(left - right)[nonzero] / np.maximum(np.abs(left), np.abs(right))[nonzero]
            )
            worst_relative = max(worst_relative, float(relative.max()))
        if not close.all():
            mismatched.append(column)
    return {
        "same_table": not mismatched,
        "mismatched_columns": mismatched,
        "max_rel_err": worst_relative,
    }


def shop_size(shop_dir: Path) -> dict:
    """Rows of a shop generated earlier (`--keep`), from the Parquet metadata."""
    import pyarrow.parquet as pq

    rows = {
        name: pq.ParquetFile(shop_dir / f"{name}.parquet").metadata.num_rows
        for name in ("purchases", "feedback", "customers", "items")
    }
    return {
        "purchase_lines": rows["purchases"],
        "feedback_rows": rows["feedback"],
        "customers": rows["customers"],
        "items": rows["items"],
        "generated_earlier_in": str(shop_dir),
    }


def main(argv: list[str] | None = None) -> int:
    """Generate the shop once, time both engines in child processes, write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    parser.add_argument(
        "--child", nargs=3, metavar=("ENGINE", "SHOP", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        engine, shop_dir, out_path = args.child
        print(json.dumps(measure(engine, Path(shop_dir), Path(out_path))))
        return 0

    work = Path(tempfile.mkdtemp(prefix="patronage_features_scale_"))
    shop_dir = args.keep or work / "shop"
    try:
        generated = None
        if not (shop_dir / "purchases.parquet").exists():
            from features.sample_shop import generate_shop

            started = time.perf_counter()
            summary = generate_shop(
                shop_dir,
                customers=args.customers,
                items=args.items,
                days=DAYS,
                seed=0,
                file_format="parquet",
            )
            generated = {
                "orders": summary.orders,
                "purchase_lines": summary.purchase_lines,
                "feedback_rows": summary.feedback_rows,
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"[features_scale] generated {generated}", flush=True)
        runs = {}
        for engine in ("duckdb", "pandas"):
            out_path = work / f"{engine}.parquet"
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.features_scale", "--child", engine,
                 str(shop_dir), str(out_path)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            runs[engine] = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"[features_scale] {runs[engine]}", flush=True)
        agreement = compare(work / "duckdb.parquet", work / "pandas.parquet")
        print(f"[features_scale] agreement {agreement}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    duckdb_run, pandas_run = runs["duckdb"], runs["pandas"]
    result = {
        "title": "Customer features at scale: DuckDB (Ibis) vs pandas",
        "command": "python -m benchmarks.features_scale"
        + ("" if args.customers == 1_000_000 else f" --customers {args.customers}"),
        "notes": [
            f"Shop: generate_shop(customers={args.customers:,}, items={args.items:,}, days={DAYS}, "
            f"seed=0, parquet); features at as_of={AS_OF.date()} (90 days before the end).",
            "Each engine runs in its own process; seconds = feature computation only (tables "
            "already in pandas); peak_rss_gib = ru_maxrss of that process, reading included.",
            f"Targets: DuckDB <= {TARGET_SECONDS:.0f} s and <= {TARGET_PEAK_GIB:.0f} GiB, faster "
            "than pandas. The machine's 2 cores are shared: see load_average_1m_at_end.",
            "The pandas table is checked against the DuckDB one: counts exact, floats within "
            "1e-9 relative or 1e-9 absolute (same_table; max_rel_err over values above 1e-9).",
        ],
        "tables": {"engines": [duckdb_run, pandas_run]},
        "shop": generated or shop_size(shop_dir),
        "agreement": agreement,
        "duckdb_within_time_target": duckdb_run["seconds"] <= TARGET_SECONDS,
        "duckdb_within_memory_target": duckdb_run["peak_rss_gib"] <= TARGET_PEAK_GIB,
        "duckdb_speedup_over_pandas": round(pandas_run["seconds"] / duckdb_run["seconds"], 2),
    }
    write_result(RESULT_PATH, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
