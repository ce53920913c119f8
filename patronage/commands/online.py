"""`patronage online-report` and `patronage promote NAME --online`: how recommendations did with
real shoppers (from the event log), and promotion of the challenger on that evidence.

Definitions and interval methods: `features.online_metrics`; the promotion rule:
`training.online_promotion` (docs/serving.md, docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from patronage.cli import PatronageError
from patronage.commands._events import EVENTS_FORMS, EVENTS_METAVAR, posted_events

if TYPE_CHECKING:
    import pandas as pd

    from features.online_metrics import OnlineEvents, OnlineReport


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `online-report` subcommand (`promote --online` is an option of `promote`)."""
    parser = subparsers.add_parser(
        "online-report",
        help="click-through, buy-through and revenue of recommendations, from the event log",
        description="Per model version, route, strategy and variant: impressions, click-through "
        "rate and buy-through rate (95% Wilson intervals), revenue from recommendations and per "
        "impression (95% normal interval), and challenger minus champion per route (Newcombe "
        "interval for rates, Welch for revenue). A purchase counts for the last impression that "
        "showed its item to the same customer within 7 days (or the one it names).",
    )
    add_online_options(parser)
    parser.add_argument(
        "--log",
        action="store_true",
        help="also write the metrics to MLflow, on the run of each model version's offline "
        "backtest (metrics online.ROUTE.VARIANT.*)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(handler=_online_report)


def add_online_options(parser: argparse.ArgumentParser) -> None:
    """`--since TS` and `--events DIR`, shared with `promote --online`."""
    parser.add_argument(
        "--since",
        default=None,
        metavar="TS",
        help="only impressions shown at or after this ISO 8601 time (no zone: UTC)",
    )
    parser.add_argument(
        "--events",
        default=None,
        metavar=EVENTS_METAVAR,
        help=f"{EVENTS_FORMS} (default: PATRONAGE_EVENTS_URL, else PATRONAGE_EVENTS_DIR, else "
        "data/events)",
    )


def parse_since(text: str | None) -> pd.Timestamp | None:
    """`--since` as a UTC Timestamp; a clear error for anything but ISO 8601."""
    if text is None:
        return None
    import pandas as pd

    from features.contract import ISO_8601

    if not ISO_8601.fullmatch(text.strip()):
        raise PatronageError(f"--since {text!r} is not an ISO 8601 time (e.g. 2026-01-05T08:30Z)")
    stamp = pd.Timestamp(text.strip())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_events_at(given: str | None) -> OnlineEvents:
    """The online events of the event store `--events` names (else the server's)."""
    from features.online_metrics import OnlineEvents

    with posted_events(given) as store:
        return OnlineEvents.from_records(store.read_records())


def _online_report(args: argparse.Namespace) -> int:
    from features.online_metrics import online_report

    report = online_report(read_events_at(args.events), parse_since(args.since))
    if not report.groups:
        since = f" shown since {args.since}" if args.since else ""
        raise PatronageError(
            f"no impressions{since} in the posted events: the storefront posts them to POST "
            "/v1/events (`impressions`, with each answer's recommendation_id)"
        )
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(format_report(report))
    if args.log:
        _log(report)
    return 0


def _log(report: OnlineReport) -> None:
    from training.online_promotion import log_online_metrics
    from training.tracking import TrackingUnavailable, connect

    try:
        _, client = connect()
    except TrackingUnavailable as error:
        raise PatronageError(str(error)) from None
    written = log_online_metrics(client, report)
    if not written:
        raise PatronageError(
            "none of the report's model versions is in the MLflow store: nothing was logged"
        )
    print(f"logged the online metrics of {', '.join(written)} to MLflow")


def _interval(values: list[float], digits: int = 4) -> str:
    return f"[{values[0]:.{digits}f}, {values[1]:.{digits}f}]"


def _rate(value: Any, interval: list[float]) -> str:
    return "-" if value is None else f"{value:.4f} {_interval(interval)}"


def format_report(report: OnlineReport) -> str:
    """The report as two plain-text tables: the groups, then challenger minus champion."""
    payload = report.to_json()
    header: tuple[str, ...] = ("model_version", "route", "strategy", "variant", "impressions")
    header += ("CTR [95%]", "BTR [95%]", "revenue", "revenue/impression [95%]")
    rows: list[tuple[str, ...]] = [header]
    for group in payload["groups"]:
        rows.append(
            (
                group["model_version"],
                group["route"],
                group["strategy"],
                group["variant"],
                str(group["impressions"]),
                _rate(group["click_through_rate"], group["click_through_interval"]),
                _rate(group["buy_through_rate"], group["buy_through_interval"]),
                f"{group['revenue']:.2f}",
                _rate(group["revenue_per_impression"], group["revenue_per_impression_interval"]),
            )
        )
    lines = _table(rows)
    if payload["differences"]:
        lines += ["", "challenger minus champion (95% intervals):"]
        diff_rows: list[tuple[str, ...]] = [
            ("route", "impressions champion/challenger", "CTR", "BTR", "revenue/impr.")
        ]
        for d in payload["differences"]:
            diff_rows.append(
                (
                    d["route"],
                    f"{d['champion_impressions']}/{d['challenger_impressions']}",
                    *(
                        f"{d[k][0]:+.4f} {_interval(d[k][1:])}"
                        for k in (
                            "click_through_difference",
                            "buy_through_difference",
                            "revenue_per_impression_difference",
                        )
                    ),
                )
            )
        lines += _table(diff_rows)
    if report.unmatched_clicks:
        lines.append(
            f"{report.unmatched_clicks} click(s) name no posted impression showing the item"
        )
    lines.append(
        "intervals: Wilson (rates), Newcombe hybrid score (rate differences), normal (revenue "
        "per impression), Welch (its difference); attribution: last impression within 7 days"
    )
    return "\n".join(lines)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def promote_online(args: argparse.Namespace) -> int:
    """`patronage promote NAME --online`: exit 0 only when the challenger was promoted."""
    from training.online_promotion import promote_online as decide
    from training.registry import RegistryError, resolve_model_name
    from training.tracking import TrackingUnavailable, connect

    since = parse_since(args.since)
    try:
        _, client = connect()
        name = resolve_model_name(client, args.name, args.shop)
    except (TrackingUnavailable, RegistryError) as error:
        raise PatronageError(str(error)) from None
    if not name.endswith(".recommender"):
        raise PatronageError(f"{name}: --online compares recommenders only (give `recommender`)")
    decision = decide(client, name, read_events_at(args.events), since)
    if not decision.promoted:
        raise PatronageError(f"not promoted: {decision.reason}")
    print(decision.reason)
    return 0
