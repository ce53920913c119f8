"""`patronage score`: the CRM score table (churn risk with reasons, value, segment, loyalty).

Exit codes: 0 written, 1 an error (bad argument, unreadable data, too little history), 2 the
data directory has more rejected rows than allowed (see `patronage validate`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from models.score_columns import SCORE_COLUMNS, SPEND_COLUMN
from patronage.commands._registry import add_shop_option
from patronage.commands._rejects import (
    add_reject_options,
    add_shop_source,
    as_of_option,
    check_shop_directory,
    reject_options,
)

OUTPUT_SUFFIXES = (".csv", ".parquet")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `score` subcommand."""
    parser = subparsers.add_parser(
        "score",
        help="score every customer: churn risk with reasons, CLV, next order, RFM segment",
        description=(
            "Load and validate the shop in DIR and write one row per customer who ordered "
            f"before --as-of: {', '.join(SCORE_COLUMNS)} (with --value-horizon-days N also "
            f"{SPEND_COLUMN}). The scorer is, by "
            "default, the champion of this shop (--shop, default DIR's name) in the MLflow "
            "registry: churn's, or loyalty's when training skipped churn (churn columns then "
            "empty). A model of another shop is used only when --model-uri names it. Or a "
            "directory saved earlier with --save-model (--model-dir), or fitted here on the "
            "data before --as-of (--fit). Definitions: docs/churn-and-loyalty.md."
        ),
    )
    add_shop_source(parser)
    add_shop_option(parser, "whose champion scores the shop (default: DIR's name)")
    parser.add_argument(
        "--as-of",
        metavar="TS",
        default=None,
        help="scoring time, ISO 8601 (no zone = UTC); only rows before it are used "
        "(default: the end of the data, i.e. just after the last order)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE",
        help="where to write the table; .csv or .parquet (chosen by the extension)",
    )
    parser.add_argument(
        "--model-uri",
        metavar="URI",
        default=None,
        help="MLflow model URI of the scorer, any shop's (default: "
        "models:/patronage.SHOP.churn@champion)",
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="fit the scorer here on the data before --as-of instead of using a saved one",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        metavar="DIR",
        default=None,
        help="a scorer saved with --save-model (wins over --model-uri)",
    )
    parser.add_argument(
        "--save-model",
        type=Path,
        metavar="DIR",
        default=None,
        help="after fitting on the fly, save the scorer here (JSON + skops, no pickle)",
    )
    parser.add_argument(
        "--churn-horizon-days",
        type=float,
        default=90.0,
        metavar="N",
        help="churn = no order in the next N days (when fitting on the fly; default: 90)",
    )
    parser.add_argument(
        "--risk-thresholds",
        type=float,
        nargs=2,
        default=(0.3, 0.6),
        metavar=("MEDIUM", "HIGH"),
        help="churn probabilities from which the risk is medium and high (when fitting; "
        "default: 0.3 0.6)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the churn model (default: 0)"
    )
    parser.add_argument(
        "--value-horizon-days",
        type=float,
        default=None,
        metavar="N",
        help="also write predicted_spend: each customer's expected spend in the N days from "
        "--as-of, in the shop's currency, undiscounted: BG/NBD expected orders x Gamma-Gamma "
        "order value, or a learned model when it beat that on the shop's latest held-out N "
        "days (with --fit; a saved scorer uses its learned model only at the N it was fitted "
        "for); empty when the shop has no prices",
    )
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="where features and scores are computed: duckdb (this process), or spark (the "
        "features as Spark SQL, the scorer on each partition; a local[2] session, or the one "
        "spark-submit started; needs Java 17 and the spark extra). The same numbers either way "
        "(docs/scale.md)",
    )
    add_reject_options(parser)
    parser.set_defaults(handler=run_score)


