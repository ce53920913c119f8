"""`patronage recommend` (top-k lists for a file of customers) and `patronage recommend-fit`
(select, fit and save a recommender bundle without MLflow).

Heavy imports (numpy models, implicit) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from patronage.cli import DefaultsHelpFormatter, PatronageError
from patronage.commands._events import EVENTS_FORMS, EVENTS_METAVAR, posted_events
from patronage.commands._registry import add_shop_option
from patronage.commands._rejects import (
    SOURCE_HELP,
    add_reject_options,
    reject_options,
    shop_source,
)

EXCLUDE_CHOICES = ("all", "non-repeatable", "none")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `recommend` and `recommend-fit` subcommands."""
    parser = subparsers.add_parser(
        "recommend",
        help="top-k recommendations for a file of customer ids, as CSV",
        description=(
            "Write the top-k items for every customer id in --customers (one id per line, a "
            "header line 'customer_id' allowed; or a CSV with a customer_id column, other "
            "columns ignored; UTF-8) to --out as CSV with columns customer_id, "
            "rank, item_id, score, strategy, note. A customer unknown to the model gets "
            "trending items (strategy 'trending', note 'new customer', as in the HTTP API); "
            "note is empty for personal lists. The model is a saved recommender "
            "bundle: by default the shop's registered champion (--shop), another registered "
            "model named by --model-uri, or a directory saved by `patronage recommend-fit` "
            "(--model-dir, which wins when given)."
        ),
    )
    parser.add_argument("--customers", required=True, metavar="FILE", help="customer ids file")
    add_shop_option(parser, "whose champion recommends (default: the only shop in the store)")
    parser.add_argument("--k", type=int, default=10, help="items per customer (default: 10)")
    parser.add_argument(
        "--exclude-purchased",
        choices=EXCLUDE_CHOICES,
        default="non-repeatable",
        help="which past purchases to leave out: all, none, or non-repeatable (default: the rule "
        "training learned on the shop's own validation window: none, all, or all but the most "
        "re-bought items)",
    )
    parser.add_argument("--category", default=None, help="only items of this category")
    parser.add_argument(
        "--model-uri",
        metavar="URI",
        default=None,
        help="MLflow model URI of the recommender, any shop's (default: "
        "models:/patronage.SHOP.recommender@champion)",
    )
    parser.add_argument(
        "--model-dir", metavar="DIR", default=None, help="a saved recommender bundle directory"
    )
    parser.add_argument(
        "--events",
        metavar=EVENTS_METAVAR,
        default=None,
        help=f"also apply what was posted to the server since training ({EVENTS_FORMS}): "
        "items posted unavailable are left out, items posted available again come back, and "
        "purchases posted since the model's as_of count as bought (as in the HTTP API)",
    )
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="output CSV path")
    parser.set_defaults(handler=_recommend)

    fit = subparsers.add_parser(
        "recommend-fit",
        help="select and fit the recommenders for a shop and save them to a directory",
        description=(
            "Validate the shop in DIR, choose the recommenders on a validation window carved "
            "from the data before --as-of (the last --horizon-days, capped at a quarter of the "
            "history), refit the winners on all data before --as-of and save the bundle to "
            "--model-dir. Prints why each winner won. No MLflow involved (see `patronage "
            "train` for the registry)."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    fit.add_argument("directory", metavar="DIR", help=SOURCE_HELP)
    fit.add_argument("--model-dir", required=True, metavar="OUT", help="where to save")
    fit.add_argument(
        "--as-of",
        default=None,
        metavar="TS",
        help="fit on data strictly before this time (ISO 8601, UTC if no zone); "
        "default: just after the last purchase",
    )
    fit.add_argument("--seed", type=int, default=0, help="random seed of the model search")
    fit.add_argument(
        "--time-budget", type=float, default=120.0, metavar="SECONDS", help="search budget"
    )
    fit.add_argument(
        "--horizon-days", type=float, default=90.0, help="serving horizon = validation window"
    )
    add_reject_options(fit)
    fit.set_defaults(handler=_fit)


def _read_customer_ids(path: Path) -> list[str]:
    """The customer ids of FILE, in order (repeats kept): one id per line, or a CSV whose
    header has a `customer_id` column (the other columns are ignored, e.g. the shop's own
    customers table). UTF-8; a byte-order mark (as spreadsheet exports write) is dropped;
    blank lines are skipped; spaces around an id and CSV double quotes are removed."""
    if not path.exists():
        raise PatronageError(f"customers file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PatronageError(
            f"customers file {path} is not UTF-8 text ({error.reason} at byte {error.start}): "
            "save it as UTF-8, one customer id per line"
        ) from error
    lines = [line for line in text.splitlines() if line.strip()]
    header = [field.strip().lower() for field in next(csv.reader(lines[:1]), [])]
    if len(header) > 1 and "customer_id" in header:
        column = header.index("customer_id")
        rows = csv.reader(lines[1:])
        ids = [row[column].strip() if column < len(row) else "" for row in rows]
        missing = [number + 2 for number, value in enumerate(ids) if not value]
        if missing:
            raise PatronageError(
                f"customers file {path}: no customer_id on line(s) "
                f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}"
            )
    else:
        ids = [_unquoted(line.strip()) for line in lines]
        if ids and ids[0].lower() == "customer_id":
            ids = ids[1:]
    if not ids:
        raise PatronageError(f"customers file {path} holds no customer id (one id per line)")
    return ids


def _unquoted(value: str) -> str:
    """`"C001"` -> `C001` (a CSV-quoted field, `""` inside it standing for `"`)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('""', '"').strip()
    return value


def _recommend(args: argparse.Namespace) -> int:
    if args.k <= 0:
        raise PatronageError(f"--k must be a positive number of items, got {args.k}")
    from models.recommenders.bundle import NEW_CUSTOMER, RecommenderBundle
    from models.registry_names import RECOMMENDER
    from patronage.commands._registry import champion_uri, model_artifact, shop_of_uri

    customers = _read_customer_ids(Path(args.customers))  # bad input fails before the registry
    if args.model_dir is None and args.model_uri:
        owner = shop_of_uri(args.model_uri)
        if args.shop and owner is not None and owner != args.shop:
            print(f"note: recommending for shop {args.shop!r} with shop {owner!r}'s model")
        args.model_dir = model_artifact(args.model_uri, "bundle")
    elif args.model_dir is None:
        uri, _ = champion_uri(args.shop, (RECOMMENDER,), use="recommend with")
        args.model_dir = model_artifact(uri, "bundle")
    try:
        bundle = RecommenderBundle.load(args.model_dir)
    except FileNotFoundError as error:
        raise PatronageError(str(error)) from error
    bought_since: dict[str, list[str]] = {}
    if args.events:
        bundle, bought_since = _apply_events(bundle, args.events)
    answers = bundle.recommend_many(
        customers, k=args.k, exclude_purchased=args.exclude_purchased, category=args.category
    )
    for position, customer in enumerate(customers):
        if customer in bought_since:  # few: one at a time, with their posted purchases
            answers[position] = bundle.recommend_for(
                customer,
                k=args.k,
                category=args.category,
                exclude_purchased=args.exclude_purchased,
                extra_purchased=bought_since[customer],
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "rank", "item_id", "score", "strategy", "note"])
        for customer, answer in zip(customers, answers, strict=True):
            strategy, note = answer.strategy, answer.note or ""
            for rank, (item, score) in enumerate(zip(answer.item_ids, answer.scores, strict=True)):
                writer.writerow([customer, rank + 1, item, f"{score:.6g}", strategy, note])
    unknown = sum(answer.note == NEW_CUSTOMER for answer in answers)
    print(
        f"wrote {len(customers):,} customers x top {args.k} to {out}"
        + (f"; {unknown:,} unknown to the model got trending items" if unknown else "")
    )
    return 0


def _apply_events(bundle: Any, events: str) -> tuple[Any, dict[str, list[str]]]:
    """The bundle with the posted item availability applied, and per customer the items they
    were posted buying at or after the bundle's `as_of` (UTC); `events` a log directory or a
    PostgreSQL event store."""
    with posted_events(events) as store:
        purchases, _, items = store.read_events()
    posted = items.loc[items["available"].notna(), ["item_id", "available"]]
    bundle = bundle.with_availability(
        dict(zip(posted["item_id"].astype(str), posted["available"].astype(bool), strict=True))
    )
    since = purchases.loc[purchases["ordered_at"] >= bundle.as_of]
    bought = since.groupby(since["customer_id"].astype(str))["item_id"].agg(
        lambda ids: list(dict.fromkeys(ids.astype(str)))
    )
    return bundle, bought.to_dict()


def _fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from features.loading import load_shop, to_utc
    from models.recommenders.bundle import fit_recommender_bundle

    as_of = to_utc(args.as_of) if args.as_of else None
    # Validate against the present (rows after --as-of are legitimate history, just unused).
    shop = load_shop(shop_source(args.directory), **reject_options(args)).shop
    if as_of is None:
        if shop.purchases.empty:
            raise PatronageError(f"{args.directory} holds no purchases: nothing to learn from")
        as_of = shop.purchases["ordered_at"].max() + pd.Timedelta(seconds=1)
    bundle = fit_recommender_bundle(
        shop.before(as_of),
        as_of,
        seed=args.seed,
        time_budget_s=args.time_budget,
        horizon_days=args.horizon_days,
        log=lambda message: print(message, file=sys.stderr),
    )
    bundle.save(args.model_dir)
    for role in ("discovery", "repeat"):
        print(f"{role}: {bundle.report[f'{role}_winner']['reason']}")
    print(f"cross-sell: {bundle.report['cross_sell']['winner']}")
    print(f"saved to {args.model_dir}")
    return 0
