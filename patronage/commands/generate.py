"""`patronage generate`: write a deterministic, realistic sample shop with its planted truths."""

from __future__ import annotations

import argparse

from patronage.cli import DefaultsHelpFormatter, PatronageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `generate` subcommand."""
    parser = subparsers.add_parser(
        "generate",
        help="write a realistic sample shop (four contract tables + planted truths)",
        description=(
            "Write a synthetic shop in the data contract's format: purchases, feedback, items and "
            "customers, plus the planted truths (complementary pairs, leavers, taste clusters) in "
            "OUT/_truth/. The same arguments always give byte-identical files. "
            "See docs/sample-shop.md for the generative story."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--customers", type=int, default=5000, help="number of customers")
    parser.add_argument("--items", type=int, default=500, help="number of items (at least 10)")
    parser.add_argument("--days", type=int, default=365, help="length of the period in days")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--start", default="2025-01-01", help="first day of the period (ISO date, 00:00 UTC)"
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=("csv", "parquet"),
        default="csv",
        help="file format of the tables",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace tables already in DIR")
    parser.set_defaults(handler=_generate)


SHOP_OPTIONS = ("customers", "items", "days", "seed", "start", "file_format", "overwrite")
"""The options passed on to `generate_shop` as they are (same names)."""


def _generate(args: argparse.Namespace) -> int:
    """Generate the shop and print its summary."""
    from features.sample_shop import generate_shop

    try:
        summary = generate_shop(args.out, **{name: getattr(args, name) for name in SHOP_OPTIONS})
    except ValueError as error:
        raise PatronageError(str(error)) from None
    print(summary.describe())
    return 0
