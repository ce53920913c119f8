"""The spend forecast chosen by backtest (models/spend.py): the learned model wins where the
spend follows something BG/NBD x Gamma-Gamma cannot see, BG/NBD x Gamma-Gamma where the shop is
too small to learn from; the choice survives save and load; the forecast is finite and >= 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.customers import customer_features
from features.labels import spend_labels
from features.shop import Shop
from models.churn import training_cutoffs
from models.customer_scores import SPEND_COLUMN, CustomerScorer
from models.spend import (
    BTYD,
    LEARNED,
    MEAN,
    MIN_HELD_OUT_CUSTOMERS,
    choose_spend_model,
    pick_winner,
    spend_metrics,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
DAYS = 400
HORIZON = 60.0
AS_OF = START + pd.Timedelta(days=DAYS)


def _shop(customers: int, seed: int, complaints: bool) -> Shop:
    """A shop of `customers` repeat buyers over `DAYS` days: each buys at their own Poisson
    rate (every 5 to 30 days), at their own order value, and leaves for good after any order
    with chance 2% (the BG/NBD story). With `complaints`, half of them file a complaint on a
    random day after day 60 and never order again: a cause of leaving in the feedback table,
    which the BTYD models do not read."""
    rng = np.random.default_rng(seed)
    orders, feedback = [], []
    for number in range(customers):
        customer = f"c{number:04d}"
        gap, value = rng.uniform(5, 30), float(rng.lognormal(3.0, 0.5))
        leaves_at = float(rng.uniform(60, DAYS)) if complaints and rng.random() < 0.5 else DAYS
        if leaves_at < DAYS:
            feedback.append((customer, START + pd.Timedelta(days=leaves_at)))
        day = float(rng.uniform(0, 60))
        while day < leaves_at:
            orders.append((f"{customer}-{len(orders)}", customer, day, value))
            if rng.random() < 0.02:
                break
            day += float(rng.exponential(gap))
    purchases = pd.DataFrame(orders, columns=["order_id", "customer_id", "day", "unit_price"])
    purchases["ordered_at"] = START + pd.to_timedelta(purchases.pop("day"), unit="D")
    purchases = purchases.assign(item_id="basket", quantity=1, channel=None)
    complaints_frame = pd.DataFrame(feedback, columns=["customer_id", "created_at"])
    complaints_frame = complaints_frame.assign(
        kind="complaint", item_id=None, order_id=None, text=None
    )
    complaints_frame["rating"] = pd.array([None] * len(complaints_frame), dtype="Int64")
    complaints_frame["created_at"] = pd.to_datetime(complaints_frame["created_at"], utc=True)
    items = pd.DataFrame({"item_id": ["basket"], "category": [None], "available": [True]})
    people = pd.DataFrame({"customer_id": sorted(purchases["customer_id"].unique())})
    return Shop(purchases, complaints_frame, items, people)


def choice_cut() -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=HORIZON)


def _choose(shop: Shop) -> tuple[object, object]:
    first = shop.purchases["ordered_at"].min()

    def cutoffs(end: pd.Timestamp) -> list[pd.Timestamp]:
        return training_cutoffs(end, HORIZON, first, 4, 28.0)

    return choose_spend_model(
        shop, AS_OF, HORIZON, cutoffs, customer_features, spend_labels, seed=0
    )


@pytest.fixture(scope="module")
def complaint_shop() -> Shop:
    return _shop(customers=400, seed=3, complaints=True)


@pytest.fixture(scope="module")
def complaint_scorer(complaint_shop: Shop) -> CustomerScorer:
    """Fitted for the value horizon: the spend choice runs inside `fit`."""
    return CustomerScorer(n_cutoffs=4).fit(
        complaint_shop,
        AS_OF,
        churn_horizon_days=HORIZON,
        fit_churn=False,
        value_horizon_days=HORIZON,
    )


def test_learned_spend_wins_where_complaints_drive_leaving(
    complaint_scorer: CustomerScorer,
) -> None:
    """Complaints end spending; BG/NBD x Gamma-Gamma cannot see them, the trees can: the
    held-out window says so and the learned forecast (alone or averaged) is chosen."""
    choice, learned = complaint_scorer.spend_choice_, complaint_scorer.spend_model_
    assert choice is not None
    assert choice.winner in (LEARNED, MEAN), choice.reason
    assert learned is not None and choice.training_cutoffs
    backtest = choice.backtest
    assert backtest[choice.winner]["mae"] < backtest[BTYD]["mae"]
    assert backtest[choice.winner]["spearman"] > backtest[BTYD]["spearman"]
    assert choice.cut == AS_OF - pd.Timedelta(days=HORIZON)


def test_btyd_is_kept_on_a_shop_too_small_to_learn_from() -> None:
    """Sixty customers, complaints and all: too few in the held-out window to tell forecasts
    apart (on thirty, the average forecast once "won" on the top three customers), so BG/NBD x
    Gamma-Gamma is kept, no learned model is stored, and the reason gives the count."""
    small = _shop(customers=60, seed=3, complaints=True)
    choice, learned = _choose(small)
    assert choice.winner == BTYD and learned is None
    known = small.purchases[small.purchases["ordered_at"] < choice_cut()]
    assert known["customer_id"].nunique() < MIN_HELD_OUT_CUSTOMERS
    assert f"{known['customer_id'].nunique()} customers" in choice.reason


def test_a_shop_too_young_for_a_backtest_keeps_btyd_and_says_why() -> None:
    young = _shop(customers=200, seed=1, complaints=False)
    young = young.before(START + pd.Timedelta(days=150))
    first = young.purchases["ordered_at"].min()
    choice, learned = choose_spend_model(
        young,
        START + pd.Timedelta(days=150),
        HORIZON,
        lambda end: training_cutoffs(end, HORIZON, first, 4, 28.0),
        customer_features,
        spend_labels,
    )
    assert choice.winner == BTYD and learned is None
    assert "too young" in choice.reason and "too short" in choice.reason


def test_winner_needs_two_of_three_measures() -> None:
    base = {"spearman": 0.80, "mae": 100.0, "top_decile_spend_share": 0.30}
    one = {**base, "mae": 90.0}
    two = {**base, "mae": 90.0, "spearman": 0.81}
    assert pick_winner({BTYD: base, LEARNED: one, MEAN: base})[0] == BTYD
    assert pick_winner({BTYD: base, LEARNED: one, MEAN: two})[0] == MEAN
    nan = {"spearman": float("nan"), "mae": 90.0, "top_decile_spend_share": float("nan")}
    assert pick_winner({BTYD: base, LEARNED: nan, MEAN: nan})[0] == BTYD


def test_spend_metrics_match_the_protocol_definitions() -> None:
    actual = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 100.0])
    predicted = actual[::-1].copy()
    metrics = spend_metrics(predicted, actual)
    assert metrics["spearman"] == pytest.approx(-1.0)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(predicted - actual)))
    # the top 10% by prediction is the one customer who spent 0
    assert metrics["top_decile_spend_share"] == 0.0


def test_scorer_keeps_the_chosen_spend_model_through_save_and_load(
    complaint_shop: Shop, complaint_scorer: CustomerScorer, tmp_path: Path
) -> None:
    """A scorer fitted for a value horizon stores the winner and its trees; the loaded scorer
    gives the same finite, non-negative predicted_spend, and another horizon is BG/NBD x
    Gamma-Gamma's (the rule of docs/churn-and-loyalty.md)."""
    scorer = complaint_scorer
    assert scorer.spend_choice_ is not None and scorer.spend_choice_.winner != BTYD
    table = scorer.score(complaint_shop, value_horizon_days=HORIZON)
    spend = table[SPEND_COLUMN].to_numpy(np.float64)
    assert np.isfinite(spend).all() and (spend >= 0).all()

    loaded = CustomerScorer.load(scorer.save(tmp_path / "scorer"))
    assert loaded.spend_choice_ is not None
    assert loaded.spend_choice_.winner == scorer.spend_choice_.winner
    assert loaded.spend_choice_.backtest == scorer.spend_choice_.backtest
    again = loaded.score(complaint_shop, value_horizon_days=HORIZON)
    pd.testing.assert_frame_equal(again, table)

    # at another horizon the BTYD forecast is used: it differs from the learned one
    other = loaded.score(complaint_shop, value_horizon_days=HORIZON + 30)[SPEND_COLUMN]
    plain = CustomerScorer(n_cutoffs=4).fit(
        complaint_shop, AS_OF, churn_horizon_days=HORIZON, fit_churn=False
    )
    expected = plain.score(complaint_shop, value_horizon_days=HORIZON + 30)[SPEND_COLUMN]
    np.testing.assert_allclose(other.to_numpy(), expected.to_numpy())
    assert not np.allclose(
        table[SPEND_COLUMN].to_numpy(),
        plain.score(complaint_shop, value_horizon_days=HORIZON)[SPEND_COLUMN].to_numpy(),
    )


