"""`patronage train`: validate, backtest, fit, log to MLflow, register, move aliases.

Order matters for failure safety: everything that can fail for data or model reasons (loading,
backtests, final fits, logging, loading every logged model back and predicting with it) happens
before the registry is touched. The registry phase keeps an undo list, so an error there (a
server going away mid-way) puts every alias and history tag back and deletes the versions this
run created. See docs/training.md for the metrics, windows and decision rule.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from training.progress import Progress
from training.registry import (
    CHALLENGER,
    CHURN,
    LOYALTY,
    METRIC_TAG_PREFIX,
    RECOMMENDER,
    champion_history,
    champion_version,
    set_champion,
)

BACKTEST_VERSION = 1
"""Bumped when the backtest definition changes, so recorded metrics stop counting as equal."""
KEY_METRICS = {
    RECOMMENDER: ("ndcg_at_10", "recall_at_10", "discovery_ndcg_at_10"),
    CHURN: ("roc_auc", "average_precision", "brier", "ece"),
    LOYALTY: ("orders_spearman", "orders_mae"),
}
"""Metrics copied onto each registered version as tags (listed by `patronage models`)."""
ARTIFACT_NAMES = {RECOMMENDER: "recommender", CHURN: "churn", LOYALTY: "loyalty"}


class TrainingFailed(RuntimeError):
    """Training stopped; the registry is as it was. The message says why and what to do."""


@dataclass(frozen=True)
class TrainOptions:
    """Arguments of `patronage train` (see its --help)."""

    directory: str | Path
    as_of: str | pd.Timestamp | None = None
    churn_horizon_days: int = 90
    recommendation_window_days: int = 30
    experiment: str = "patronage"
    seed: int = 0
    time_budget_s: float = 30.0
    force: bool = False
    max_reject_rate: float = 0.01
    rejects_dir: str | Path | None = None
    """Where the rejected rows and their reasons go (None: `directory/_rejects/`)."""
    progress: bool = True
    tracking_uri: str | None = None
    extra_purchases: pd.DataFrame | None = None
    """Purchases received since the files were written (the serving event log), canonical types."""
    extra_feedback: pd.DataFrame | None = None
    extra_items: pd.DataFrame | None = None
    """The latest posted row of each item (`serving.events.read_item_updates`): catalog changes
    such as `available: false`, applied over the files' items table."""
    events_source: str = ""


@dataclass
class Candidate:
    """One model about to be logged and registered, with its backtest."""

    name: str
    python_model: Any
    artifacts: dict[str, str]
    input_example: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    backtest_key: str
    cut: pd.Timestamp
    evaluate_champion: Callable[[Any], dict[str, float]]
    predict_params: dict[str, Any] | None = None
    backtest_dir: str = ""
    """Local directory of the backtest model (fitted before `cut`), logged with the run."""
    backtest_loader: Callable[[Path], Any] | None = None
    """Reads a logged backtest model into an object `evaluate_champion` accepts."""
    backtest_model_uri: str = ""
    champion_metrics: dict[str, float] | None = None
    comparison: str = ""
    model_uri: str = ""
    model_id: str = ""


@dataclass(frozen=True)
class ModelOutcome:
    """What happened to one registered model in this run."""

    name: str
    version: str
    decision: str
    reason: str
    champion: str
    """The champion version after this run."""
    metrics: dict[str, float]


