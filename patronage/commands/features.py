"""`patronage features`: write the point-in-time customer feature table of a shop to Parquet.

Exit codes: 0 written, 1 an error (bad argument, unreadable data), 2 the data directory has more
rejected rows than allowed (see `patronage validate`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from patronage.cli import DefaultsHelpFormatter
from patronage.commands._rejects import (
    add_reject_options,
    add_shop_source,
    as_of_option,
    check_shop_directory,
    reject_options,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `features` subcommand."""
    parser = subparsers.add_parser(
        "features",
        help="write point-in-time customer features (one row per customer) to Parquet",
        description=(
            "Load and validate the shop in DIR, compute the customer features at --as-of from "
            "rows dated strictly before it (later rows are ignored, so a backtest can run on "
            "the full history), and write one row per customer with an order before --as-of "
            "to --out as Parquet: customer_id plus one column per feature. Every feature, its "
            "unit and what a missing value means: docs/features.md."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    add_shop_source(parser)
    parser.add_argument(
        "--as-of",
        required=True,
        metavar="TS",
        help="feature time, ISO 8601 (no zone = UTC); rows at or after it are not used",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="Parquet file to write"
    )
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="where the feature expressions run (spark: a local[2] session, or the one "
        "spark-submit started; needs Java 17)",
    )
    parser.add_argument(
        "--items-out",
        type=Path,
        metavar="FILE",
        help="also write the item features (one row per item) to this Parquet file",
    )
    add_reject_options(parser)
    parser.set_defaults(handler=run_features)


def run_features(args: argparse.Namespace) -> int:
    """Load DIR, compute the customer (and optionally item) features, write Parquet."""
    from patronage.cli import PatronageError

    started = time.perf_counter()
    from features.customers import customer_features
    from features.items import item_features
    from features.loading import load_shop

    as_of = as_of_option(args.as_of)
    check_shop_directory(args.directory)
    if args.out.suffix != ".parquet":
        raise PatronageError(f"--out must name a .parquet file, got {args.out}")
    loaded = load_shop(args.directory, **reject_options(args))
    connection = None
    if args.engine == "spark":
        from features.engines import command_spark_session

        connection = command_spark_session()
    customers = customer_features(loaded.shop, as_of, engine=args.engine, connection=connection)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(args.out, index=False)
    print(
        f"customer features at {as_of.isoformat()} ({args.engine}): {len(customers):,} customers "
        f"x {customers.shape[1] - 1} features -> {args.out}"
    )
    if args.items_out is not None:
        items = item_features(loaded.shop, as_of, engine=args.engine, connection=connection)
        args.items_out.parent.mkdir(parents=True, exist_ok=True)
        items.to_parquet(args.items_out, index=False)
        print(f"item features: {len(items):,} items -> {args.items_out}")
    print(f"took {time.perf_counter() - started:.1f} s")
    return 0
