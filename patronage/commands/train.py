"""`patronage train`, `promote`, `rollback`, `models`: the training pipeline and the registry.

MLflow is imported inside the handlers (it costs about 1.5 s); see docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from patronage.cli import PatronageError
from patronage.commands._events import EVENTS_FORMS, EVENTS_METAVAR, posted_events
from patronage.commands._registry import add_shop_option
from patronage.commands._rejects import SOURCE_HELP, add_reject_options, reject_options
from patronage.commands.online import add_online_options, promote_online

if TYPE_CHECKING:
    from features.loading import DataRejected

TRACKING_HELP = (
    "The MLflow store is MLFLOW_TRACKING_URI when set (a SQLite URI or a server "
    "http://HOST:PORT), else sqlite:///mlruns/mlflow.db in the current directory."
)


def parse_roles(text: str) -> tuple[str, ...]:
    """`recommender,churn` -> ("recommender", "churn"); argparse reports a bad role."""
    from models.registry_names import ROLES

    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"unknown role(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ROLES)}"
        )
    return roles


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train`, `promote`, `rollback` and `models` subcommands."""
    _register_train(subparsers)
    _register_promote(subparsers)
    _register_rollback(subparsers)
    _register_models(subparsers)


def _registry_parser(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand that reads or moves registered models; its description ends by saying
    which MLflow store it uses."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=f"{description} {TRACKING_HELP}"
    )
    return parser


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="backtest, fit, log to MLflow, register and (if no worse) promote the models",
        description=(
            "Validate the shop in DIR, then for each role (recommender, churn, loyalty) on its "
            "own: backtest on the last window before --as-of against its plain baselines and "
            "the shop's current champion, fit on all data before --as-of, log to MLflow and "
            "register a new version of patronage.SHOP.ROLE with alias 'challenger'. A version "
            "becomes 'champion' only when it is no worse than the current champion on the same "
            "backtest (metrics in docs/training.md), or with --force. A role the data cannot "
            "carry (one product, no repeat buyers, a history too short for the horizon) is "
            "skipped with a sentence saying why; the others register. A role that does not "
            f"beat its plain baseline is named so. {TRACKING_HELP} Exit 0 when at least one "
            "role trained, 1 when none could (the registry is then as it was), 2 when the "
            "data was refused."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help=SOURCE_HELP)
    add_shop_option(parser, "the shop's name in the registry (default: DIR's name; a URL's schema)")
    parser.add_argument(
        "--roles",
        type=parse_roles,
        default=None,
        metavar="ROLES",
        help="comma-separated roles to train (default: recommender,churn,loyalty)",
    )
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
        help="a customer churned when they do not order within N days (default: 90)",
    )
    parser.add_argument(
        "--value-horizon-days",
        type=int,
        default=90,
        metavar="N",
        help="choose the predicted-spend forecast for N days by backtest: a learned model "
        "replaces BG/NBD x Gamma-Gamma when it predicts the shop's latest N days better "
        "(default: 90; 0 keeps BG/NBD x Gamma-Gamma without the backtest)",
    )
    parser.add_argument(
        "--recommendation-window-days",
        type=int,
        default=30,
        metavar="N",
        help="length of the recommendation backtest window (the last N days before --as-of; "
        "default: 30)",
    )
    parser.add_argument(
        "--experiment", default="patronage", help="MLflow experiment name (default: patronage)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (same data + seed = same metrics; default 0)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time budget of the recommender model search, per fit (default: 30)",
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
        metavar=EVENTS_METAVAR,
        help=f"also train on the purchases, feedback and item updates posted to the server: "
        f"{EVENTS_FORMS}; they count in the data hash",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=_train)


def _register_promote(subparsers: argparse._SubParsersAction) -> None:
    parser = _registry_parser(
        subparsers,
        "promote",
        "make a registered model version the champion (by hand)",
        "Move alias 'champion' of NAME to VERSION, keeping the previous champion in the history "
        "that `patronage rollback` uses. With --online instead of VERSION: promote the "
        "recommender's @challenger only when its buy-through rate on real traffic (the event "
        "log) beats the champion's with the 95% interval of the difference above zero; exits "
        "1 saying why when nothing was promoted.",
    )
    _add_model_name(parser)
    parser.add_argument("version", metavar="VERSION", nargs="?", help="version number")
    parser.add_argument("--reason", default="", help="why (recorded as a tag on the version)")
    parser.add_argument(
        "--online",
        action="store_true",
        help="decide on the online buy-through of champion and challenger (no VERSION)",
    )
    add_online_options(parser)
    add_shop_option(parser)
    parser.set_defaults(handler=_promote)


def _register_rollback(subparsers: argparse._SubParsersAction) -> None:
    parser = _registry_parser(
        subparsers,
        "rollback",
        "move a model's champion back to the previous champion",
        "Move alias 'champion' of NAME back to the version that was champion before the current "
        "one (history kept in a registered-model tag).",
    )
    _add_model_name(parser)
    add_shop_option(parser)
    parser.set_defaults(handler=_rollback)


