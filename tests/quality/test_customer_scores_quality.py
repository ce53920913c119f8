"""Churn and loyalty scores against what the sample shop planted, not against themselves.

The models are the session's champions, trained on the sample shop before `as_of` (30 days
before its end). The generator records who started drifting away (and when) and each customer's
hidden purchase rate (`_truth/customers.csv`); a score is only worth serving when it finds those
better than the plain number a CRM already has.

Measured at as_of 2025-12-02 with horizon 90 days on 800-customer, 120-item, 365-day shops
(`CustomerScorer().fit(shop.before(as_of), as_of, 90, seed=0)`, identical to the pipeline's
final fit), truth = drifting or gone before as_of:

    seed  customers  drifting  churn AUC  recency AUC | loyalty rho  orders rho  spend rho
    7     623        107       0.7990     0.8479      | 0.7347       0.5650      0.5146
    1     630        120       0.7929     0.8108      | 0.6626       0.4581      0.4138
    2     637        140       0.8030     0.8332      | 0.6750       0.4306      0.4082

(rho: Spearman with the planted purchase rate, 0 once drifting.) The tests run on seed 7, the
session's sample shop. Churn LOSES to recency on every seed measured, so the churn-vs-recency
test is a strict xfail until the model is fixed (it then passes and the marker must go); the
floor test keeps the model from getting worse meanwhile. Loyalty also beats -recency only
narrowly (0.6846 / 0.6586 / 0.6685), which is why recency is not one of its baselines here.

What churn does beat recency on is what it predicts: no order within the horizon. The generator
knows each customer's chance of that at as_of (their hidden rate, whether they are drifting or
gone, their hazard of starting to drift; `planted_chance_of_no_order`), and churn ranks the
customers by it better than recency on every seed measured (Spearman, same shops and fits):

    seed  churn   recency  margin | realised: no order in the 30 days after as_of (ROC AUC)
    7     0.7787  0.7016   +0.077 | churn 0.8055, recency 0.7608
    1     0.7602  0.6844   +0.076 | churn 0.7687, recency 0.7406
    2     0.7657  0.6970   +0.069 | churn 0.7834, recency 0.7565

Why churn loses on the drifters, measured (2026-12-07; the session note of that day has the
numbers): the churn label is "no order in the next 90 days", which also marks every engaged slow
buyer, while the planted truth is "started drifting away". Even a classifier trained on the
planted truth itself (5-fold CV over every customer feature) beats recency by only +0.001 /
+0.022 / +0.044 AUC on seeds 7 / 1 / 2 at 800 customers (+0.035 at 5,000), so a +0.02 margin on
every seed is about what the data can carry at best, not what a model of another label can
reach.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from features.sample_shop.simulation import DRIFTING_RATE_FACTOR, MEAN_DRIFT_DAYS
from tests.conftest import TrainedSampleStore
from tests.quality.conftest import ShopHistory, load_champion

CHURN_MARGIN = 0.02
"""Churn must beat days-since-last-order by this much ROC AUC on the planted drifters."""
CHURN_FLOOR = 0.75
"""Measured 0.79-0.80 on three seeds: a drop below this is a regression."""
CHANCE_MARGIN = 0.04
"""Churn's Spearman with the planted chance of no order within the horizon must beat recency's
by this much (measured +0.069 to +0.077 on three seeds)."""
REALISED_MARGIN = 0.02
"""Churn must beat recency by this much ROC AUC on who really did not order in the 30 days after
as_of (measured +0.027 to +0.045 on three seeds)."""
LOYALTY_FLOOR = 0.6
LOYALTY_MARGIN = 0.1
"""Loyalty's Spearman with the planted engagement must exceed this floor (measured 0.66-0.73),
and the better of order count and total spend alone by this margin (measured 0.17-0.24)."""


@pytest.fixture(scope="module")
def scored(trained_sample_store: TrainedSampleStore, shop_history: ShopHistory) -> pd.DataFrame:
    """The churn champion's score table at as_of beside the planted truth and plain baselines:
    `drifting` (1 = started drifting away or left before as_of), `engaged_rate` (the hidden
    purchase rate, 0 once drifting), `days_since_last_order`, `orders`, `spend`,
    `planted_no_order` (the planted chance of no order within 90 days) and `no_order_after` (1 =
    no order in the shop's 30 days after as_of)."""
    scores = load_champion(trained_sample_store, "churn").scores.reset_index(drop=True)
    table = scores.merge(shop_history.truth, on="customer_id", how="left", validate="1:1")
    before = shop_history.before
    by_customer = before.groupby("customer_id")
    as_of = shop_history.as_of
    last = by_customer["ordered_at"].max()
    table["days_since_last_order"] = (
        as_of - table["customer_id"].map(last)
    ).dt.total_seconds() / 86_400
    table["orders"] = table["customer_id"].map(by_customer["order_id"].nunique())
    spend = (before["quantity"] * before["unit_price"]).groupby(before["customer_id"]).sum()
    table["spend"] = table["customer_id"].map(spend)
    table["drifting"] = (table["drifting_since"] < as_of).astype(int)
    table["engaged_rate"] = table["purchase_rate_per_day"] * (1 - table["drifting"])
    assert table["purchase_rate_per_day"].notna().all(), "every scored customer has a truth row"
    assert 50 <= table["drifting"].sum() <= len(table) - 50, "too few drifters to judge"
    table["planted_no_order"] = planted_chance_of_no_order(table, as_of, horizon_days=90.0)
    table["no_order_after"] = (
        ~table["customer_id"].isin(shop_history.after["customer_id"])
    ).astype(int)
    return table


def planted_chance_of_no_order(
    truth: pd.DataFrame, as_of: pd.Timestamp, horizon_days: float
) -> np.ndarray:
    """Per customer, the generator's chance of no order in the `horizon_days` after `as_of`, from
    the planted truth: 1 once gone; while drifting, orders at `DRIFTING_RATE_FACTOR` x the rate
    until leaving (exponential, mean `MEAN_DRIFT_DAYS`); while content, orders at the rate until
    starting to drift (the planted daily hazard), then as drifting. Orders as a Poisson process
    at the daily rate; the season's demand, newcomers' and bad experiences' extra hazard are left
    out (an approximation of the same truth for every model compared)."""
    rate = truth["purchase_rate_per_day"].to_numpy()
    hazard = truth["leave_hazard_per_day"].to_numpy()
    gone = (truth["left_at"] < as_of).to_numpy()
    drifting = (truth["drifting_since"] < as_of).to_numpy() & ~gone
    # drifting for the remaining t days: no order before leaving (time L) and none after it
    exit_rate = 1.0 / MEAN_DRIFT_DAYS + DRIFTING_RATE_FACTOR * rate

    def drifting_silent(days: np.ndarray) -> np.ndarray:
        leave_first = (1.0 / MEAN_DRIFT_DAYS) / exit_rate * (1.0 - np.exp(-exit_rate * days))
        return leave_first + np.exp(-exit_rate * days)

    # content: silent and content throughout, or silent until drifting at s, then drifting_silent
    start = np.linspace(0.0, horizon_days, 181)[:, None]
    silent_then_drifting = (
        hazard * np.exp(-(hazard + rate) * start) * drifting_silent(horizon_days - start)
    )
    content = np.exp(-(hazard + rate) * horizon_days) + np.trapezoid(
        silent_then_drifting, start, axis=0
    )
    return np.where(
        gone, 1.0, np.where(drifting, drifting_silent(np.full_like(rate, horizon_days)), content)
    )


@pytest.mark.xfail(
    strict=True,
    reason="measured: the churn model ranks the planted drifters WORSE than recency alone "
    "(seed 7: ROC AUC 0.799 vs 0.848); needs a change in models/churn.py, not in the test",
)
def test_churn_beats_recency_on_the_planted_drifters(scored: pd.DataFrame) -> None:
    churn = roc_auc_score(scored["drifting"], scored["churn_probability"])
    recency = roc_auc_score(scored["drifting"], scored["days_since_last_order"])
    assert churn > recency + CHURN_MARGIN, f"churn AUC {churn:.4f}, recency AUC {recency:.4f}"


def test_churn_ranks_customers_by_the_planted_chance_of_no_order_better_than_recency(
    scored: pd.DataFrame,
) -> None:
    """What the churn score claims: the chance of no order within the horizon (90 days)."""

    def rho(column: str) -> float:
        return float(spearmanr(scored[column], scored["planted_no_order"]).statistic)

    churn, recency = rho("churn_probability"), rho("days_since_last_order")
    assert churn > recency + CHANCE_MARGIN, f"churn {churn:.4f}, recency {recency:.4f}"


def test_churn_finds_who_did_not_order_after_as_of_better_than_recency(
    scored: pd.DataFrame,
) -> None:
    """The same on what really happened: no order in the shop's 30 days after as_of."""
    churn = roc_auc_score(scored["no_order_after"], scored["churn_probability"])
    recency = roc_auc_score(scored["no_order_after"], scored["days_since_last_order"])
    assert churn > recency + REALISED_MARGIN, f"churn AUC {churn:.4f}, recency AUC {recency:.4f}"


def test_churn_finds_the_planted_drifters(scored: pd.DataFrame) -> None:
    """A floor the model must keep whatever recency does: well above chance (0.5)."""
    churn = roc_auc_score(scored["drifting"], scored["churn_probability"])
    assert churn > CHURN_FLOOR, f"churn AUC {churn:.4f} on the planted drifters"


def test_loyalty_follows_the_planted_engagement_better_than_frequency_or_spend(
    scored: pd.DataFrame,
) -> None:
    def rho(column: str) -> float:
        return float(spearmanr(scored[column], scored["engaged_rate"]).statistic)

    loyalty, orders, spend = rho("loyalty_score"), rho("orders"), rho("spend")
    measured = f"loyalty {loyalty:.4f}, orders {orders:.4f}, spend {spend:.4f}"
    assert loyalty > LOYALTY_FLOOR, measured
    assert loyalty > max(orders, spend) + LOYALTY_MARGIN, measured
    assert np.isfinite(loyalty)
