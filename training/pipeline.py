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

from models.registry_names import (
    BASELINE_NOTE_TAG,
    BASELINE_TAG,
    ROLE_TAG,
    ROLES,
    ROWS_TAG,
    SHOP_TAG,
    SKIPPED_TAG,
    SOURCE_TAG,
    registered_name,
    shop_of_directory,
)
from training.progress import Progress
from training.registry import (
    CHALLENGER,
    CHURN,
    LOYALTY,
    METRIC_TAG_PREFIX,
    RECOMMENDER,
    baseline_verdict,
    champion_history,
    champion_version,
    set_champion,
)

BACKTEST_VERSION = 1
"""Bumped when the backtest definition changes, so recorded metrics stop counting as equal."""
KEY_METRICS: dict[str, tuple[str, ...]] = {
    RECOMMENDER: ("ndcg_at_10", "recall_at_10", "discovery_ndcg_at_10"),
    CHURN: ("roc_auc", "average_precision", "brier", "ece"),
    LOYALTY: ("orders_spearman", "orders_mae"),
}
"""Metrics copied onto each registered version as tags (listed by `patronage models`)."""


class TrainingFailed(RuntimeError):
    """Training stopped; the registry is as it was. The message says why and what to do."""


class RoleSkipped(ValueError):
    """The shop's data cannot carry one role; the message is one plain sentence saying why and
    what would make it possible. The other roles still train."""


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
    shop: str | None = None
    """The shop's name in the registry (None: the data directory's name)."""
    roles: tuple[str, ...] = ROLES
    """The roles to train (recommender, churn, loyalty)."""


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
    beats_baseline: bool = True
    baseline_note: str = ""
    champion_beats_baseline: bool | None = None


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
    beats_baseline: bool = True
    baseline_note: str = ""


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
    shop: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    """Roles the data could not carry, with the sentence saying why."""
    notes: list[str] = field(default_factory=list)
    """What else the user should know (e.g. posted events after an explicit --as-of)."""

    def describe(self) -> str:
        """A few lines for the terminal: each role trained (decision, key metrics, whether it
        beats its plain baseline) or skipped (why), then the notes."""
        lines = [
            f"shop {self.shop!r}: trained on data before {self.as_of.isoformat()} in "
            f"{self.seconds:.1f} s; MLflow run {self.run_id} ({self.tracking_uri})"
        ]
        for outcome in self.outcomes:
            key = ", ".join(
                f"{m}={outcome.metrics[m]:.4f}"
                for m in KEY_METRICS[outcome.name]
                if m in outcome.metrics
            )
            lines.append(
                f"  {outcome.name} v{outcome.version} ({registered_name(self.shop, outcome.name)})"
                f": {outcome.decision} (champion: v{outcome.champion}); {key}"
            )
            lines.append(f"    {outcome.reason}")
            warning = "" if outcome.beats_baseline else "WARNING: "
            lines.append(f"    {warning}{outcome.baseline_note}")
        for role, reason in self.skipped.items():
            lines.append(f"  {role}: skipped. {reason}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def train(options: TrainOptions) -> TrainResult:
    """Run the whole pipeline; raises `TrackingUnavailable` or `TrainingFailed` (registry intact).

    Timestamps are UTC; `as_of` defaults to midnight after the last purchase."""
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    unknown = sorted(set(options.roles) - set(ROLES))
    if unknown or not options.roles:
        raise TrainingFailed(
            f"unknown role(s) {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(ROLES)}"
        )
    try:
        shop_name = options.shop or shop_of_directory(options.directory)
    except ValueError as error:
        raise TrainingFailed(str(error)) from None
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
            candidates, skipped, report = _backtest_and_fit(
                shop, as_of, data, options, workdir, progress
            )
            if not candidates:
                raise ValueError(
                    f"no role could be trained for shop {shop_name!r}: "
                    + " ".join(f"{role}: {reason}" for role, reason in skipped.items())
                )
            progress.step("comparing with the current champions")
            for candidate in candidates:
                _compare_with_champion(client, candidate, shop_name)
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
        outcomes = _register(client, shop_name, candidates, skipped, options, as_of, run_id, data)
    progress.close()
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=store.tracking_uri,
        as_of=as_of,
        seconds=time.perf_counter() - started,
        outcomes=outcomes,
        backtest={c.name: {"model": c.metrics, **c.baselines} for c in candidates},
        shop=shop_name,
        skipped=skipped,
        notes=list(data.notes),
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
    notes: tuple[str, ...] = ()
    """What the user should know about the data used (posted events left out, and why)."""


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
    # Events first: the default as_of must see a purchase posted after the files' last order.
    shop, events, notes = _merge_events(loaded.shop, options)
    if shop.purchases.empty:
        raise ValueError(f"{directory} holds no valid purchases")
    last = shop.purchases["ordered_at"].max()
    as_of = (
        to_utc(options.as_of)
        if options.as_of is not None
        else last.floor("D") + pd.Timedelta(days=1)
    )
    if events and options.extra_purchases is not None and len(options.extra_purchases):
        late = int((options.extra_purchases["ordered_at"] >= as_of).sum())
        if late:
            notes.append(
                f"{late} posted purchase line(s) are dated at or after --as-of "
                f"{as_of.isoformat()} and were not used"
            )
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
        notes=tuple(notes),
    )
    return shop, as_of, data