@dataclass
class TrainResult:
    """The outcome of `train`: run, versions and decisions."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    as_of: pd.Timestamp
    seconds: float
    outcomes: list[ModelOutcome] = field(default_factory=list)
    backtest: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"trained on data before {self.as_of.isoformat()} in {self.seconds:.1f} s; "
            f"MLflow run {self.run_id} ({self.tracking_uri})"
        ]
        for outcome in self.outcomes:
            key = ", ".join(
                f"{m}={outcome.metrics[m]:.4f}"
                for m in KEY_METRICS[outcome.name]
                if m in outcome.metrics
            )
            lines.append(
                f"  {outcome.name} v{outcome.version}: {outcome.decision} "
                f"(champion: v{outcome.champion}); {key}"
            )
            lines.append(f"    {outcome.reason}")
        return "\n".join(lines)


def train(options: TrainOptions) -> TrainResult:
    """Run the whole pipeline; raises `TrackingUnavailable` or `TrainingFailed` (registry intact).

    Timestamps are UTC; `as_of` defaults to midnight after the last purchase."""
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    progress = Progress(total=9, enabled=options.progress)
    progress.step("connecting to the MLflow tracking store")
    from training.tracking import connect, ensure_experiment

    store, client = connect(options.tracking_uri)
    try:
        experiment_id = ensure_experiment(client, store, options.experiment)
    except Exception as error:
        raise TrainingFailed(f"cannot open experiment {options.experiment!r}: {error}") from error
    with threadpool_limits(1), tempfile.TemporaryDirectory(prefix="patronage-train-") as tmp:
        workdir = Path(tmp)
        try:
            progress.step("loading and validating the shop")
            shop, as_of, data = _load(options)
            candidates, report = _backtest_and_fit(shop, as_of, data, options, workdir, progress)
            progress.step("comparing with the current champions")
            for candidate in candidates:
                _compare_with_champion(client, candidate)
        except Exception as error:  # any failure before logging leaves the registry alone
            progress.close()
            kind = (
                ""
                if isinstance(error, ValueError | FileNotFoundError)
                else (f"{type(error).__name__}: ")
            )
            raise TrainingFailed(f"training failed, registry unchanged: {kind}{error}") from error
        progress.step("logging the run, report and models to MLflow")
        run_id = _log_run(options, experiment_id, as_of, data, candidates, report, workdir)
        progress.step("registering versions and moving aliases")
        outcomes = _register(client, candidates, options, as_of, run_id, data)
    progress.close()
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=store.tracking_uri,
        as_of=as_of,
        seconds=time.perf_counter() - started,
        outcomes=outcomes,
        backtest={c.name: {"model": c.metrics, **c.baselines} for c in candidates},
    )


# --- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSummary:
    """What was trained on: where, its content hash, size and time range."""

    source: str
    sha256: str
    rows: dict[str, int]
    first_order_at: pd.Timestamp
    last_order_at: pd.Timestamp
    rejected_rows: int


def _load(options: TrainOptions) -> tuple[Any, pd.Timestamp, DataSummary]:
    from features.loading import DataRejected, load_shop, to_utc

    directory = Path(options.directory)
    try:
        rejects_dir = Path(options.rejects_dir) if options.rejects_dir is not None else None
        loaded = load_shop(
            directory, max_reject_rate=options.max_reject_rate, rejects_dir=rejects_dir
        )
    except DataRejected as error:
        raise ValueError(f"the data in {directory} was refused: {error}") from error
    shop = loaded.shop
    if shop.purchases.empty:
        raise ValueError(f"{directory} holds no valid purchases")
    last = shop.purchases["ordered_at"].max()
    as_of = (
        to_utc(options.as_of)
        if options.as_of is not None
        else last.floor("D") + pd.Timedelta(days=1)
    )
    shop, events = _merge_events(shop, options)
    shop = shop.before(as_of)
    if shop.purchases.empty:
        raise ValueError(f"no purchase before --as-of {as_of.isoformat()}")
    rejected = sum(int(table.rejected) for table in loaded.report.tables.values())
    sha256 = _content_hash(directory)
    if events:
        sha256 = hashlib.sha256(f"{sha256}+{events}".encode()).hexdigest()
    data = DataSummary(
        source=str(directory.resolve()) + (f" + events {options.events_source}" if events else ""),
        sha256=sha256,
        rows={
            "purchases": len(shop.purchases),
            "feedback": len(shop.feedback),
            "items": len(shop.items),
            "customers": len(shop.customers),
        },
        first_order_at=shop.purchases["ordered_at"].min(),
        last_order_at=shop.purchases["ordered_at"].max(),
        rejected_rows=rejected,
    )
    return shop, as_of, data


def _merge_events(shop: Any, options: TrainOptions) -> tuple[Any, str]:
    """The shop with the event log's item updates applied and its purchases and feedback
    appended; returns (shop, events hash).

    A purchase already in the files (same order_id and item_id) is kept once; events naming an
    item the catalog does not know (the files' items plus items posted as events) are dropped."""
    from features.shop import Shop

    frames = [
        f
        for f in (options.extra_purchases, options.extra_feedback, options.extra_items)
        if f is not None
    ]
    if not any(len(f) for f in frames):
        return shop, ""
    items = apply_item_updates(shop.items, options.extra_items)
    purchases, feedback = shop.purchases, shop.feedback
    if options.extra_purchases is not None and len(options.extra_purchases):
        known_items = set(items["item_id"].astype(str))
        extra = options.extra_purchases[
            options.extra_purchases["item_id"].astype(str).isin(known_items)
        ]
        purchases = pd.concat([purchases, extra[purchases.columns.intersection(extra.columns)]])
        purchases = purchases.drop_duplicates(["order_id", "item_id"], keep="first")
        purchases = purchases.sort_values("ordered_at", kind="stable").reset_index(drop=True)
    if options.extra_feedback is not None and len(options.extra_feedback):
        extra_feedback = options.extra_feedback
        feedback = pd.concat(
            [feedback, extra_feedback[feedback.columns.intersection(extra_feedback.columns)]]
        ).reset_index(drop=True)
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes())
    merged = Shop(purchases=purchases, feedback=feedback, items=items, customers=shop.customers)
    return merged, digest.hexdigest()


