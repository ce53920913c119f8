"""Backtest of the churn and loyalty scores on the last horizon before `as_of`, beside baselines.

The scorer is fitted on data before `cut = as_of - horizon` and scores every customer with an
order before `cut`; the truth is what they did in `[cut, as_of)`:
- churn: label 1 = no order in the window (`features.labels.churn_labels`). Metrics ROC-AUC,
  average precision (churners as positives), Brier score, log loss and expected calibration
  error (10 equal-width bins, `models.calibration`). Baselines: `recency` (days since the last
  order; a ranking only, so AUC and AP) and `base_rate` (every customer gets the churn rate
  seen one horizon earlier, the honest constant forecast; Brier and log loss).
- loyalty: expected orders in the window (`expected_orders_90d` rescaled to the horizon) against
  the orders actually placed: Spearman rank correlation and mean absolute error. Baseline
  `past_rate`: the customer's order rate over the last 365 days before `cut` times the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.calibration import expected_calibration_error


@dataclass(frozen=True)
class CustomerTruth:
    """Per-customer outcome in the window, indexed by `customer_id` (customers known at `cut`)."""

    cut: pd.Timestamp
    end: pd.Timestamp
    churned: pd.Series
    """1 = no order in `[cut, end)`."""
    orders: pd.Series
    """Orders placed in `[cut, end)` (distinct order ids)."""
    days_since_last_order: pd.Series
    past_rate_orders: pd.Series
    """Baseline forecast of `orders`: order rate of the 365 days before `cut` x window days."""
    base_rate: float
    """Churn rate one horizon before `cut` (known at `cut`): the constant baseline forecast."""


def customer_truth(shop: object, cut: pd.Timestamp, end: pd.Timestamp) -> CustomerTruth:
    """What the customers known at `cut` did in `[cut, end)`, and the baseline forecasts.

    Raises ValueError when no customer ordered before `cut`."""
    from features.labels import churn_labels

    horizon = (end - cut).total_seconds() / 86_400
    churned = churn_labels(shop, cut, horizon)  # type: ignore[arg-type]
    if churned.empty:
        raise ValueError(f"no customer ordered before the backtest cut {cut}: too little history")
    purchases = shop.purchases  # type: ignore[attr-defined]
    customer = purchases["customer_id"].astype(str)
    at = purchases["ordered_at"]
    inside = purchases[(at >= cut) & (at < end)]
    orders = inside.groupby(inside["customer_id"].astype(str))["order_id"].nunique()
    orders = orders.reindex(churned.index, fill_value=0).astype("int64")
    before = at < cut
    last = at[before].groupby(customer[before]).max().reindex(churned.index)
    days_since = (cut - last).dt.total_seconds() / 86_400
    year = before & (at >= cut - pd.Timedelta(days=365))
    recent = purchases[year]
    counts = recent.groupby(recent["customer_id"].astype(str))["order_id"].nunique()
    past_rate = counts.reindex(churned.index, fill_value=0) / 365.0 * horizon
    earlier = churn_labels(shop, cut - pd.Timedelta(days=horizon), horizon)  # type: ignore[arg-type]
    base_rate = float(earlier.mean()) if len(earlier) else float(churned.mean())
    return CustomerTruth(
        cut=cut,
        end=end,
        churned=churned,
        orders=orders,
        days_since_last_order=days_since.astype("float64"),
        past_rate_orders=past_rate.astype("float64"),
        base_rate=base_rate,
    )


def churn_metrics(churned: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC-AUC, average precision, Brier, log loss and ECE of churn probabilities (0..1)."""
    from sklearn.metrics import brier_score_loss, log_loss

    metrics = churn_ranking_metrics(churned, probability)
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    metrics["brier"] = float(brier_score_loss(churned, probability))
    metrics["log_loss"] = float(log_loss(churned, clipped, labels=[0, 1]))
    metrics["ece"] = expected_calibration_error(churned, probability)
    return metrics


def churn_ranking_metrics(churned: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC and average precision of any churn score (higher = more likely to churn).

    NaN when the window holds only churners or only returning customers."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(churned)) < 2:
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return {
        "roc_auc": float(roc_auc_score(churned, score)),
        "average_precision": float(average_precision_score(churned, score)),
    }


def constant_forecast_metrics(churned: np.ndarray, rate: float) -> dict[str, float]:
    """Brier score and log loss of predicting the same churn probability for everyone."""
    from sklearn.metrics import brier_score_loss, log_loss

    probability = np.full(len(churned), float(np.clip(rate, 1e-6, 1 - 1e-6)))
    return {
        "brier": float(brier_score_loss(churned, probability)),
        "log_loss": float(log_loss(churned, probability, labels=[0, 1])),
    }


def order_forecast_metrics(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Spearman correlation and mean absolute error of expected vs actual order counts."""
    from scipy.stats import spearmanr

    actual = np.asarray(actual, dtype=float)
    expected = np.nan_to_num(np.asarray(expected, dtype=float), nan=0.0)
    rho = spearmanr(actual, expected).statistic if np.ptp(actual) > 0 else float("nan")
    return {
        "orders_spearman": float(rho),
        "orders_mae": float(np.mean(np.abs(actual - expected))),
    }
