"""`patronage train`, `promote`, `rollback`, `models`: the training pipeline and the registry.

MLflow is imported inside the handlers (it costs about 1.5 s); see docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from patronage.cli import PatronageError
from patronage.commands._rejects import add_reject_options, reject_options

if TYPE_CHECKING:
    from features.loading import DataRejected

TRACKING_HELP = (
    "The MLflow store is MLFLOW_TRACKING_URI when set (a SQLite URI or a server "
    "http://HOST:PORT), else sqlite:///mlruns/mlflow.db in the current directory."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train`, `promote`, `rollback` and `models` subcommands."""
    _register_train(subparsers)
    _register_promote(subparsers)
    _register_rollback(subparsers)
    _register_models(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="backtest, fit, log to MLflow, register and (if no worse) promote the models",
        description=(
            "Validate the shop in DIR, backtest every model on the last window before --as-of "
            "against its baselines and the current champion, fit the final models on all data "
            "before --as-of, log everything to MLflow and register new versions of "
            "patronage-recommender, patronage-churn and patronage-loyalty with alias "
            "'challenger'. A version becomes 'champion' only when it is no worse than the "
            "current champion on the same backtest (metrics in docs/training.md), or with "
            f"--force. {TRACKING_HELP} Exit code 1 leaves the registry as it was."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", help="shop directory (the data contract)")
    parser.add_argument(
        "--as-of",
        default=None,
        metavar="TS",
        help="train on data strictly before this time (ISO 8601, UTC if no zone); "
        "default: midnight UTC after the last purchase",
    )
    parser.add_argument(
        "--churn-horizon-days",
        type=int,
        default=90,
        metavar="N",
        help="a customer churned when they do not order within N days",
    )
    parser.add_argument(
        "--recommendation-window-days",
        type=int,
        default=30,
        metavar="N",
        help="length of the recommendation backtest window (the last N days before --as-of)",
    )
    parser.add_argument("--experiment", default="patronage", help="MLflow experiment name")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (same data + seed = same metrics)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time budget of the recommender model search, per fit",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="make the new versions champion even when they are worse than the current ones",
    )
    add_reject_options(parser)
    parser.add_argument(
        "--events",
        default=None,
        metavar="DIR",
        help="also train on the events posted to the server (its event log directory, e.g. "
        "data/events); they count in the data hash",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=_train)


def _register_promote(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "promote",
        help="make a registered model version the champion (by hand)",
        description=(
            "Move alias 'champion' of NAME to VERSION, keeping the previous champion in the "
            f"history that `patronage rollback` uses. {TRACKING_HELP}"
        ),
    )
    parser.add_argument("name", metavar="NAME", help="registered model, e.g. patronage-churn")
    parser.add_argument("version", metavar="VERSION", help="version number")
    parser.add_argument("--reason", default="", help="why (recorded as a tag on the version)")
    parser.set_defaults(handler=_promote)


def _register_rollback(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="move a model's champion back to the previous champion",
        description=(
            "Move alias 'champion' of NAME back to the version that was champion before the "
            f"current one (history kept in a registered-model tag). {TRACKING_HELP}"
        ),
    )
    parser.add_argument("name", metavar="NAME", help="registered model, e.g. patronage-churn")
    parser.set_defaults(handler=_rollback)


def _register_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list registered model versions, their aliases and key backtest metrics",
        description=f"List every version of the Patronage registered models. {TRACKING_HELP}",
    )
    parser.add_argument("--name", default=None, help="only this registered model")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_models)


def _train(args: argparse.Namespace) -> int:
    """Run the training pipeline and print what was registered and promoted."""
    from training.pipeline import TrainingFailed, TrainOptions, train
    from training.tracking import TrackingUnavailable

    extra_purchases = extra_feedback = extra_items = None
    if args.events:
        from pathlib import Path

        if not Path(args.events).is_dir():
            raise PatronageError(f"--events {args.events}: no such directory")
        # The CLI is the one place that may import both serving and training.
        from serving.events import read_events

        extra_purchases, extra_feedback, extra_items = read_events(args.events)
    options = TrainOptions(
        directory=args.directory,
        as_of=args.as_of,
        churn_horizon_days=args.churn_horizon_days,
        recommendation_window_days=args.recommendation_window_days,
        experiment=args.experiment,
        seed=args.seed,
        time_budget_s=args.time_budget,
        force=args.force,
        **reject_options(args),
        progress=not args.quiet,
        extra_purchases=extra_purchases,
        extra_feedback=extra_feedback,
        extra_items=extra_items,
        events_source=args.events or "",
    )
    try:
        result = train(options)
    except (TrackingUnavailable, TrainingFailed) as error:
        rejected = _data_rejected_cause(error)
        if rejected is not None:
            # Reaches the CLI as the loader's error: rejects summary printed, exit code 2.
            raise type(rejected)(str(error), rejected.report) from None
        raise PatronageError(str(error)) from None
    print(result.describe())
    return 0


def _data_rejected_cause(error: BaseException) -> DataRejected | None:
    """The loader's `DataRejected` behind a training failure, else None."""
    from features.loading import DataRejected

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, DataRejected):
            return cause
        cause = cause.__cause__
    return None


def _client():  # type: ignore[no-untyped-def]
    from training.tracking import TrackingUnavailable, connect

    try:
        return connect()[1]
    except TrackingUnavailable as error:
        raise PatronageError(str(error)) from None


def _promote(args: argparse.Namespace) -> int:
    """Promote by hand."""
    from training.registry import RegistryError, promote

    client = _client()
    try:
        promote(client, args.name, args.version, args.reason)
    except RegistryError as error:
        raise PatronageError(str(error)) from None
    print(f"{args.name}: champion is now version {args.version}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    """Roll back to the previous champion."""
    from training.registry import RegistryError, rollback

    client = _client()
    try:
        previous, restored = rollback(client, args.name)
    except RegistryError as error:
        raise PatronageError(str(error)) from None
    print(f"{args.name}: champion rolled back from version {previous} to version {restored}")
    return 0


def _models(args: argparse.Namespace) -> int:
    """Print the registered versions as a table (or JSON)."""
    from training.registry import REGISTERED_MODELS, list_versions

    client = _client()
    names = (args.name,) if args.name else REGISTERED_MODELS
    rows = list_versions(client, names)
    if args.json:
        json.dump([row.to_json() for row in rows], sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print("no registered models yet: run `patronage train DIR`")
        return 0
    print(format_table(rows))
    return 0


def format_table(rows: list) -> str:  # type: ignore[type-arg]
    """A plain-text table of `VersionRow`s: name, version, aliases, decision, as_of, metrics."""
    header = ("model", "version", "aliases", "decision", "as_of", "created", "key metrics")
    lines = [header]
    for row in rows:
        metrics = ", ".join(f"{key}={value:.4f}" for key, value in row.metrics.items())
        lines.append(
            (
                row.name,
                row.version,
                ",".join(row.aliases) or "-",
                row.decision or "-",
                row.as_of[:19] or "-",
                row.created_at[:19],
                metrics or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    return "\n".join(out)
