"""The `patronage` command line: parse, call, print.

This is the one place that imports both `training` and `serving` (lazily, inside handlers).
Exit codes: 0 success, 1 error, 2 data rejected beyond the allowed rate.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module registers its own subcommands; see patronage/commands/.
COMMAND_MODULES = (
    "generate",
    "data",
    "features",
    "recommend",
    "score",
    "train",
    "serve",
    "online",
)


EXIT_REJECTED = 2


def _is_data_rejected(error: Exception) -> bool:
    """Whether `error` is the loader's "too many rejected rows" (exit code 2)."""
    from features.loading import DataRejected

    return isinstance(error, DataRejected)


class PatronageError(Exception):
    """An error the user can fix; printed without a traceback."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds `(default: X)` to an option's help once: not when the help already names its
    default, and not for options whose default is nothing (None, False: flags, optional
    paths)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        nothing = action.default is None or action.default is False
        if "default" in text or nothing or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="patronage",
        description="Recommendations, churn risk, loyalty and customer value for online shops.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"patronage.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"patronage.commands.{name}":
                continue  # that area has not landed yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `patronage` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except (PatronageError, ValueError, FileNotFoundError) as error:
        rejected = _is_data_rejected(error)
        if rejected:
            print(error.report.summary_text())  # type: ignore[union-attr]
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REJECTED if rejected else 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