def apply_item_updates(items: pd.DataFrame, updates: pd.DataFrame | None) -> pd.DataFrame:
    """The catalog with posted item rows applied (a new frame; `items` is not modified).

    `updates` holds one row per item (`serving.events.read_item_updates`: per column the latest
    value posted); its non-empty values replace the catalog's. Items the catalog does not have
    are added (available unless the update says otherwise)."""
    if updates is None or not len(updates):
        return items
    updates = updates.drop_duplicates("item_id", keep="last").set_index(
        updates["item_id"].astype(str).rename(None)
    )
    catalog = items.set_index(items["item_id"].astype(str).rename(None), drop=False)
    new_ids = updates.index.difference(catalog.index)
    if len(new_ids):
        added = pd.DataFrame({"item_id": list(new_ids)}, index=new_ids)
        catalog = pd.concat([catalog, added.reindex(columns=catalog.columns)])
        catalog.loc[new_ids, "available"] = True
    for column in ("available", "name", "category", "price"):
        if column not in updates.columns or column not in catalog.columns:
            continue
        given = updates[column].dropna()
        if len(given):
            catalog.loc[given.index, column] = given.to_numpy()
    return catalog.astype(items.dtypes.to_dict()).reset_index(drop=True)


def _content_hash(directory: Path) -> str:
    """SHA-256 over the contract table files (name and bytes, sorted by name)."""
    from features.contract import FILE_SUFFIXES, TABLES

    digest = hashlib.sha256()
    for name in sorted(TABLES):
        for suffix in FILE_SUFFIXES:
            path = directory / f"{name}{suffix}"
            if path.exists():
                digest.update(path.name.encode())
                with path.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
    return digest.hexdigest()