def test_recent_rate_and_the_mean_of_three_are_forecast_as_chosen() -> None:
    """A choice of `recent_spend_rate` needs no learned model: the last 90 days' spend as a
    daily rate x the horizon; the mean of three averages learned, BG/NBD x Gamma-Gamma and
    that rate; at another horizon BG/NBD x Gamma-Gamma is used."""
    from models.spend import MEAN_OF_THREE, RECENT, LearnedSpend, SpendChoice, forecast

    features = pd.DataFrame({"spend_last_90d": [90.0, 0.0, np.nan], "x": [1.0, 2.0, 3.0]})
    btyd = np.array([10.0, 20.0, 30.0])
    recent = SpendChoice(HORIZON, RECENT, "test")
    np.testing.assert_allclose(forecast(recent, None, features, btyd, HORIZON), [HORIZON, 0.0, 0.0])
    np.testing.assert_allclose(forecast(recent, None, features, btyd, HORIZON + 1), btyd)
    learned = LearnedSpend(max_iter=5, min_samples_leaf=1).fit(
        features[["x"]], np.array([3.0, 6.0, 9.0])
    )
    three = SpendChoice(HORIZON, MEAN_OF_THREE, "test")
    expected = (learned.predict(features) + btyd + np.array([HORIZON, 0.0, 0.0])) / 3.0
    np.testing.assert_allclose(forecast(three, learned, features, btyd, HORIZON), expected)
    # a mean needing the learned model, without it, falls back to BG/NBD x Gamma-Gamma
    np.testing.assert_allclose(forecast(three, None, features, btyd, HORIZON), btyd)
    base = {"spearman": 0.80, "mae": 100.0, "top_decile_spend_share": 0.30}
    better = {"spearman": 0.81, "mae": 90.0, "top_decile_spend_share": 0.31}
    assert pick_winner({BTYD: base, LEARNED: base, MEAN: base, RECENT: better})[0] == RECENT
