"""The recommender role: backtest on the last window before `as_of` beside popularity and
trending, then the final fit on all data (docs/training.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from training.candidate import Candidate, backtest_key
from training.options import RoleSkipped, TrainOptions
from training.registry import RECOMMENDER
from training.stages import RoleInputs


@dataclass
class _Backtest:
    """The bundle fitted before the cut, the truth of the window after it, and the metrics of
    the bundle and of each baseline there."""

    bundle: Any
    truth: Any
    n_items: int
    model: Any
    baselines: dict[str, Any]

    def evaluate(self, bundle: Any) -> dict[str, float]:
        """Metrics of another bundle's lists on the same window (the champion's)."""
        from training.recommendation_backtest import bundle_lists, evaluate_lists

        return evaluate_lists(bundle_lists(bundle, self.truth), self.truth, self.n_items).metrics


def _check_recommendable(shop: Any, cut: pd.Timestamp, window: float) -> None:
    """RoleSkipped when the shop sold fewer than two products, or nothing before `cut`."""
    products = shop.purchases["item_id"].nunique()
    if products < 2:
        raise RoleSkipped(
            f"recommendations need at least two products that sold; this shop sold {products} "
            "before as_of, so there is nothing to choose between (churn and loyalty do not need "
            "products)"
        )
    if shop.before(cut).purchases.empty:
        raise RoleSkipped(
            f"the recommender backtest needs purchases before {cut.date()} (the "
            f"{window:g}-day window before as_of) and this shop has none: pass a shorter "
            "--recommendation-window-days or wait for more history"
        )


def _fit_bundle(
    shop: Any, as_of: pd.Timestamp, options: TrainOptions, what: str, lists_only: bool = False
) -> Any:
    """`fit_recommender_bundle` with the run's seed and budget (`lists_only` for the backtest,
    which judges personal lists only); RoleSkipped when it cannot."""
    from models.recommenders.bundle import fit_recommender_bundle

    try:
        return fit_recommender_bundle(
            shop,
            as_of,
            seed=options.seed,
            time_budget_s=options.time_budget_s,
            lists_only=lists_only,
        )
    except ValueError as error:
        raise RoleSkipped(f"the recommender could not be fitted on {what}: {error}") from error


def _backtest(
    shop: Any, as_of: pd.Timestamp, cut: pd.Timestamp, window: float, options: TrainOptions
) -> _Backtest:
    """Fit before `cut`, judge the bundle and the baselines on `[cut, as_of)`."""
    from training.recommendation_backtest import (
        baseline_lists,
        bundle_lists,
        evaluate_lists,
        window_truth,
    )

    past = shop.before(cut)
    bundle = _fit_bundle(past, cut, options, f"the data before {cut.date()}", lists_only=True)
    truth = window_truth(shop, bundle.customer_ids, cut, as_of, seed=options.seed)
    if not truth.relevant["repeat"]:
        raise RoleSkipped(
            f"no customer known before {cut.date()} bought in the {window:g} days before as_of, "
            "so recommendations cannot be checked: pass a longer --recommendation-window-days "
            "or an earlier --as-of"
        )
    n_items = len(bundle.item_ids)
    model = evaluate_lists(bundle_lists(bundle, truth), truth, n_items)
    baselines = {
        name: evaluate_lists(lists, truth, n_items)
        for name, lists in baseline_lists(bundle, past, truth, window).items()
    }
    return _Backtest(bundle, truth, n_items, model, baselines)


def _record(report: Any, backtest: _Backtest, cut: pd.Timestamp, as_of: pd.Timestamp) -> None:
    """The backtest's metric table, curves and summary lines in the training report."""
    baselines = backtest.baselines
    report.metric_tables["Recommendations: backtest"] = {
        "model": backtest.model.metrics,
        **{name: e.metrics for name, e in baselines.items()},
    }
    report.recommendation_curves = {"model": backtest.model.curves} | {
        name: e.curves for name, e in baselines.items()
    }
    report.summary.append(("recommendation window", f"{cut.isoformat()} to {as_of.isoformat()}"))
    report.summary.append(("recommender strategies", json.dumps(backtest.bundle.strategies)))


DEFAULT_EXCLUSION = "default_exclusion"
"""Prefix of the fit parameters and metrics that record the learned default rule (logged as
`recommender.default_exclusion.*` parameters and `fit.recommender.default_exclusion.*` metrics)."""


def default_exclusion_logged(bundle: Any) -> tuple[dict[str, str], dict[str, float]]:
    """The bundle's learned default `exclude_purchased` rule as MLflow run parameters (rule,
    repeatable share, repeat threshold) and metrics (validation NDCG@10 of every rule tried,
    `none` and `all` among them); nothing for a bundle that did not learn one."""
    chosen = bundle.report.get("default_exclusion")
    if not chosen:
        return {}, {}
    params = {
        f"{DEFAULT_EXCLUSION}.rule": str(chosen["rule"]),
        f"{DEFAULT_EXCLUSION}.repeatable_share": str(chosen.get("repeatable_share")),
        f"{DEFAULT_EXCLUSION}.repeat_threshold": str(chosen.get("repeat_threshold")),
    }
    metrics = {
        f"{DEFAULT_EXCLUSION}.validation_ndcg_at_10.{rule}": float(value)
        for rule, value in chosen["validation_ndcg"].items()
    }
    return params, metrics


SELECTION = "selection"
"""Prefix of the fit parameters and metrics that record how the final fit's selection validated
(`recommender.selection.*` parameters, `fit.recommender.selection.*` metrics)."""


