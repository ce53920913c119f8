"""The options of every command that loads a shop directory: how many rejected rows it accepts
and where the rejected rows go (`validate`, `features`, `score`, `train`, `recommend-fit`); and
DIR itself and the checks of DIR and --as-of that `features` and `score` share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patronage.cli import PatronageError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_REJECT_RATE = 0.01


def add_reject_options(parser: argparse.ArgumentParser, rejects_dir: bool = True) -> None:
    """Add `--max-reject-rate` and (unless `rejects_dir` is False) `--rejects-dir`."""
    parser.add_argument(
        "--max-reject-rate",
        type=float,
        default=DEFAULT_MAX_REJECT_RATE,
        metavar="RATE",
        help="largest allowed share of rejected rows per table, a fraction; above it the "
        "command stops with exit code 2 (default: %(default)s)",
    )
    if rejects_dir:
        parser.add_argument(
            "--rejects-dir",
            type=Path,
            default=None,
            metavar="D",
            help="where to write the rejected rows, whole, with line number and reason, as "
            "NAME.rejects.csv (default: DIR/_rejects)",
        )


def reject_options(args: argparse.Namespace) -> dict[str, Any]:
    """`max_reject_rate` and `rejects_dir` for `features.loading.load_shop`, checked."""
    rate = args.max_reject_rate
    if not 0 <= rate <= 1:
        raise PatronageError(f"--max-reject-rate must be between 0 and 1 (a fraction), not {rate}")
    return {"max_reject_rate": rate, "rejects_dir": getattr(args, "rejects_dir", None)}


SOURCE_HELP = (
    "the shop's data directory, or postgresql://USER@HOST:PORT/DB?schema=SCHEMA holding the "
    "four tables (docs/postgresql.md)"
)


def shop_source(text: str) -> Path | str:
    """The DIR argument: a PostgreSQL URL stays text, anything else is a directory path."""
    from features.postgres_url import is_postgres_url

    return text if is_postgres_url(text) else Path(text)


def add_shop_source(parser: argparse.ArgumentParser) -> None:
    """Add the positional DIR: a shop's data directory, or a PostgreSQL URL (`shop_source`)."""
    parser.add_argument("directory", type=shop_source, metavar="DIR", help=SOURCE_HELP)


def check_shop_directory(directory: Path | str) -> None:
    """Raise PatronageError unless `directory` (the DIR argument) is an existing directory or a
    PostgreSQL URL."""
    if isinstance(directory, str):
        return
    if not directory.is_dir():
        raise PatronageError(f"{directory} is not a directory holding a shop's tables")


def as_of_option(text: str) -> pd.Timestamp:
    """`--as-of` as a UTC Timestamp (no zone = UTC); PatronageError when it is not a time."""
    from features.engines import as_of_utc

    try:
        return as_of_utc(text)
    except ValueError as error:
        raise PatronageError(f"--as-of: {error}") from None