def _add_model_name(parser: argparse.ArgumentParser) -> None:
    """NAME, the model `promote` and `rollback` act on: a role (of the shop `--shop` names) or a
    full registered name."""
    parser.add_argument(
        "name", metavar="NAME", help="a role (recommender, churn, loyalty) or patronage.SHOP.ROLE"
    )


def _register_models(subparsers: argparse._SubParsersAction) -> None:
    parser = _registry_parser(
        subparsers,
        "models",
        "list registered model versions, their aliases and key backtest metrics",
        "List every version of every shop's registered models (or one shop's with --shop): "
        "aliases, decision, whether it beats its plain baseline, what it was trained on, key "
        "metrics; and the roles the last training skipped, with why.",
    )
    add_shop_option(parser, "only this shop")
    parser.add_argument(
        "--role", default=None, choices=("recommender", "churn", "loyalty"), help="only this role"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_models)


def _train(args: argparse.Namespace) -> int:
    """Run the training pipeline and print what was registered, promoted and skipped."""
    from models.registry_names import ROLES
    from training.pipeline import TrainingFailed, TrainOptions, train
    from training.tracking import TrackingUnavailable

    extra_purchases = extra_feedback = extra_items = None
    events_source = ""
    if args.events:
        with posted_events(args.events) as store:
            extra_purchases, extra_feedback, extra_items = store.read_events()
        events_source = store.location
    options = TrainOptions(
        directory=args.directory,
        as_of=args.as_of,
        churn_horizon_days=args.churn_horizon_days,
        value_horizon_days=args.value_horizon_days,
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
        events_source=events_source,
        shop=args.shop,
        roles=args.roles or ROLES,
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
    """Promote by hand, or (`--online`) the challenger on its online buy-through."""
    from training.registry import promote, resolve_model_name

    if args.online:
        if args.version is not None:
            raise PatronageError("give either VERSION or --online, not both")
        return promote_online(args)
    if args.version is None:
        raise PatronageError("give the VERSION to promote (or --online)")
    client = _client()
    with _registry_errors():
        name = resolve_model_name(client, args.name, args.shop)
        promote(client, name, args.version, args.reason)
    print(f"{name}: champion is now version {args.version}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    """Roll back to the previous champion."""
    from training.registry import resolve_model_name, rollback

    client = _client()
    with _registry_errors():
        name = resolve_model_name(client, args.name, args.shop)
        previous, restored = rollback(client, name)
    print(f"{name}: champion rolled back from version {previous} to version {restored}")
    return 0


@contextmanager
def _registry_errors() -> Iterator[None]:
    """A registry refusal (unknown model or version, no history) as a `PatronageError`."""
    from training.registry import RegistryError

    try:
        yield
    except RegistryError as error:
        raise PatronageError(str(error)) from None


def _models(args: argparse.Namespace) -> int:
    """Print the registered versions and skipped roles as a table (or JSON)."""
    from models.registry_names import ROLES
    from training.registry import list_versions

    client = _client()
    rows, skipped = list_versions(client, args.shop, (args.role,) if args.role else ROLES)
    if args.json:
        payload = [row.to_json() for row in rows] + [row.to_json() for row in skipped]
        json.dump(payload, sys.stdout, indent=2)
        print()
        return 0
    if not rows and not skipped:
        where = f" for shop {args.shop!r}" if args.shop else ""
        print(f"no registered models{where} yet: run `patronage train DIR`")
        return 0
    print(format_table(rows))
    for row in skipped:
        print(f"{row.shop} {row.role}: skipped by the last training. {row.reason}")
    return 0


def format_table(rows: list) -> str:  # type: ignore[type-arg]
    """A plain-text table of `VersionRow`s: shop, role, version, aliases, decision, whether it
    beats its plain baseline, as_of, created, purchases trained on, key metrics."""
    header = (
        "shop",
        "role",
        "version",
        "aliases",
        "decision",
        "baseline",
        "as_of",
        "created",
        "purchases",
        "key metrics",
    )
    verdicts = {True: "beats", False: "NOT beaten", None: "-"}
    lines = [header]
    for row in rows:
        metrics = ", ".join(f"{key}={value:.4f}" for key, value in row.metrics.items())
        purchases = row.data_rows.get("purchases")
        lines.append(
            (
                row.shop,
                row.role,
                row.version,
                ",".join(row.aliases) or "-",
                row.decision or "-",
                verdicts[row.beats_baseline],
                row.as_of[:19] or "-",
                row.created_at[:19],
                "-" if purchases is None else f"{purchases:,}",
                metrics or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    sources = sorted(
        {(row.shop, row.data_source, row.data_sha256[:12]) for row in rows if row.data_source}
    )
    out += [f"{shop}: trained on {source} (sha256 {digest}...)" for shop, source, digest in sources]
    return "\n".join(out)