def selection_logged(bundle: Any) -> tuple[dict[str, str], dict[str, float]]:
    """How the bundle's selection validated, as MLflow run parameters (the validation scheme,
    each role's winner and the rule it was chosen by: `validation`, or `fallback` to the other
    role's winner when nothing on validation was relevant to it) and metrics (validation
    customers, window days); nothing for a bundle whose report does not say."""
    report = bundle.report
    scheme = report.get("validation_scheme")
    if not scheme:
        return {}, {}
    params = {f"{SELECTION}.validation_scheme": str(scheme["scheme"])}
    for role in ("discovery", "repeat"):
        winner = report.get(f"{role}_winner", {})
        params[f"{SELECTION}.{role}_winner"] = str(winner.get("model"))
        params[f"{SELECTION}.{role}_rule"] = "fallback" if winner.get("fallback") else "validation"
    metrics = {
        f"{SELECTION}.validation_customers": float(report["validation_customers"]),
        f"{SELECTION}.validation_window_days": float(report["validation_window_days"]),
    }
    return params, metrics


def _record_selection(report: Any, bundle: Any) -> None:
    """The final fit's validation scheme and any fallback winner in the training report."""
    scheme = bundle.report.get("validation_scheme")
    if scheme:
        report.summary.append(("recommender validation", str(scheme["reason"])))
    for role in ("discovery", "repeat"):
        winner = bundle.report.get(f"{role}_winner", {})
        if winner.get("fallback"):
            report.summary.append((f"recommender {role} winner", str(winner["reason"])))


def _record_default(report: Any, bundle: Any) -> None:
    """The learned default rule and its validation figures in the training report."""
    chosen = bundle.report.get("default_exclusion")
    if not chosen:
        return
    report.summary.append(("default exclude_purchased", f"{chosen['rule']}: {chosen['reason']}"))
    report.metric_tables["Recommendations: default exclude_purchased on validation"] = {
        rule: {"ndcg_at_10": value} for rule, value in chosen["validation_ndcg"].items()
    }


@dataclass(frozen=True)
class BacktestBundle:
    """A champion's backtest bundle read back from its run, shaped like the served wrapper
    (`bundle`), so the champion comparison treats both alike."""

    bundle: Any

    @classmethod
    def load(cls, directory: Path) -> BacktestBundle:
        """The bundle saved in `directory`."""
        from models.recommenders.bundle import RecommenderBundle

        return cls(bundle=RecommenderBundle.load(directory))


def recommender_candidate(inputs: RoleInputs) -> Candidate:
    """The recommender bundle fitted on all data, with its backtest on the last window
    (`options.recommendation_window_days`) before `as_of`; RoleSkipped when the shop cannot
    carry recommendations or the window cannot check them."""
    shop, as_of, data, options = inputs.shop, inputs.as_of, inputs.data, inputs.options
    workdir, progress, report = inputs.workdir, inputs.progress, inputs.report
    from models.pyfunc import RecommenderModel

    window = float(options.recommendation_window_days)
    cut = as_of - pd.Timedelta(days=window)
    progress.step(f"recommender backtest: fit before {cut.date()}, test to {as_of.date()}")
    _check_recommendable(shop, cut, window)
    backtest = _backtest(shop, as_of, cut, window, options)
    _record(report, backtest, cut, as_of)

    progress.step("fitting the final recommender on all data")
    bundle = _fit_bundle(shop, as_of, options, "all data")
    report.summary.append(("next-need weights", json.dumps(bundle.next_need_weights)))
    _record_default(report, bundle)
    _record_selection(report, bundle)
    exclusion_params, exclusion_metrics = default_exclusion_logged(bundle)
    selection_params, selection_metrics = selection_logged(bundle)
    bundle_dir = workdir / "recommender_bundle"
    bundle.save(bundle_dir)
    known = [str(c) for c in bundle.customer_ids[:3]]
    example = pd.DataFrame({"customer_id": known + ["__new_customer__"]})
    backtest_dir = workdir / "backtest" / "recommender_bundle"
    backtest.bundle.save(backtest_dir)
    return Candidate(
        name=RECOMMENDER,
        python_model=RecommenderModel(),
        artifacts={"bundle": str(bundle_dir)},
        input_example=example,
        predict_params={"k": 10, "exclude_purchased": "non-repeatable", "category": ""},
        metrics=backtest.model.metrics,
        baselines={name: e.metrics for name, e in backtest.baselines.items()},
        backtest_key=backtest_key(data, RECOMMENDER, cut, as_of, options),
        cut=cut,
        evaluate_champion=lambda wrapper: backtest.evaluate(wrapper.bundle),
        backtest_dir=str(backtest_dir),
        backtest_loader=BacktestBundle.load,
        fit_params={f"next_need_weight.{r}": w for r, w in bundle.next_need_weights.items()}
        | exclusion_params
        | selection_params,
        fit_metrics=next_need_metrics(bundle.report) | exclusion_metrics | selection_metrics,
    )


def next_need_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The final fit's validation NDCG@10 of what the next-need cases bought after the posted
    item, per protocol: the champion alone and with the chosen weight (`next_need`)."""
    metrics: dict[str, float] = {}
    for protocol, entry in report.get("next_need", {}).items():
        by_weight = entry.get("ndcg_by_weight") if isinstance(entry, dict) else None
        if by_weight:
            metrics[f"next_need.{protocol}.ndcg_champion_alone"] = by_weight["0"]
            metrics[f"next_need.{protocol}.ndcg_with_weight"] = by_weight[f"{entry['weight']:g}"]
    return metrics
