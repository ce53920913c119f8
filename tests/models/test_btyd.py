"""BG/NBD and Gamma-Gamma against the published CDNOW numbers, plus properties of the outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from models.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    _bgnbd_loglik_and_grad,
    _gamma_gamma_loglik_and_grad,
    discounted_clv,
)

PUBLISHED_BGNBD = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def cdnow_summary(shared_data: Path) -> pd.DataFrame:
    """The published 39-week calibration summary of the CDNOW sample (weeks)."""
    return pd.read_csv(shared_data / "cdnow" / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def fitted_bgnbd(cdnow_summary: pd.DataFrame) -> BetaGeoModel:
    s = cdnow_summary
    return BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])


@pytest.fixture(scope="module")
def repeat_spend(shared_data: Path) -> pd.DataFrame:
    """Per repeat customer of CDNOW_sample.txt: repeat purchases (x) and their mean value (zbar).

    Same-day lines are one transaction; only days before 1997-10-01; the first day is dropped."""
    raw = pd.read_csv(
        shared_data / "cdnow" / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer", "date", "cds", "dollars"],
    )
    raw["date"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    raw = raw[raw["date"] < "1997-10-01"]
    days = raw.groupby(["customer", "date"], as_index=False)["dollars"].sum()
    days = days.sort_values(["customer", "date"])
    repeat = days[days.groupby("customer").cumcount() > 0]
    out = repeat.groupby("customer")["dollars"].agg(x="size", zbar="mean")
    return out.reset_index()


def test_bgnbd_reproduces_published_cdnow_fit(fitted_bgnbd: BetaGeoModel) -> None:
    for name, published in PUBLISHED_BGNBD.items():
        assert fitted_bgnbd.params_[name] == pytest.approx(published, rel=0.005), name
    assert fitted_bgnbd.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)


def test_bgnbd_customer_one_expects_published_purchases(
    fitted_bgnbd: BetaGeoModel, cdnow_summary: pd.DataFrame
) -> None:
    first = cdnow_summary.iloc[[0]]
    expected = fitted_bgnbd.expected_purchases(39, first["frequency"], first["recency"], first["T"])
    assert round(float(expected[0]), 3) == 1.226


def test_gamma_gamma_reproduces_published_cdnow_fit(repeat_spend: pd.DataFrame) -> None:
    assert len(repeat_spend) == 946
    model = GammaGammaModel().fit(repeat_spend["x"], repeat_spend["zbar"])
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert model.params_[name] == pytest.approx(published, rel=0.01), name
    assert model.log_likelihood_ == pytest.approx(-4055.9, abs=0.5)


def test_analytic_gradients_match_finite_differences(cdnow_summary: pd.DataFrame) -> None:
    x, t_x, big_t = (cdnow_summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))

    def bg_value(params: np.ndarray) -> float:
        return float(_bgnbd_loglik_and_grad(params, x, t_x, big_t)[0].sum())

    def bg_grad(params: np.ndarray) -> np.ndarray:
        return _bgnbd_loglik_and_grad(params, x, t_x, big_t)[1].sum(axis=1)

    start = np.array([0.3, 5.0, 0.8, 2.5])
    assert check_grad(bg_value, bg_grad, start) / np.linalg.norm(bg_grad(start)) < 1e-5

    rng = np.random.default_rng(0)
    freq = rng.integers(1, 10, 300).astype(float)
    value = rng.gamma(3.0, 10.0, 300)

    def gg_value(params: np.ndarray) -> float:
        return float(_gamma_gamma_loglik_and_grad(params, freq, value)[0].sum())

    def gg_grad(params: np.ndarray) -> np.ndarray:
        return _gamma_gamma_loglik_and_grad(params, freq, value)[1].sum(axis=1)

    start = np.array([4.0, 3.0, 12.0])
    assert check_grad(gg_value, gg_grad, start) / np.linalg.norm(gg_grad(start)) < 1e-5


def test_time_unit_only_rescales_alpha(cdnow_summary: pd.DataFrame) -> None:
    s = cdnow_summary
    in_days = BetaGeoModel().fit(s["frequency"], s["recency"] * 7, s["T"] * 7)
    assert in_days.alpha_ == pytest.approx(PUBLISHED_BGNBD["alpha"] * 7, rel=0.005)
    assert in_days.r_ == pytest.approx(PUBLISHED_BGNBD["r"], rel=0.005)


def test_p_alive_is_one_without_repeat_purchase(
    fitted_bgnbd: BetaGeoModel, cdnow_summary: pd.DataFrame
) -> None:
    s = cdnow_summary
    alive = fitted_bgnbd.probability_alive(s["frequency"], s["recency"], s["T"])
    assert np.all(alive[s["frequency"].to_numpy() == 0] == 1.0)
    assert np.all((alive > 0) & (alive <= 1))
    # A long silence after frequent buying makes a customer likely gone.
    assert fitted_bgnbd.probability_alive([10], [5.0], [38.0])[0] < 0.05


def test_probability_of_purchase_agrees_with_a_simulation(fitted_bgnbd: BetaGeoModel) -> None:
    """Posterior simulation: draw (lambda, p) by importance weights, then the next t weeks."""
    model = fitted_bgnbd
    rng = np.random.default_rng(1)
    draws = 400_000
    lam = rng.gamma(model.r_, 1.0 / model.alpha_, draws)
    drop = rng.beta(model.a_, model.b_, draws)
    x, t_x, big_t, horizon = 3.0, 20.0, 38.0, 13.0
    alive_term = (1 - drop) ** x * lam**x * np.exp(-lam * big_t)
    dead_term = drop * (1 - drop) ** (x - 1) * lam**x * np.exp(-lam * t_x)
    weight = alive_term + dead_term
    buys = alive_term / weight * -np.expm1(-lam * horizon)  # dead customers never buy
    simulated = float(np.sum(weight * buys) / np.sum(weight))
    exact = model.probability_of_purchase(horizon, [x], [t_x], [big_t])[0]
    assert exact == pytest.approx(simulated, abs=0.01)
    # P(at least one) can never exceed the expected count.
    assert exact <= model.expected_purchases(horizon, [x], [t_x], [big_t])[0]


def test_median_time_to_next_purchase_solves_half(fitted_bgnbd: BetaGeoModel) -> None:
    x, t_x, big_t = np.array([5.0, 1.0, 8.0]), np.array([36.0, 30.0, 2.0]), np.array([38.0] * 3)
    waits = fitted_bgnbd.median_time_to_next_purchase(x, t_x, big_t)
    for i in np.flatnonzero(np.isfinite(waits)):
        half = fitted_bgnbd.probability_of_purchase(waits[i], x[[i]], t_x[[i]], big_t[[i]])
        assert half[0] == pytest.approx(0.5, abs=1e-9)
    assert np.isfinite(waits[0]) and not np.isfinite(waits[2])


def test_undiscounted_clv_is_expected_purchases_times_value(
    fitted_bgnbd: BetaGeoModel, repeat_spend: pd.DataFrame, cdnow_summary: pd.DataFrame
) -> None:
    spend = GammaGammaModel().fit(repeat_spend["x"], repeat_spend["zbar"])
    s = cdnow_summary.head(50)
    value = np.where(s["frequency"] > 0, 20.0, 0.0)
    args = (s["frequency"], s["recency"], s["T"], value)
    flat = discounted_clv(fitted_bgnbd, spend, *args, annual_discount_rate=0.0, days_per_unit=7)
    expected = fitted_bgnbd.expected_purchases(365 / 7, *args[:3]) * spend.expected_order_value(
        s["frequency"], value
    )
    np.testing.assert_allclose(flat, expected, rtol=1e-9)
    discounted = discounted_clv(fitted_bgnbd, spend, *args, days_per_unit=7)
    assert np.all(discounted < flat) and np.all(discounted > 0.85 * flat)


def test_json_round_trip_gives_the_same_predictions(
    fitted_bgnbd: BetaGeoModel, cdnow_summary: pd.DataFrame
) -> None:
    s = cdnow_summary
    again = BetaGeoModel.from_dict(fitted_bgnbd.to_dict())
    np.testing.assert_array_equal(
        again.expected_purchases(13, s["frequency"], s["recency"], s["T"]),
        fitted_bgnbd.expected_purchases(13, s["frequency"], s["recency"], s["T"]),
    )
    spend = GammaGammaModel().fit([1, 2, 3, 4], [10.0, 20.0, 15.0, 30.0])
    assert GammaGammaModel.from_dict(spend.to_dict()).params_ == spend.params_


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="recency"):
        BetaGeoModel().fit([1, 0], [5.0, 0.0], [3.0, 4.0])
    with pytest.raises(ValueError, match="missing"):
        BetaGeoModel().fit([1, np.nan], [1.0, 0.0], [3.0, 4.0])
    with pytest.raises(ValueError, match="repeat purchase"):
        GammaGammaModel().fit([0, 0], [0.0, 0.0])


def test_penalizer_shrinks_parameters(cdnow_summary: pd.DataFrame) -> None:
    s = cdnow_summary
    plain = BetaGeoModel().fit(s["frequency"], s["recency"], s["T"])
    shrunk = BetaGeoModel(penalizer_coef=0.1).fit(s["frequency"], s["recency"], s["T"])
    assert shrunk.alpha_ < plain.alpha_
    assert shrunk.log_likelihood_ < plain.log_likelihood_


def test_expected_purchases_stay_finite_for_a_near_degenerate_fit() -> None:
    """a, b in the millions (an almost fixed drop-out chance) happen on real shops."""
    model = BetaGeoModel.from_dict(
        {
            "model": "bgnbd",
            "penalizer_coef": 0.0,
            "params": {"r": 1.035, "alpha": 31.16, "a": 37765.9, "b": 3111195.6},
            "log_likelihood": 0.0,
            "n_customers": 1,
        }
    )
    x, t_x, big_t = (
        np.array([0.0, 5.0, 7.0]),
        np.array([0.0, 89.0, 88.0]),
        np.array([56.0, 300, 123]),
    )
    horizons = [1.0, 30.0, 90.0, 365.0, 2000.0]
    curves = np.array([model.expected_purchases(h, x, t_x, big_t) for h in horizons])
    assert np.all(np.isfinite(curves)) and np.all(np.diff(curves, axis=0) > 0)
    # the two hypergeometric forms meet where the code switches (t = (alpha + T) / 2)
    switch = (model.alpha_ + big_t[1]) / 2
    below = model.expected_purchases(switch * (1 - 1e-9), x[[1]], t_x[[1]], big_t[[1]])
    above = model.expected_purchases(switch * (1 + 1e-9), x[[1]], t_x[[1]], big_t[[1]])
    assert below[0] == pytest.approx(above[0], rel=1e-6)


def _bgnbd(r: float, alpha: float, a: float, b: float) -> BetaGeoModel:
    params = {"r": r, "alpha": alpha, "a": a, "b": b}
    return BetaGeoModel.from_dict(
        {"model": "bgnbd", "penalizer_coef": 0.0, "params": params, "log_likelihood": 0.0}
        | {"n_customers": 1}
    )


def test_expected_purchases_without_repeat_when_a_plus_b_is_below_one() -> None:
    """A young shop's fit can have a + b < 1; then the far-horizon 2F1 is negative for customers
    without a repeat purchase (its log once turned their expected orders into NaN).

    Independent check: with no repeat purchase the customer is alive at T, the posterior of
    lambda is Gamma(r, alpha + T) and that of p is its prior Beta(a, b), and an alive customer
    expects (1 - exp(-lambda p t)) / p purchases in the next t, so
    E = integral of Beta(p; a, b) * (1 - ((alpha + T) / (alpha + T + p t))^r) / p dp."""
    from scipy.integrate import quad
    from scipy.stats import beta as beta_distribution

    r, alpha, a, b = 0.2805, 31.05, 0.2766, 0.6406  # CDNOW's fit at 1997-03-12, in days
    model = _bgnbd(r, alpha, a, b)
    for big_t in (0.0, 5.0, 30.0, 69.0):
        for horizon in (10.0, 91.0, 365.0):  # both sides of the switch at (alpha + T) / 2

            def integrand(p: float, big_t: float = big_t, horizon: float = horizon) -> float:
                ratio = (alpha + big_t) / (alpha + big_t + p * horizon)
                return float(beta_distribution.pdf(p, a, b) * -np.expm1(r * np.log(ratio)) / p)

            exact = quad(integrand, 0.0, 1.0, limit=200)[0]
            got = model.expected_purchases(horizon, [0.0], [0.0], [big_t])[0]
            assert got == pytest.approx(exact, rel=1e-6), (big_t, horizon)


@pytest.mark.parametrize(
    ("params", "x", "t_x", "big_t", "horizon"),
    [
        # scipy's 2F1 answered -8,637 and -61,744 purchases here
        ((21.7, 2.69, 2.32e4, 89.3), 57.0, 57.4, 57.6, 30.0),
        ((21.7, 2.69, 2.32e4, 89.3), 209.0, 258.0, 291.0, 90.0),
        # and -inf and NaN here (ten-year horizons)
        ((0.015, 18.2, 1.34, 0.307), 306.0, 306.0, 306.0, 3650.0),
        ((3.02, 4.93, 0.141, 5.5e4), 1.0, 1.11, 1.28, 3650.0),
    ],
)
def test_expected_purchases_agree_with_a_simulation_where_the_closed_form_breaks(
    params: tuple[float, float, float, float],
    x: float,
    t_x: float,
    big_t: float,
    horizon: float,
) -> None:
    """Far outside realistic fits the closed form's 2F1 goes wrong; the guard integrates.

    Independent check by simulation: given alive at T, lambda ~ Gamma(r + x, alpha + T) and
    p ~ Beta(a, b + x) independently, and the customer expects (1 - exp(-lambda p t)) / p
    purchases in the next t."""
    r, alpha, a, b = params
    model = _bgnbd(*params)
    rng = np.random.default_rng(7)
    lam = rng.gamma(r + x, 1.0 / (alpha + big_t), 400_000)
    drop = rng.beta(a, b + x, 400_000)
    per_draw = -np.expm1(-lam * drop * horizon) / drop
    alive = model.probability_alive([x], [t_x], [big_t])[0]
    simulated = alive * per_draw.mean()
    error = 4 * alive * per_draw.std() / np.sqrt(len(per_draw))
    got = model.expected_purchases(horizon, [x], [t_x], [big_t])[0]
    assert abs(got - simulated) <= error + 1e-9 * simulated, (got, simulated, error)


def test_expected_purchases_stay_within_their_bounds_on_extreme_fits() -> None:
    """Random fits from near-homogeneous to degenerate, customers up to 300 repeat days."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        model = _bgnbd(
            10 ** rng.uniform(-2, 1.5),
            10 ** rng.uniform(0, 3),
            10 ** rng.uniform(-2, 6),
            10 ** rng.uniform(-2, 7),
        )
        big_t = 10 ** rng.uniform(0, 3, 20)
        x = np.minimum(np.floor(10 ** rng.uniform(0, 2.5, 20)) - 1, np.floor(big_t))
        t_x = np.where(x > 0, x + (big_t - x) * rng.uniform(0, 1, 20), 0.0)
        for horizon in (1.0, 90.0, 365.0, 3650.0):
            expected = model.expected_purchases(horizon, x, t_x, big_t)
            at_least_one = model.probability_of_purchase(horizon, x, t_x, big_t)
            assert np.all(np.isfinite(expected))
            assert np.all(expected >= at_least_one * (1 - 1e-6))


