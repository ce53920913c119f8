"""`patronage train`: validate, backtest, fit, log to MLflow, register, move aliases.

Order matters for failure safety: everything that can fail for data or model reasons (loading,
backtests, final fits, logging, loading every logged model back and predicting with it) happens
before the registry is touched. The registry phase keeps an undo list, so an error there (a
server going away mid-way) puts every alias and history tag back and deletes the versions this
run created. See docs/training.md for the metrics, windows and decision rule.

One module per step, in the order `train` calls them: `shop_data` (load, validate, merge the
posted events, hash), `recommender_role` and `customer_roles` (per role: can the data carry it,
backtest beside the plain baselines, final fit, as a `candidate.Candidate`), `champion` (the
shop's champion on the same backtest), `run_logging` (the MLflow run, each model loaded back),
`registration` (versions, aliases, skipped roles; all or nothing). What one stage hands the next
is typed: `shop_data.TrainingData`, `stages.RoleInputs`, `stages.Backtests`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from models.registry_names import ROLES, registered_name, shop_of_directory
from training.candidate import KEY_METRICS, Candidate
from training.champion import compare_with_champion
from training.customer_roles import customer_candidates
from training.options import RoleSkipped, TrainingFailed, TrainOptions
from training.progress import Progress
from training.recommender_role import recommender_candidate
from training.registration import ModelOutcome, register
from training.registry import CHURN, LOYALTY, RECOMMENDER
from training.run_logging import log_run
from training.shop_data import TrainingData, load_training_data
from training.stages import Backtests, RoleInputs

if TYPE_CHECKING:
    from training.report import EvaluationReport

__all__ = ["TrainOptions", "TrainResult", "TrainingFailed", "train"]


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
    from models.threads import one_thread

    started = time.perf_counter()
    shop_name = _shop_name(options)
    progress = Progress(total=9, enabled=options.progress)
    progress.step("connecting to the MLflow tracking store")
    from training.tracking import connect, ensure_experiment

    store, client = connect(options.tracking_uri)
    try:
        experiment_id = ensure_experiment(client, store, options.experiment)
    except Exception as error:
        raise TrainingFailed(f"cannot open experiment {options.experiment!r}: {error}") from error
    with one_thread(), tempfile.TemporaryDirectory(prefix="patronage-train-") as tmp:
        workdir = Path(tmp)
        training, backtests = _candidates(client, shop_name, options, workdir, progress)
        as_of, data = training.as_of, training.summary
        progress.step("logging the run, report and models to MLflow")
        run_id = log_run(
            options, experiment_id, as_of, data, backtests.candidates, backtests.report, workdir
        )
        progress.step("registering versions and moving aliases")
        outcomes = register(
            client, shop_name, backtests.candidates, backtests.skipped, options, as_of, run_id, data
        )
    progress.close()
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=store.tracking_uri,
        as_of=as_of,
        seconds=time.perf_counter() - started,
        outcomes=outcomes,
        backtest={c.name: {"model": c.metrics, **c.baselines} for c in backtests.candidates},
        shop=shop_name,
        skipped=backtests.skipped,
        notes=list(data.notes),
    )


def _shop_name(options: TrainOptions) -> str:
    """The shop's name in the registry; `TrainingFailed` on unknown roles or a bad name."""
    unknown = sorted(set(options.roles) - set(ROLES))
    if unknown or not options.roles:
        raise TrainingFailed(
            f"unknown role(s) {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(ROLES)}"
        )
    try:
        return options.shop or shop_of_directory(options.directory)
    except ValueError as error:
        raise TrainingFailed(str(error)) from None


def _candidates(
    client: Any, shop_name: str, options: TrainOptions, workdir: Path, progress: Progress
) -> tuple[TrainingData, Backtests]:
    """Everything that can fail for data or model reasons, before the registry is touched:
    load, backtest and fit every role, measure the champions on the same backtests."""
    try:
        progress.step("loading and validating the shop")
        training = load_training_data(options)
        report = _new_report(training, options)
        backtests = backtest_and_fit(RoleInputs.of(training, options, workdir, progress, report))
        if not backtests.candidates:
            raise ValueError(
                f"no role could be trained for shop {shop_name!r}: "
                + " ".join(f"{role}: {reason}" for role, reason in backtests.skipped.items())
            )
        progress.step("comparing with the current champions")
        for candidate in backtests.candidates:
            compare_with_champion(client, candidate, shop_name)
    except Exception as error:  # any failure before logging leaves the registry alone
        progress.close()
        kind = (
            ""
            if isinstance(error, ValueError | FileNotFoundError)
            else (f"{type(error).__name__}: ")
        )
        raise TrainingFailed(f"training failed, registry unchanged: {kind}{error}") from error
    return training, backtests


def _new_report(training: TrainingData, options: TrainOptions) -> EvaluationReport:
    """The evaluation report, opened with what was trained on."""
    from training.report import EvaluationReport

    as_of, data = training.as_of, training.summary
    report = EvaluationReport(title=f"Patronage training report, data before {as_of.isoformat()}")
    report.summary += [
        ("data", data.source),
        ("content sha256", data.sha256),
        ("rows", ", ".join(f"{k} {v}" for k, v in data.rows.items())),
        ("orders from", f"{data.first_order_at.isoformat()} to {data.last_order_at.isoformat()}"),
        ("as_of (exclusive)", as_of.isoformat()),
        ("seed", str(options.seed)),
    ]
    return report


def backtest_and_fit(inputs: RoleInputs) -> Backtests:
    """The candidates of the roles asked for that the data can carry, the skipped roles with
    why, and the evaluation report. Each role is backtested and fitted on its own."""
    from training.promotion import versus_baseline

    roles, report = inputs.options.roles, inputs.report
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    if RECOMMENDER in roles:
        try:
            candidates.append(recommender_candidate(inputs))
        except RoleSkipped as why:
            skipped[RECOMMENDER] = str(why)
    customer_roles = tuple(role for role in (CHURN, LOYALTY) if role in roles)
    if customer_roles:
        customers, customer_skips = customer_candidates(inputs, customer_roles)
        candidates += customers
        skipped.update(customer_skips)
    for candidate in candidates:
        candidate.beats_baseline, candidate.baseline_note = versus_baseline(
            candidate.name, candidate.metrics, candidate.baselines
        )
        report.summary.append((f"{candidate.name} vs plain baseline", candidate.baseline_note))
    report.summary += [(f"{role} skipped", reason) for role, reason in skipped.items()]
    return Backtests(candidates, skipped, report)
