"""`patronage validate` and `patronage import`: check a data directory, convert public data sets.

Exit codes: 0 every table within the allowed reject rate, 2 more rejected than allowed (the
summary says where the rejected rows are), 1 a file cannot be read at all or another error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patronage.commands._rejects import add_reject_options, reject_options

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
    validate.add_argument("directory", type=Path, metavar="DIR", help="the data directory")
    _add_validation_options(validate)
    validate.set_defaults(handler=run_validate)

    importer = subparsers.add_parser(
        "import",
        help="convert a public data set (groceries, cdnow, online-retail) into the contract",
        description=(
            "Convert a public data set into contract tables in --out, then validate them. "
            "groceries: Groceries_dataset.csv (Kaggle); cdnow: CDNOW_master.txt; online-retail: "
            "UCI Online Retail I or II as CSV (or .xlsx with openpyxl installed). Prints input "
            "rows, accepted and rejected (accepted + rejected = input). The source is only read."
        ),
    )
    importer.add_argument("format", choices=("groceries", "cdnow", "online-retail"))
    importer.add_argument("source", type=Path, metavar="SRC", help="the source file")
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
        help="online-retail: strftime format of InvoiceDate "
        "(default: ISO 8601, else %%m/%%d/%%Y %%H:%%M)",
    )
    _add_validation_options(importer, rejects_dir=False)
    importer.set_defaults(handler=run_import)


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


def run_import(args: argparse.Namespace) -> int:
    """Import SRC into --out and validate it; 0 within the limit, 2 above it."""
    from features import importers
    from patronage.cli import PatronageError

    max_reject_rate = reject_options(args)["max_reject_rate"]
    if not args.source.is_file():
        raise PatronageError(f"source file {args.source} does not exist")
    options = {
        "file_format": args.file_format,
        "overwrite": args.overwrite,
        "as_of": _as_of(args.as_of),
        "max_reject_rate": max_reject_rate,
    }
    if args.format == "groceries":
        summary = importers.import_groceries(args.source, args.out, **options)
    elif args.format == "cdnow":
        summary = importers.import_cdnow(args.source, args.out, **options)
    else:
        summary = importers.import_online_retail(
            args.source, args.out, date_format=args.date_format, **options
        )
    print(summary.summary_text())
    if not summary.within_limit:
        over = ", ".join(summary.report.tables_over_limit)
        print(
            f"error: the imported tables have more rejected rows than --max-reject-rate allows "
            f"({over}); see {args.out / '_rejects'}",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    return 0