def run_score(args: argparse.Namespace) -> int:
    """Load DIR, fit or load the scorer, score every customer and write the table."""
    import pandas as pd

    from features.loading import load_shop
    from models.customer_scores import CustomerScorer
    from patronage.cli import PatronageError

    started = time.perf_counter()
    if args.out.suffix not in OUTPUT_SUFFIXES:
        raise PatronageError(f"--out must end in .csv or .parquet, got {args.out}")
    check_shop_directory(args.directory)
    low, high = args.risk_thresholds
    if not 0 < low <= high < 1:
        raise PatronageError("--risk-thresholds need 0 < MEDIUM <= HIGH < 1")
    if args.value_horizon_days is not None and not args.value_horizon_days > 0:
        raise PatronageError(
            f"--value-horizon-days must be a positive number of days, got {args.value_horizon_days}"
        )
    loaded = load_shop(args.directory, **reject_options(args))
    shop = loaded.shop
    if len(shop.purchases) == 0:
        raise PatronageError(f"{args.directory} holds no purchases to score")
    if args.as_of is None:
        # just after the last order, on a whole second, so that every order counts
        as_of = shop.purchases["ordered_at"].max().floor("s") + pd.Timedelta(seconds=1)
    else:
        as_of = as_of_option(args.as_of)
    first_order = shop.purchases["ordered_at"].min()
    if as_of <= first_order:
        raise PatronageError(
            f"no customer has ordered before --as-of {as_of.isoformat()}: the first order in "
            f"{args.directory} is at {first_order.isoformat()}; choose a later --as-of"
        )

    if args.model_dir is None and not args.fit:
        args.model_dir = _registered_scorer(args)
    scorer: Any
    if args.model_dir is not None:
        try:
            scorer = CustomerScorer.load(args.model_dir)
        except ValueError as error:
            raise PatronageError(f"--model-dir: {error}") from None
        print(f"scorer loaded from {args.model_dir} (fitted at {scorer.as_of_.isoformat()})")
    else:
        scorer = _fit_here(shop, as_of, args)
        if args.save_model is not None:
            scorer.save(args.save_model)
            print(f"scorer saved to {args.save_model}")
    if args.engine == "spark":
        table = _scored_on_spark(scorer, shop, as_of, args.value_horizon_days)
    else:
        table = scorer.score(shop, as_of, value_horizon_days=args.value_horizon_days)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".csv":
        table.to_csv(args.out, index=False)
    else:
        table.to_parquet(args.out, index=False)
    risk = table["churn_risk"].value_counts().to_dict()
    churn = (
        f"churn risk high {risk.get('high', 0):,}, medium {risk.get('medium', 0):,}, "
        f"low {risk.get('low', 0):,}"
        if scorer.churn_model_ is not None
        else "no churn model: churn columns empty"
    )
    print(
        f"{len(table):,} customers scored at {as_of.isoformat()} -> {args.out} "
        f"({churn}); took {time.perf_counter() - started:.1f} s"
    )
    return 0


def _scored_on_spark(scorer: Any, shop: Any, as_of: Any, value_horizon_days: Any) -> Any:
    """The score table computed on Spark: the shop's tables handed to the session, the
    features as Spark SQL, the scorer on each partition (models.spark_scores), collected."""
    from features.customers import spark_customer_frame
    from features.engines import command_spark_session, connect, spark_shop_tables
    from models.spark_scores import collected_scores, score_on_spark
    from patronage.cli import PatronageError

    try:
        session = command_spark_session()
    except ImportError as error:
        raise PatronageError(str(error)) from None
    backend = connect("spark", session)
    with spark_shop_tables(backend, shop) as tables:
        features = spark_customer_frame(backend, tables, as_of)
        scores = score_on_spark(scorer, features, as_of, value_horizon_days)
        return collected_scores(scores)


def _registered_scorer(args: argparse.Namespace) -> Path:
    """The scorer of the shop's champion (or of the model --model-uri names, said aloud when
    it belongs to another shop)."""
    from models.registry_names import CHURN, LOYALTY, shop_of_directory
    from patronage.cli import PatronageError
    from patronage.commands._registry import champion_uri, model_artifact, shop_of_uri

    try:
        shop = args.shop or shop_of_directory(args.directory)
    except ValueError as error:
        raise PatronageError(str(error)) from None
    if args.model_uri:
        owner = shop_of_uri(args.model_uri)
        if owner is not None and owner != shop:
            print(f"note: scoring shop {shop!r} with shop {owner!r}'s model (--model-uri)")
        return model_artifact(args.model_uri, "scorer")
    uri, _ = champion_uri(shop, (CHURN, LOYALTY), use="score with")
    if not uri.endswith(f".{CHURN}@champion"):
        print(f"note: shop {shop!r} has no churn model; using {uri} (churn columns empty)")
    return model_artifact(uri, "scorer")


def _fit_here(shop: Any, as_of: Any, args: argparse.Namespace) -> Any:
    """A scorer fitted on the data before `as_of`; a shop too young to learn churn gets the
    rest (value, timing, segments) and a note saying why churn is empty."""
    from models.customer_scores import CustomerScorer
    from patronage.cli import PatronageError

    scorer = CustomerScorer(risk_thresholds=tuple(args.risk_thresholds))
    options = {
        "churn_horizon_days": args.churn_horizon_days,
        "seed": args.seed,
        "value_horizon_days": args.value_horizon_days,
    }
    try:
        scorer.fit(shop, as_of, **options)
        print(f"scorer fitted at {as_of} on {len(scorer.cutoffs_)} churn cut-offs")
        _say_spend_choice(scorer)
        return scorer
    except ValueError as error:
        churn_error = error
    try:
        scorer.fit(shop, as_of, fit_churn=False, **options)
    except ValueError as error:
        raise PatronageError(f"cannot fit the scorer: {error}") from None
    print(f"note: churn not scored ({churn_error}); loyalty, value and timing fitted at {as_of}")
    _say_spend_choice(scorer)
    return scorer


def _say_spend_choice(scorer: Any) -> None:
    """Print which spend forecast the backtest chose for the value horizon, and why."""
    if scorer.spend_choice_ is not None:
        print(f"predicted_spend: {scorer.spend_choice_.reason}")
