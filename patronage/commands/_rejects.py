"""The options of every command that loads a shop directory: how many rejected rows it accepts
and where the rejected rows go (`validate`, `features`, `score`, `train`, `recommend-fit`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from patronage.cli import PatronageError

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
            # "%(default).0s" prints nothing; it keeps ArgumentDefaultsHelpFormatter from
            # appending "(default: None)".
            help="where to write the rejected rows, whole, with line number and reason, as "
            "NAME.rejects.csv (default: DIR/_rejects)%(default).0s",
        )


def reject_options(args: argparse.Namespace) -> dict[str, Any]:
    """`max_reject_rate` and `rejects_dir` for `features.loading.load_shop`, checked."""
    rate = args.max_reject_rate
    if not 0 <= rate <= 1:
        raise PatronageError(f"--max-reject-rate must be between 0 and 1 (a fraction), not {rate}")
    return {"max_reject_rate": rate, "rejects_dir": getattr(args, "rejects_dir", None)}