def _merge_events(shop: Any, options: TrainOptions) -> tuple[Any, str, list[str]]:
    """The shop with the event log's item updates applied and its purchases and feedback
    appended; returns (shop, events hash, notes on posted rows not used).

    A purchase already in the files (same order_id and item_id) is kept once; events naming an
    item the catalog does not know (the files' items plus items posted as events) are dropped
    and counted in the notes."""
    from features.shop import Shop

    frames = [
        f
        for f in (options.extra_purchases, options.extra_feedback, options.extra_items)
        if f is not None
    ]
    notes: list[str] = []
    if not any(len(f) for f in frames):
        return shop, "", notes
    items = apply_item_updates(shop.items, options.extra_items)
    purchases, feedback = shop.purchases, shop.feedback
    if options.extra_purchases is not None and len(options.extra_purchases):
        known_items = set(items["item_id"].astype(str))
        known = options.extra_purchases["item_id"].astype(str).isin(known_items)
        extra = options.extra_purchases[known]
        if not known.all():
            notes.append(
                f"{int((~known).sum())} posted purchase line(s) name an item the catalog does "
                "not know and were not used (post the item first)"
            )
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
    return merged, digest.hexdigest(), notes


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
) -> tuple[list[Candidate], dict[str, str], Any]:
    """The candidates of the roles asked for that the data can carry, the skipped roles with
    why, and the evaluation report. Each role is backtested and fitted on its own."""
    from training.promotion import versus_baseline
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
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    if RECOMMENDER in options.roles:
        try:
            candidates.append(
                _recommender_candidate(shop, as_of, data, options, workdir, progress, report)
            )
        except RoleSkipped as why:
            skipped[RECOMMENDER] = str(why)
    customer_roles = tuple(role for role in (CHURN, LOYALTY) if role in options.roles)
    if customer_roles:
        customers, customer_skips = _customer_candidates(
            shop, as_of, data, options, workdir, progress, report, customer_roles
        )
        candidates += customers
        skipped.update(customer_skips)
    for candidate in candidates:
        candidate.beats_baseline, candidate.baseline_note = versus_baseline(
            candidate.name, candidate.metrics, candidate.baselines
        )
        report.summary.append((f"{candidate.name} vs plain baseline", candidate.baseline_note))
    report.summary += [(f"{role} skipped", reason) for role, reason in skipped.items()]
    return candidates, skipped, report


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
    products = shop.purchases["item_id"].nunique()
    if products < 2:
        raise RoleSkipped(
            f"recommendations need at least two products that sold; this shop sold {products} "
            "before as_of, so there is nothing to choose between (churn and loyalty do not need "
            "products)"
        )
    past = shop.before(cut)
    if past.purchases.empty:
        raise RoleSkipped(
            f"the recommender backtest needs purchases before {cut.date()} (the "
            f"{window:g}-day window before as_of) and this shop has none: pass a shorter "
            "--recommendation-window-days or wait for more history"
        )
    try:
        backtest_bundle = fit_recommender_bundle(
            past, cut, seed=options.seed, time_budget_s=options.time_budget_s
        )
    except ValueError as error:
        raise RoleSkipped(
            f"the recommender could not be fitted on the data before {cut.date()}: {error}"
        ) from error
    truth = window_truth(shop, backtest_bundle.customer_ids, cut, as_of, seed=options.seed)
    if not truth.relevant["repeat"]:
        raise RoleSkipped(
            f"no customer known before {cut.date()} bought in the {window:g} days before as_of, "
            "so recommendations cannot be checked: pass a longer --recommendation-window-days "
            "or an earlier --as-of"
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
        raise RoleSkipped(f"the recommender could not be fitted on all data: {error}") from error
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


def churn_skip_reason(
    shop: Any, as_of: pd.Timestamp, horizon_days: int, step_days: float
) -> str | None:
    """Why the shop's history is too short to learn and backtest churn over `horizon_days`
    (one sentence with what to pass instead, or how long to wait), or None when it is not."""
    from models.churn import MIN_HISTORY_DAYS, churn_history_days

    first = shop.purchases["ordered_at"].min()
    have = (as_of - first).total_seconds() / 86_400
    # The final fit needs churn_history_days; its backtest, one horizon more before as_of.
    need = horizon_days + churn_history_days(horizon_days, step_days)
    if have >= need:
        return None
    longest = int((have - step_days - MIN_HISTORY_DAYS) // 2)
    options = [f"pass --churn-horizon-days {longest}"] if longest >= 7 else []
    options.append(f"wait {int(np.ceil(need - have))} more days")
    return (
        f"churn over {horizon_days} days needs {need:g} days of history ({need - horizon_days:g} "
        f"to learn from and {horizon_days} more to check it on); this shop has {have:.0f}: "
        + " or ".join(options)
    )


def loyalty_skip_reason(shop: Any, cut: pd.Timestamp, horizon_days: int) -> str | None:
    """Why loyalty (expected orders, value, segments) cannot be learned and backtested with a
    `horizon_days` window ending at `as_of` = `cut` + horizon, or None when it can."""
    before = shop.purchases[shop.purchases["ordered_at"] < cut]
    if before.empty:
        return (
            f"churn and loyalty are checked on the last {horizon_days} days and nobody ordered "
            f"before {cut.date()}: pass a shorter --churn-horizon-days or wait for more history"
        )
    orders = before.groupby(before["customer_id"].astype(str))["order_id"].nunique()
    if not (orders > 1).any():
        return (
            "churn and loyalty (expected orders, value) are learned from customers who ordered "
            f"more than once, and none did before {cut.date()}: wait for repeat orders"
        )
    return None


def _customer_candidates(
    shop: Any,
    as_of: pd.Timestamp,
    data: DataSummary,
    options: TrainOptions,
    workdir: Path,
    progress: Progress,
    report: Any,
    roles: tuple[str, ...],
) -> tuple[list[Candidate], dict[str, str]]:
    """Churn and loyalty candidates (they share one `CustomerScorer`, its backtest and score
    table; only the metrics they are judged on differ), and the roles skipped with why."""
    from models.customer_scores import CustomerScorer
    from models.pyfunc import ChurnModel, LoyaltyModel

    horizon = int(options.churn_horizon_days)
    cut = as_of - pd.Timedelta(days=horizon)
    skipped: dict[str, str] = {}
    loyalty_reason = loyalty_skip_reason(shop, cut, horizon)
    if loyalty_reason is not None:
        # Churn is learned from the same repeat orders, over more history.
        skipped = dict.fromkeys(roles, loyalty_reason)
        return [], skipped
    churn_reason = churn_skip_reason(shop, as_of, horizon, CustomerScorer().step_days)
    if CHURN in roles and churn_reason is not None:
        skipped[CHURN] = churn_reason
    fit_churn = CHURN in roles and churn_reason is None
    if not fit_churn and LOYALTY not in roles:
        return [], skipped
    progress.step(f"churn and loyalty backtest: fit before {cut.date()}, test to {as_of.date()}")
    past = shop.before(cut)
    try:
        backtest_scorer = _fit_scorer(past, cut, horizon, options.seed, fit_churn)
    except RoleSkipped as why:
        if LOYALTY not in roles:
            return [], {CHURN: str(why)}
        skipped[CHURN], fit_churn = str(why), False
        backtest_scorer = _fit_scorer(past, cut, horizon, options.seed, fit_churn)
    backtest = _CustomerBacktest(shop, cut, as_of, horizon)
    backtest_scores = backtest_scorer.score(past, cut)
    backtest_metrics = backtest.evaluate(backtest_scores)
    backtest.describe(report, backtest_scores, fit_churn)

    progress.step("fitting the final churn and loyalty models on all data")
    scorer = _fit_scorer(shop, as_of, horizon, options.seed, fit_churn)
    scores = scorer.score(shop, as_of)
    if "segment" in scores.columns:
        report.segment_sizes = {
            str(k): int(v) for k, v in scores["segment"].value_counts().sort_index().items()
        }
    artifacts = _customer_artifacts(shop, as_of, horizon, scorer, scores, workdir)
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

    def candidate(name: str, python_model: Any) -> Candidate:
        def evaluate_champion(wrapper: Any) -> dict[str, float]:
            return backtest.evaluate(rescore(wrapper))[name]

        return Candidate(
            name=name,
            python_model=python_model,
            artifacts=artifacts,
            input_example=example,
            metrics=backtest_metrics[name],
            baselines=backtest.baselines[name],
            backtest_key=_backtest_key(data, name, cut, as_of, options),
            cut=cut,
            evaluate_champion=evaluate_champion,
            backtest_dir=str(backtest_dir),
            backtest_loader=load_backtest,
        )

    candidates = []
    if fit_churn:
        candidates.append(candidate(CHURN, ChurnModel()))
    if LOYALTY in roles:
        candidates.append(candidate(LOYALTY, LoyaltyModel()))
    return candidates, skipped


def _fit_scorer(shop: Any, as_of: pd.Timestamp, horizon: int, seed: int, fit_churn: bool) -> Any:
    """A fitted `CustomerScorer`; a data problem of the churn part raises `RoleSkipped`."""
    from models.customer_scores import CustomerScorer

    try:
        return CustomerScorer().fit(
            shop, as_of, churn_horizon_days=horizon, seed=seed, fit_churn=fit_churn
        )
    except ValueError as error:
        if not fit_churn:
            raise
        raise RoleSkipped(f"churn could not be learned before {as_of.date()}: {error}") from error


def _customer_artifacts(
    shop: Any,
    as_of: pd.Timestamp,
    horizon: int,
    scorer: Any,
    scores: pd.DataFrame,
    workdir: Path,
) -> dict[str, str]:
    """The scorer and the served score table, saved under `workdir`: the pyfunc artifacts."""
    from models.pyfunc import write_score_table

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
    return {"scores": str(scores_dir), "scorer": str(scorer_dir)}


class _CustomerBacktest:
    """What the customers known at `cut` did in `[cut, as_of)`, the baselines' metrics, and the
    metrics of any score table on that window (churn and loyalty)."""

    def __init__(self, shop: Any, cut: pd.Timestamp, as_of: pd.Timestamp, horizon: int) -> None:
        from training.customer_backtest import (
            churn_ranking_metrics,
            constant_forecast_metrics,
            customer_truth,
            order_forecast_metrics,
        )

        self.horizon = horizon
        self.cut, self.as_of = cut, as_of
        self.truth = truth = customer_truth(shop, cut, as_of)
        self.labels = truth.churned.to_numpy()
        self.recency = truth.days_since_last_order.fillna(
            truth.days_since_last_order.max()
        ).to_numpy()
        self.baselines: dict[str, dict[str, dict[str, float]]] = {
            CHURN: {
                "recency": churn_ranking_metrics(self.labels, self.recency),
                "base_rate": constant_forecast_metrics(self.labels, truth.base_rate),
            },
            LOYALTY: {
                "past_rate": order_forecast_metrics(
                    truth.orders.to_numpy(), truth.past_rate_orders.to_numpy()
                )
            },
        }

    def _table(self, scores: pd.DataFrame) -> pd.DataFrame:
        table = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index(
            "customer_id"
        )
        return table.reindex(self.truth.churned.index)

    def evaluate(self, scores: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Backtest metrics of a score table, keyed CHURN and LOYALTY (churn empty when the
        table has no churn probabilities)."""
        from training.customer_backtest import churn_metrics, order_forecast_metrics

        table = self._table(scores)
        probability = table["churn_probability"].astype(float)
        churn = (
            churn_metrics(self.labels, probability.fillna(self.truth.base_rate).to_numpy())
            if probability.notna().any()
            else {}
        )
        expected = table["expected_orders_90d"].astype(float) * (self.horizon / 90.0)
        loyalty = order_forecast_metrics(self.truth.orders.to_numpy(), expected.to_numpy())
        return {CHURN: churn, LOYALTY: loyalty}

    def describe(self, report: Any, scores: pd.DataFrame, with_churn: bool) -> None:
        """Add the backtest's tables, curves and windows to the training report."""
        metrics = self.evaluate(scores)
        if with_churn:
            probability = self._table(scores)["churn_probability"].astype(float)
            report.churn_label = self.labels
            report.churn_scores = {
                "model": probability.fillna(self.truth.base_rate).to_numpy(),
                "recency (days since last order)": self.recency,
            }
            report.metric_tables["Churn: backtest"] = {
                "model": metrics[CHURN],
                **self.baselines[CHURN],
            }
        report.metric_tables["Loyalty (expected orders): backtest"] = {
            "model": metrics[LOYALTY],
            **self.baselines[LOYALTY],
        }
        report.summary.append(
            ("churn window", f"{self.cut.isoformat()} to {self.as_of.isoformat()}")
        )
        report.summary.append(
            ("churn base rate (one horizon earlier)", f"{self.truth.base_rate:.4f}")
        )


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


def _compare_with_champion(client: Any, candidate: Candidate, shop: str) -> None:
    """Fill `champion_metrics` and `comparison`: the champion on this candidate's backtest.

    In order of preference:
    1. same backtest key (same data, window, settings): the champion's recorded metrics are
       exactly what re-running its backtest gives;
    2. champion fitted at or before this cut: the served champion itself is evaluated on this
       window (out of sample for it);
    3. champion's own backtest model (fitted before its cut, which is at or before this one):
       evaluated on this window, the champion's procedure on the same backtest, leak-free;
    4. otherwise (a champion from a later as_of): its recorded backtest, and the reason says so.

    Only the same shop's champion is looked at."""
    name = registered_name(shop, candidate.name)
    champion = champion_version(client, name)
    if champion is None:
        return
    version = str(champion.version)
    tags = champion.tags or {}
    candidate.champion_beats_baseline = baseline_verdict(tags)
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

            loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
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
        short = candidate.name
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
        name=candidate.name,
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
    shop: str,
    candidates: list[Candidate],
    skipped: dict[str, str],
    options: TrainOptions,
    as_of: pd.Timestamp,
    run_id: str,
    data: DataSummary,
) -> list[ModelOutcome]:
    """Register every candidate in the shop's namespace, set `challenger`, move `champion`
    where the rule allows; mark the skipped roles (tag `patronage.skipped`, read by `serve`
    and `patronage models`) and clear that mark on the roles that trained.

    All-or-nothing: on any error the versions created here are deleted and aliases and tags
    restored, then `TrainingFailed` is raised."""

    from training.promotion import decide

    undo: list[Callable[[], None]] = []
    outcomes: list[ModelOutcome] = []
    try:
        decisions = [
            decide(
                c.name,
                c.metrics,
                c.champion_metrics,
                force=options.force,
                comparison=c.comparison,
                beats_baseline=c.beats_baseline,
                champion_beats_baseline=c.champion_beats_baseline,
            )
            for c in candidates
        ]
        for role, reason in skipped.items():
            name = _ensure_registered_model(client, shop, role, undo)
            _set_model_tag(client, name, SKIPPED_TAG, reason[:5000], undo)
        for candidate, decision in zip(candidates, decisions, strict=True):
            name = _ensure_registered_model(client, shop, candidate.name, undo)
            _set_model_tag(client, name, SKIPPED_TAG, None, undo)
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
                BASELINE_TAG: "true" if candidate.beats_baseline else "false",
                BASELINE_NOTE_TAG: candidate.baseline_note[:5000],
                SOURCE_TAG: data.source[:5000],
                ROWS_TAG: json.dumps(data.rows),
                **{
                    f"{METRIC_TAG_PREFIX}{key}": repr(float(candidate.metrics[key]))
                    for key in KEY_METRICS[candidate.name]
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
                    candidate.name,
                    number,
                    decision.decision,
                    decision.reason,
                    champion,
                    dict(candidate.metrics),
                    candidate.beats_baseline,
                    candidate.baseline_note,
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


def _ensure_registered_model(
    client: Any, shop: str, role: str, undo: list[Callable[[], None]]
) -> str:
    """The shop's registered model of `role`, created (tagged with shop and role) if new."""
    from mlflow.exceptions import MlflowException

    name = registered_name(shop, role)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={SHOP_TAG: shop, ROLE_TAG: role},
            description=f"Patronage {role} model of shop {shop!r} (docs/training.md)",
        )
        undo.append(partial(client.delete_registered_model, name))
    return name


def _set_model_tag(
    client: Any, name: str, key: str, value: str | None, undo: list[Callable[[], None]]
) -> None:
    """Set (or with None delete) a registered-model tag, remembering how to put it back."""
    previous = (client.get_registered_model(name).tags or {}).get(key)
    if previous == value:
        return
    if value is None:
        client.delete_registered_model_tag(name, key)
    else:
        client.set_registered_model_tag(name, key, value)
    if previous is None:
        undo.append(partial(client.delete_registered_model_tag, name, key))
    else:
        undo.append(partial(client.set_registered_model_tag, name, key, previous))


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