def test_heavy_tailed_order_values_still_get_a_value() -> None:
    """Order values spread like a lognormal with sigma 2 (a few wholesale buyers) fit q <= 1,
    where the Gamma-Gamma population mean does not exist. Customers whose posterior mean exists
    keep it; the others get the observed mean repeat order value, not NaN (as every customer
    did before, which left the whole CLV column empty)."""
    rng = np.random.default_rng(0)
    typical = np.exp(rng.normal(3.0, 2.0, 3000))
    x = rng.integers(1, 10, 3000).astype(float)
    m = np.array(
        [rng.gamma(4.0, mu / 4.0, int(k)).mean() for mu, k in zip(typical, x, strict=True)]
    )
    model = GammaGammaModel(penalizer_coef=0.001).fit(x, m)
    p, q, gamma = model.p_, model.q_, model.gamma_
    assert q <= 1.0  # the case this test is about
    asked_x = np.array([0.0, 1.0, 3.0, 8.0])
    asked_m = np.array([0.0, 50.0, 20.0, 500.0])
    values = model.expected_order_value(asked_x, asked_m)
    observed = float(np.sum(x * m) / np.sum(x))
    has_mean = p * asked_x + q - 1.0 > 0
    assert not has_mean[0] and has_mean[1:].all()
    assert values[0] == pytest.approx(observed)
    assert values[has_mean] == pytest.approx(
        p * (gamma + asked_x[has_mean] * asked_m[has_mean]) / (p * asked_x[has_mean] + q - 1.0)
    )
    # the value survives saving; a model saved before it existed leaves such customers empty
    again = GammaGammaModel.from_dict(model.to_dict())
    assert again.expected_order_value(asked_x, asked_m) == pytest.approx(values)
    old = model.to_dict()
    del old["observed_order_value"]
    assert np.isnan(GammaGammaModel.from_dict(old).expected_order_value([0.0], [0.0])[0])
