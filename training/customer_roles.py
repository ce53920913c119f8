"""The churn and loyalty roles: whether the shop's history can carry them, their shared
`CustomerScorer` backtest on the last horizon before `as_of` beside recency, the base rate and
the past order rate, and the final fit (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.candidate import Candidate, backtest_key
from training.options import RoleSkipped
from training.registry import CHURN, LOYALTY
from training.stages import RoleInputs

if TYPE_CHECKING:
    from features.shop import Shop
    from models.customer_scores import CustomerScorer
    from training.report import EvaluationReport


def churn_skip_reason(
    shop: Shop, as_of: pd.Timestamp, horizon_days: int, step_days: float
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


def loyalty_skip_reason(shop: Shop, cut: pd.Timestamp, horizon_days: int) -> str | None:
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


def customer_candidates(
    inputs: RoleInputs, roles: tuple[str, ...]
) -> tuple[list[Candidate], dict[str, str]]:
    """Churn and loyalty candidates (they share one `CustomerScorer`, its backtest and score
    table; only the metrics they are judged on differ), and the roles skipped with why."""
    from models.customer_scores import CustomerScorer, remembered_features

    shop, as_of, options = inputs.shop, inputs.as_of, inputs.options
    horizon = int(options.churn_horizon_days)
    cut = as_of - pd.Timedelta(days=horizon)
    loyalty_reason = loyalty_skip_reason(shop, cut, horizon)
    if loyalty_reason is not None:
        # Churn is learned from the same repeat orders, over more history.
        return [], dict.fromkeys(roles, loyalty_reason)
    skipped: dict[str, str] = {}
    churn_reason = churn_skip_reason(shop, as_of, horizon, CustomerScorer().step_days)
    if CHURN in roles and churn_reason is not None:
        skipped[CHURN] = churn_reason
    fit_churn = CHURN in roles and churn_reason is None
    if not fit_churn and LOYALTY not in roles:
        return [], skipped
    inputs.progress.step(
        f"churn and loyalty backtest: fit before {cut.date()}, test to {as_of.date()}"
    )
    past = shop.before(cut)
    # One memo for the backtest and the final fit: the spend choice's held-out window and
    # training cut-offs are the backtest's as_of and churn cut-offs (one horizon earlier).
    features = remembered_features()
    try:
        backtest_scorer = _fit_scorer(past, cut, horizon, options.seed, fit_churn, features)
    except RoleSkipped as why:
        skipped[CHURN], fit_churn = str(why), False
        if LOYALTY not in roles:
            return [], skipped
        backtest_scorer = _fit_scorer(past, cut, horizon, options.seed, fit_churn, features)
    backtest = CustomerBacktest(shop, cut, as_of, horizon)
    backtest_scores = backtest_scorer.score(features(past, cut), cut)
    backtest_metrics = backtest.evaluate(backtest_scores)
    backtest.describe(inputs.report, backtest_scores, fit_churn)

    inputs.progress.step("fitting the final churn and loyalty models on all data")
    artifacts, example, spend = _final_fit(inputs, horizon, fit_churn, features)
    backtest_metrics[LOYALTY] = {**backtest_metrics[LOYALTY], **spend}
    backtest_dir = inputs.workdir / "backtest" / "customer_scorer"
    backtest_scorer.save(backtest_dir)
    shared = _SharedBacktest(backtest, backtest_metrics, past, artifacts, example, backtest_dir)
    fitted = ([CHURN] if fit_churn else []) + ([LOYALTY] if LOYALTY in roles else [])
    return [shared.candidate(role, inputs) for role in fitted], skipped


def _fit_scorer(
    shop: Shop,
    as_of: pd.Timestamp,
    horizon: int,
    seed: int,
    fit_churn: bool,
    features: Any,
    value_horizon: int | None = None,
) -> CustomerScorer:
    """A fitted `CustomerScorer` (with the spend choice for `value_horizon` days when given;
    customer features from `features(shop, cutoff)`); a data problem of the churn part raises
    `RoleSkipped`."""
    from models.customer_scores import CustomerScorer

    try:
        return CustomerScorer().fit(
            shop,
            as_of,
            churn_horizon_days=horizon,
            seed=seed,
            fit_churn=fit_churn,
            value_horizon_days=value_horizon,
            feature_function=features,
        )
    except ValueError as error:
        if not fit_churn:
            raise
        raise RoleSkipped(f"churn could not be learned before {as_of.date()}: {error}") from error


def _final_fit(
    inputs: RoleInputs, horizon: int, fit_churn: bool, features: Any
) -> tuple[dict[str, str], pd.DataFrame, dict[str, float]]:
    """Fit the scorer on all data before `as_of`: its pyfunc artifacts (the scorer and the
    served score table), an input example (three known customers and a new one) and the
    figures of its spend choice (`spend_metrics`, also added to the training report)."""
    value_horizon = inputs.options.value_horizon_days or None
    scorer = _fit_scorer(
        inputs.shop, inputs.as_of, horizon, inputs.options.seed, fit_churn, features, value_horizon
    )
    spend = spend_metrics(scorer, inputs.report)
    scores = scorer.score(features(inputs.shop, inputs.as_of), inputs.as_of)
    if "segment" in scores.columns:
        inputs.report.segment_sizes = {
            str(k): int(v) for k, v in scores["segment"].value_counts().sort_index().items()
        }
    artifacts = _customer_artifacts(
        inputs.shop, inputs.as_of, horizon, scorer, scores, inputs.workdir
    )
    known = scores["customer_id"].astype(str).head(3).tolist()
    return artifacts, pd.DataFrame({"customer_id": known + ["__new_customer__"]}), spend


def spend_metrics(scorer: CustomerScorer, report: EvaluationReport) -> dict[str, float]:
    """The spend choice's backtest as loyalty metrics (`spend_<model>_<measure>`, and
    `spend_learned_chosen` 1 or 0), its table and reason in the training report; empty when
    the scorer was fitted without a value horizon."""
    from models.spend import LEARNED, MEMBERS

    choice = scorer.spend_choice_
    if choice is None:
        return {}
    report.summary.append((f"predicted spend over {choice.horizon_days:g} days", choice.reason))
    if choice.backtest:
        report.metric_tables[f"Value (spend over {choice.horizon_days:g} days): backtest"] = {
            name: dict(figures) for name, figures in choice.backtest.items()
        }
    metrics = {
        f"spend_{name}_{measure}": value
        for name, figures in choice.backtest.items()
        for measure, value in figures.items()
    }
    metrics["spend_learned_chosen"] = float(LEARNED in MEMBERS.get(choice.winner, ()))
    return metrics


@dataclass(frozen=True)
class _SharedBacktest:
    """What the churn and loyalty candidates share: the backtest window and its metrics, the
    shop before the cut, the final fit's artifacts and input example, the backtest scorer's
    directory."""

    backtest: CustomerBacktest
    metrics: dict[str, dict[str, float]]
    past: Shop
    artifacts: dict[str, str]
    example: pd.DataFrame
    backtest_dir: Path

    def candidate(self, role: str, inputs: RoleInputs) -> Candidate:
        """The `role` candidate (CHURN or LOYALTY) of this backtest."""
        from models.pyfunc import ChurnModel, LoyaltyModel

        cut = self.backtest.cut
        return Candidate(
            name=role,
            python_model=ChurnModel() if role == CHURN else LoyaltyModel(),
            artifacts=self.artifacts,
            input_example=self.example,
            metrics=self.metrics[role],
            baselines=self.backtest.baselines[role],
            backtest_key=backtest_key(inputs.data, role, cut, inputs.as_of, inputs.options),
            cut=cut,
            evaluate_champion=_ChampionOnBacktest(self.backtest, self.past, role),
            backtest_dir=str(self.backtest_dir),
            backtest_loader=BacktestScorer.load,
        )


@dataclass(frozen=True)
class BacktestScorer:
    """A champion's backtest scorer read back from its run, shaped like the served wrapper
    (`scorer`; no score table) so `_ChampionOnBacktest` treats both alike."""

    scorer: CustomerScorer
    scores: None = None

    @classmethod
    def load(cls, directory: Path) -> BacktestScorer:
        """The scorer saved in `directory`."""
        from models.customer_scores import CustomerScorer

        return cls(CustomerScorer.load(directory))


@dataclass(frozen=True)
class _ChampionOnBacktest:
    """The champion's metrics for `role` on this backtest, from its wrapper (served, or
    `BacktestScorer`)."""

    backtest: CustomerBacktest
    past: Shop
    role: str

    def __call__(self, wrapper: Any) -> dict[str, float]:
        return self.backtest.evaluate(self._scores(wrapper))[self.role]

    def _scores(self, wrapper: Any) -> pd.DataFrame:
        # A champion fitted before the cut scores the cut honestly with its own scorer.
        if getattr(wrapper, "scorer", None) is not None:
            return wrapper.scorer.score(self.past, self.backtest.cut)
        return wrapper.scores.reset_index(drop=True)


def _customer_artifacts(
    shop: Shop,
    as_of: pd.Timestamp,
    horizon: int,
    scorer: CustomerScorer,
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


class CustomerBacktest:
    """What the customers known at `cut` did in `[cut, as_of)`, the baselines' metrics, and the
    metrics of any score table on that window (churn and loyalty)."""

    def __init__(self, shop: Shop, cut: pd.Timestamp, as_of: pd.Timestamp, horizon: int) -> None:
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

    def describe(self, report: EvaluationReport, scores: pd.DataFrame, with_churn: bool) -> None:
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