def _backtest_key(
    data: DataSummary, name: str, cut: pd.Timestamp, end: pd.Timestamp, options: TrainOptions
) -> str:
    """Identity of a backtest: same data, window and settings give the same key."""
    spec = {
        "v": BACKTEST_VERSION,
        "model": name,
        "data": data.sha256,
        "cut": cut.isoformat(),
        "end": end.isoformat(),
        "horizon": options.churn_horizon_days,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


# --- backtests and fits ----------------------------------------------------------------------
def _backtest_and_fit(
    shop: Any,
    as_of: pd.Timestamp,
    data: DataSummary,
    options: TrainOptions,
    workdir: Path,
    progress: Progress,
) -> tuple[list[Candidate], Any]:
    from training.report import EvaluationReport

    report = EvaluationReport(title=f"Patronage training report, data before {as_of.isoformat()}")
    report.summary += [
        ("data", data.source),
        ("content sha256", data.sha256),
        ("rows", ", ".join(f"{k} {v}" for k, v in data.rows.items())),
        ("orders from", f"{data.first_order_at.isoformat()} to {data.last_order_at.isoformat()}"),
        ("as_of (exclusive)", as_of.isoformat()),
        ("seed", str(options.seed)),
    ]
    recommender = _recommender_candidate(shop, as_of, data, options, workdir, progress, report)
    customers = _customer_candidates(shop, as_of, data, options, workdir, progress, report)
    return [recommender, *customers], report


def _recommender_candidate(
    shop: Any,
    as_of: pd.Timestamp,
    data: DataSummary,
    options: TrainOptions,
    workdir: Path,
    progress: Progress,
    report: Any,
) -> Candidate:
    from models.pyfunc import RecommenderModel
    from models.recommenders.bundle import fit_recommender_bundle
    from training.recommendation_backtest import (
        baseline_lists,
        bundle_lists,
        evaluate_lists,
        window_truth,
    )

    window = float(options.recommendation_window_days)
    cut = as_of - pd.Timedelta(days=window)
    progress.step(f"recommender backtest: fit before {cut.date()}, test to {as_of.date()}")
    past = shop.before(cut)
    try:
        backtest_bundle = fit_recommender_bundle(
            past, cut, seed=options.seed, time_budget_s=options.time_budget_s
        )
    except ValueError as error:
        raise ValueError(f"recommender backtest fit failed: {error}") from error
    truth = window_truth(shop, backtest_bundle.customer_ids, cut, as_of, seed=options.seed)
    if not truth.relevant["repeat"]:
        raise ValueError(
            f"no known customer bought in the recommendation window [{cut}, {as_of}): use a "
            "longer --recommendation-window-days or an earlier --as-of"
        )
    n_items = len(backtest_bundle.item_ids)
    model_eval = evaluate_lists(bundle_lists(backtest_bundle, truth), truth, n_items)
    baselines = {
        name: evaluate_lists(lists, truth, n_items)
        for name, lists in baseline_lists(backtest_bundle, past, truth, window).items()
    }
    report.metric_tables["Recommendations: backtest"] = {
        "model": model_eval.metrics,
        **{name: e.metrics for name, e in baselines.items()},
    }
    report.recommendation_curves = {"model": model_eval.curves} | {
        name: e.curves for name, e in baselines.items()
    }
    report.summary.append(("recommendation window", f"{cut.isoformat()} to {as_of.isoformat()}"))
    report.summary.append(("recommender strategies", json.dumps(backtest_bundle.strategies)))

    progress.step("fitting the final recommender on all data")
    try:
        bundle = fit_recommender_bundle(
            shop, as_of, seed=options.seed, time_budget_s=options.time_budget_s
        )
    except ValueError as error:
        raise ValueError(f"recommender fit failed: {error}") from error
    bundle_dir = workdir / "recommender_bundle"
    bundle.save(bundle_dir)
    known = [str(c) for c in bundle.customer_ids[:3]]
    example = pd.DataFrame({"customer_id": known + ["__new_customer__"]})

    def evaluate_champion(wrapper: Any) -> dict[str, float]:
        return evaluate_lists(bundle_lists(wrapper.bundle, truth), truth, n_items).metrics

    backtest_dir = workdir / "backtest" / "recommender_bundle"
    backtest_bundle.save(backtest_dir)

    def load_backtest(directory: Path) -> Any:
        from models.recommenders.bundle import RecommenderBundle

        return SimpleNamespace(bundle=RecommenderBundle.load(directory))

    return Candidate(
        name=RECOMMENDER,
        python_model=RecommenderModel(),
        artifacts={"bundle": str(bundle_dir)},
        input_example=example,
        predict_params={"k": 10, "exclude_purchased": "non-repeatable", "category": ""},
        metrics=model_eval.metrics,
        baselines={name: e.metrics for name, e in baselines.items()},
        backtest_key=_backtest_key(data, RECOMMENDER, cut, as_of, options),
        cut=cut,
        evaluate_champion=evaluate_champion,
        backtest_dir=str(backtest_dir),
        backtest_loader=load_backtest,
    )


def _customer_candidates(
    shop: Any,
    as_of: pd.Timestamp,
    data: DataSummary,
    options: TrainOptions,
    workdir: Path,
    progress: Progress,
    report: Any,
) -> list[Candidate]:
    from models.customer_scores import CustomerScorer
    from models.pyfunc import ChurnModel, LoyaltyModel, write_score_table
    from training.customer_backtest import (
        churn_metrics,
        churn_ranking_metrics,
        constant_forecast_metrics,
        customer_truth,
        order_forecast_metrics,
    )

    horizon = int(options.churn_horizon_days)
    cut = as_of - pd.Timedelta(days=horizon)
    progress.step(f"churn and loyalty backtest: fit before {cut.date()}, test to {as_of.date()}")
    past = shop.before(cut)
    truth = customer_truth(shop, cut, as_of)
    try:
        backtest_scorer = CustomerScorer().fit(
            past, cut, churn_horizon_days=horizon, seed=options.seed
        )
        backtest_scores = backtest_scorer.score(past, cut)
    except ValueError as error:
        raise ValueError(f"churn/loyalty backtest fit failed: {error}") from error

    def evaluate(scores: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Backtest metrics of a score table, keyed CHURN and LOYALTY."""
        table = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index(
            "customer_id"
        )
        table = table.reindex(truth.churned.index)
        probability = table["churn_probability"].astype(float).fillna(truth.base_rate)
        churn = churn_metrics(truth.churned.to_numpy(), probability.to_numpy())
        expected = table["expected_orders_90d"].astype(float) * (horizon / 90.0)
        loyalty = order_forecast_metrics(truth.orders.to_numpy(), expected.to_numpy())
        return {CHURN: churn, LOYALTY: loyalty}

    backtest_metrics = evaluate(backtest_scores)
    churn_eval, loyalty_eval = backtest_metrics[CHURN], backtest_metrics[LOYALTY]
    labels = truth.churned.to_numpy()
    recency = truth.days_since_last_order.fillna(truth.days_since_last_order.max()).to_numpy()
    churn_baselines = {
        "recency": churn_ranking_metrics(labels, recency),
        "base_rate": constant_forecast_metrics(labels, truth.base_rate),
    }
    loyalty_baselines = {
        "past_rate": order_forecast_metrics(
            truth.orders.to_numpy(), truth.past_rate_orders.to_numpy()
        )
    }
    indexed = backtest_scores.assign(customer_id=backtest_scores["customer_id"].astype(str))
    indexed = indexed.set_index("customer_id").reindex(truth.churned.index)
    report.churn_label = labels
    report.churn_scores = {
        "model": indexed["churn_probability"].astype(float).fillna(truth.base_rate).to_numpy(),
        "recency (days since last order)": recency,
    }
    report.metric_tables["Churn: backtest"] = {"model": churn_eval, **churn_baselines}
    report.metric_tables["Loyalty (expected orders): backtest"] = {
        "model": loyalty_eval,
        **loyalty_baselines,
    }
    report.summary.append(("churn window", f"{cut.isoformat()} to {as_of.isoformat()}"))
    report.summary.append(("churn base rate (one horizon earlier)", f"{truth.base_rate:.4f}"))

    progress.step("fitting the final churn and loyalty models on all data")
    try:
        scorer = CustomerScorer().fit(shop, as_of, churn_horizon_days=horizon, seed=options.seed)
        scores = scorer.score(shop, as_of)
    except ValueError as error:
        raise ValueError(f"churn/loyalty fit failed: {error}") from error
    if "segment" in scores.columns:
        report.segment_sizes = {
            str(k): int(v) for k, v in scores["segment"].value_counts().sort_index().items()
        }
    scorer_dir = workdir / "customer_scorer"
    scorer.save(scorer_dir)
    # The served loyalty answer counts days since the last order from this column (UTC).
    known_orders = shop.purchases[shop.purchases["ordered_at"] < as_of]
    last_order_at = known_orders.groupby("customer_id")["ordered_at"].max()
    served_table = scores.assign(
        last_order_at=scores["customer_id"].astype(str).map(last_order_at).to_numpy()
    )
    scores_dir = write_score_table(
        served_table, workdir / "customer_scores", as_of, {"churn_horizon_days": horizon}
    )
    artifacts = {"scores": str(scores_dir), "scorer": str(scorer_dir)}
    known = scores["customer_id"].astype(str).head(3).tolist()
    example = pd.DataFrame({"customer_id": known + ["__new_customer__"]})

    def rescore(wrapper: Any) -> pd.DataFrame:
        # A champion fitted before the cut scores the cut honestly with its own scorer.
        if getattr(wrapper, "scorer", None) is not None:
            return wrapper.scorer.score(past, cut)
        return wrapper.scores.reset_index(drop=True)

    backtest_dir = workdir / "backtest" / "customer_scorer"
    backtest_scorer.save(backtest_dir)

    def load_backtest(directory: Path) -> Any:
        return SimpleNamespace(scorer=CustomerScorer.load(directory), scores=None)

    def candidate(
        name: str, python_model: Any, baselines: dict[str, dict[str, float]]
    ) -> Candidate:
        # Churn and loyalty share the scorer, its backtest and the score table; only the
        # metrics they are judged on differ.
        def evaluate_champion(wrapper: Any) -> dict[str, float]:
            return evaluate(rescore(wrapper))[name]

        return Candidate(
            name=name,
            python_model=python_model,
            artifacts=artifacts,
            input_example=example,
            metrics=backtest_metrics[name],
            baselines=baselines,
            backtest_key=_backtest_key(data, name, cut, as_of, options),
            cut=cut,
            evaluate_champion=evaluate_champion,
            backtest_dir=str(backtest_dir),
            backtest_loader=load_backtest,
        )

    return [
        candidate(CHURN, ChurnModel(), churn_baselines),
        candidate(LOYALTY, LoyaltyModel(), loyalty_baselines),
    ]


# --- champion comparison ---------------------------------------------------------------------
def _recorded_metrics(version: Any) -> dict[str, float]:
    metrics = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                metrics[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except ValueError:
                continue
    return metrics


def _compare_with_champion(client: Any, candidate: Candidate) -> None:
    """Fill `champion_metrics` and `comparison`: the champion on this candidate's backtest.

    In order of preference:
    1. same backtest key (same data, window, settings): the champion's recorded metrics are
       exactly what re-running its backtest gives;
    2. champion fitted at or before this cut: the served champion itself is evaluated on this
       window (out of sample for it);
    3. champion's own backtest model (fitted before its cut, which is at or before this one):
       evaluated on this window, the champion's procedure on the same backtest, leak-free;
    4. otherwise (a champion from a later as_of): its recorded backtest, and the reason says so."""
    champion = champion_version(client, candidate.name)
    if champion is None:
        return
    version = str(champion.version)
    tags = champion.tags or {}
    recorded = _recorded_metrics(champion)
    if tags.get("patronage.backtest_key") == candidate.backtest_key:
        candidate.champion_metrics = recorded
        candidate.comparison = f"same backtest as champion v{version}"
        return
    problems = []
    champion_as_of = tags.get("patronage.as_of")
    if champion_as_of and pd.Timestamp(champion_as_of) <= candidate.cut:
        try:
            import mlflow.pyfunc

            loaded = mlflow.pyfunc.load_model(f"models:/{candidate.name}/{version}")
            candidate.champion_metrics = candidate.evaluate_champion(loaded.unwrap_python_model())
            candidate.comparison = f"champion v{version} evaluated on this backtest window"
            return
        except Exception as error:  # a broken champion must not block training
            problems.append(f"loading it failed ({type(error).__name__}: {str(error)[:200]})")
    champion_cut = tags.get("patronage.backtest_cut")
    backtest_uri = tags.get("patronage.backtest_model_uri")
    if (
        backtest_uri
        and champion_cut
        and candidate.backtest_loader is not None
        and pd.Timestamp(champion_cut) <= candidate.cut
    ):
        try:
            import mlflow

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=backtest_uri))
            model = candidate.backtest_loader(local)
            candidate.champion_metrics = candidate.evaluate_champion(model)
            candidate.comparison = (
                f"backtest model of champion v{version} (fitted before {champion_cut}) "
                "evaluated on this backtest window"
            )
            return
        except Exception as error:
            problems.append(
                f"its backtest model failed ({type(error).__name__}: {str(error)[:200]})"
            )
    candidate.champion_metrics = recorded
    why = "; ".join(problems) or "it has no leak-free model for this window"
    candidate.comparison = (
        f"champion v{version}: {why}; compared with its recorded backtest on its own window"
    )


# --- logging ---------------------------------------------------------------------------------
def pip_requirements() -> list[str]:
    """Pinned requirements of the logged models (Patronage itself must also be installed)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = (
        "mlflow",
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "pyarrow",
        "implicit",
        "threadpoolctl",
        "skops",
        "duckdb",
        "ibis-framework",
    )
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def _log_run(
    options: TrainOptions,
    experiment_id: str,
    as_of: pd.Timestamp,
    data: DataSummary,
    candidates: list[Candidate],
    report: Any,
    workdir: Path,
) -> str:
    """One MLflow run with params, metrics, dataset, report and the three models (verified)."""
    import mlflow

    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            try:
                _log_contents(options, as_of, data, candidates, report, workdir)
            except Exception:
                mlflow.end_run(status="FAILED")
                raise
            return str(run.info.run_id)
    except TrainingFailed:
        raise
    except Exception as error:
        raise TrainingFailed(
            f"logging to MLflow failed, registry unchanged: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error


def _log_contents(
    options: TrainOptions,
    as_of: pd.Timestamp,
    data: DataSummary,
    candidates: list[Candidate],
    report: Any,
    workdir: Path,
) -> None:
    import mlflow

    mlflow.log_params(
        {
            "data.source": data.source,
            "data.sha256": data.sha256,
            "as_of": as_of.isoformat(),
            "churn_horizon_days": options.churn_horizon_days,
            "recommendation_window_days": options.recommendation_window_days,
            "seed": options.seed,
            "time_budget_s": options.time_budget_s,
            "force": options.force,
            "max_reject_rate": options.max_reject_rate,
            **{f"data.rows.{k}": v for k, v in data.rows.items()},
            "data.first_order_at": data.first_order_at.isoformat(),
            "data.last_order_at": data.last_order_at.isoformat(),
        }
    )
    mlflow.set_tags({"patronage.as_of": as_of.isoformat(), "patronage.data_sha256": data.sha256})
    metrics: dict[str, float] = {}
    for candidate in candidates:
        short = ARTIFACT_NAMES[candidate.name]
        for key, value in candidate.metrics.items():
            metrics[f"backtest.{short}.model.{key}"] = value
        for baseline, values in candidate.baselines.items():
            for key, value in values.items():
                metrics[f"backtest.{short}.{baseline}.{key}"] = value
        for key, value in (candidate.champion_metrics or {}).items():
            metrics[f"backtest.{short}.champion.{key}"] = value
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
    with _quiet_mlflow():
        _log_dataset(data, as_of)
    report.summary += [
        (f"{c.name} vs champion", c.comparison or "no champion yet") for c in candidates
    ]
    report_dir = workdir / "report"
    report.write(report_dir)
    mlflow.log_artifacts(str(report_dir), artifact_path="report")
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    logged: dict[str, str] = {}
    for candidate in candidates:
        if not candidate.backtest_dir:
            continue
        if candidate.backtest_dir not in logged:
            name = Path(candidate.backtest_dir).name
            mlflow.log_artifacts(candidate.backtest_dir, artifact_path=f"backtest/{name}")
            logged[candidate.backtest_dir] = f"runs:/{run_id}/backtest/{name}"
        candidate.backtest_model_uri = logged[candidate.backtest_dir]
    requirements = pip_requirements()
    with _quiet_mlflow():
        for candidate in candidates:
            _log_model(candidate, requirements)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's generic advice while logging our models: the cloudpickle warning is
    answered by `check_model_dir`, the integer-column hint does not apply (ranks never miss)."""
    import logging
    import warnings

    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _log_model(candidate: Candidate, requirements: list[str]) -> None:
    """Log one wrapper with its artifacts, signature and input example, then verify it."""
    import mlflow
    from mlflow.models import infer_signature

    output = _output_example(candidate)
    signature = infer_signature(candidate.input_example, output, params=candidate.predict_params)
    info = mlflow.pyfunc.log_model(
        name=ARTIFACT_NAMES[candidate.name],
        python_model=candidate.python_model,
        artifacts=candidate.artifacts,
        signature=signature,
        input_example=candidate.input_example,
        pip_requirements=requirements,
        tags={"patronage.registered_model": candidate.name},
    )
    candidate.model_uri = info.model_uri
    candidate.model_id = info.model_id or ""
    _verify_logged_model(candidate)


class _LocalContext:
    """The part of MLflow's PythonModelContext the wrappers read: artifact paths."""

    def __init__(self, artifacts: dict[str, str]) -> None:
        self.artifacts = artifacts
        self.model_config: dict[str, Any] = {}


def _output_example(candidate: Candidate) -> pd.DataFrame:
    """The wrapper's answer to its input example, from a fresh instance (the logged instance
    stays empty, so its pickle names the class only)."""
    wrapper = type(candidate.python_model)()
    wrapper.load_context(_LocalContext(candidate.artifacts))
    return wrapper.predict(None, candidate.input_example, params=candidate.predict_params)


def _log_dataset(data: DataSummary, as_of: pd.Timestamp) -> None:
    import mlflow

    frame = pd.DataFrame(
        {
            "table": list(data.rows),
            "rows": list(data.rows.values()),
        }
    )
    from mlflow.data.pandas_dataset import from_pandas

    dataset = from_pandas(frame, source=data.source, name="shop", digest=data.sha256[:32])
    mlflow.log_input(
        dataset,
        context="training",
        tags={
            "sha256": data.sha256,
            "rows": str(sum(data.rows.values())),
            "purchases": str(data.rows["purchases"]),
            "time_range": f"{data.first_order_at.isoformat()}/{data.last_order_at.isoformat()}",
            "as_of": as_of.isoformat(),
        },
    )


def _verify_logged_model(candidate: Candidate) -> None:
    """Load the logged model back (as anyone would) and predict on its input example."""
    import mlflow.pyfunc

    from models.pyfunc import check_model_dir

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=candidate.model_uri)
        check_model_dir(local)
        loaded = mlflow.pyfunc.load_model(local)
        output = loaded.predict(candidate.input_example, params=candidate.predict_params)
    except Exception as error:
        raise TrainingFailed(
            f"the logged {candidate.name} model does not load back ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); registry unchanged"
        ) from error
    if output is None or len(output) == 0:
        raise TrainingFailed(
            f"the logged {candidate.name} model predicts nothing for its input example; "
            "registry unchanged"
        )


# --- registry --------------------------------------------------------------------------------
def _register(
    client: Any,
    candidates: list[Candidate],
    options: TrainOptions,
    as_of: pd.Timestamp,
    run_id: str,
    data: DataSummary,
) -> list[ModelOutcome]:
    """Register every candidate, set `challenger`, move `champion` where the rule allows.

    All-or-nothing: on any error the versions created here are deleted and aliases and history
    tags restored, then `TrainingFailed` is raised."""
    from mlflow.exceptions import MlflowException

    from training.promotion import decide

    undo: list[Callable[[], None]] = []
    outcomes: list[ModelOutcome] = []
    try:
        decisions = [
            decide(
                c.name, c.metrics, c.champion_metrics, force=options.force, comparison=c.comparison
            )
            for c in candidates
        ]
        for candidate, decision in zip(candidates, decisions, strict=True):
            name = candidate.name
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(
                    name, description=f"Patronage {ARTIFACT_NAMES[name]} model (docs/training.md)"
                )
                undo.append(partial(client.delete_registered_model, name))
            previous_challenger = _alias_version(client, name, CHALLENGER)
            previous_champion = champion_version(client, name)
            previous_history = champion_history(client, name)
            tags = {
                "patronage.as_of": as_of.isoformat(),
                "patronage.backtest_key": candidate.backtest_key,
                "patronage.backtest_cut": candidate.cut.isoformat(),
                "patronage.backtest_model_uri": candidate.backtest_model_uri,
                "patronage.data_sha256": data.sha256,
                "patronage.seed": str(options.seed),
                "patronage.decision": decision.decision,
                "patronage.reason": decision.reason[:5000],
                **{
                    f"{METRIC_TAG_PREFIX}{key}": repr(float(candidate.metrics[key]))
                    for key in KEY_METRICS[name]
                    if key in candidate.metrics
                },
            }
            # A tracking server wants the logged model's id beside a models:/ source.
            version = client.create_model_version(
                name,
                candidate.model_uri,
                run_id=run_id,
                tags=tags,
                model_id=candidate.model_id or None,
            )
            number = str(version.version)
            undo.append(partial(client.delete_model_version, name, number))
            undo.append(partial(_restore_alias, client, name, CHALLENGER, previous_challenger))
            client.set_registered_model_alias(name, CHALLENGER, number)
            if decision.promote:
                undo.append(
                    partial(_restore_champion, client, name, previous_champion, previous_history)
                )
                set_champion(client, name, number, decision.decision, decision.reason)
                champion = number
            else:
                champion = str(previous_champion.version) if previous_champion else "-"
            outcomes.append(
                ModelOutcome(
                    name,
                    number,
                    decision.decision,
                    decision.reason,
                    champion,
                    dict(candidate.metrics),
                )
            )
    except Exception as error:
        problems = []
        for step in reversed(undo):
            try:
                step()
            except Exception as undo_error:  # keep undoing the rest
                problems.append(str(undo_error).splitlines()[0] if str(undo_error) else "")
        extra = f" (undo also failed: {'; '.join(problems)})" if problems else ""
        raise TrainingFailed(
            f"registering the models failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the registry was put back as "
            f"it was{extra}"
        ) from error
    return outcomes


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _restore_alias(client: Any, name: str, alias: str, version: str | None) -> None:
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # the alias went with the deleted version
    else:
        client.set_registered_model_alias(name, alias, version)


def _restore_champion(client: Any, name: str, previous: Any, history: list[str]) -> None:
    from training.registry import CHAMPION, HISTORY_TAG

    _restore_alias(client, name, CHAMPION, str(previous.version) if previous else None)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
