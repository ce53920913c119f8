"""Buy-till-you-die models: BG/NBD (purchase counts) and Gamma-Gamma (order value).

The `lifetimes` package that popularised these models is archived, so Patronage carries its own
implementation, written from Fader, Hardie & Lee (2005), "Counting your customers the easy way",
and Fader & Hardie's note on the Gamma-Gamma spend model. The tests check both against the
published CDNOW numbers.

Inputs follow the standard definitions (any time unit, the same for every argument):
- `frequency` (x): number of repeat purchases, i.e. distinct purchase days minus one;
- `recency` (t_x): time from the first to the last purchase;
- `T`: time from the first purchase to the end of the observation period (`as_of`);
- `monetary_value`: mean value of the repeat purchases (the first purchase excluded).

Everything is computed in log space with `gammaln` / `betaln`, vectorised over customers; the
fit maximises the log-likelihood with L-BFGS on log parameters and an analytic gradient, on the
distinct input rows only (weighted by how often each occurs), which keeps a fit on a million
customers within seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1

from models.fitted import check_fitted

FloatArray = NDArray[np.float64]

DAYS_PER_MONTH = 365.25 / 12


class BTYDFitError(RuntimeError):
    """The maximum-likelihood fit did not converge; the message says what to check."""


def _as_float(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has missing or infinite values; drop those customers first")
    return array


def _check_summary(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_float(frequency, "frequency")
    t_x = _as_float(recency, "recency")
    big_t = _as_float(T, "T")
    if not (len(x) == len(t_x) == len(big_t)):
        raise ValueError("frequency, recency and T must have the same length")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(big_t < t_x - 1e-9):
        raise ValueError("need frequency >= 0 and 0 <= recency <= T for every customer")
    if np.any((x == 0) & (t_x > 0)):
        raise ValueError("recency must be 0 for customers with frequency 0 (standard definition)")
    return x, t_x, big_t


def _distinct_rows(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """The distinct rows of the given columns and how often each occurs (the fit's weights)."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(np.float64)


LOG_PARAM_BOUND = 18.0
"""Log parameters stay within +-18 (about 1.5e-8 .. 6.6e7): the line search never overflows, and a
degenerate shop (no sign of drop-out) ends at the bound instead of at infinity."""


def _minimise(
    objective: Any, start: FloatArray, what: str, max_iterations: int = 2000
) -> FloatArray:
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * len(start),
        options={"maxiter": max_iterations, "gtol": 1e-10, "ftol": 1e-15},
    )
    # L-BFGS may stop on "abnormal termination in line search" right at the optimum when the
    # objective is flat to machine precision; only a non-finite or non-moving result is an error.
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise BTYDFitError(
            f"{what} fit failed ({result.message}); check the inputs (units, outliers) or add "
            "a small penalizer_coef"
        )
    return np.asarray(result.x, dtype=np.float64)


def _order_within(alive: FloatArray, shape: FloatArray, rate: FloatArray, t: float) -> FloatArray:
    """P(at least one purchase in the next t) = P(alive) * (1 - (rate / (rate + t))^shape), with
    lambda given alive ~ Gamma(shape = r + x, rate = alpha + T) (see probability_of_purchase)."""
    return alive * -np.expm1(shape * (np.log(rate) - np.log(rate + t)))


def _alive_expected_purchases(
    r: float, alpha: float, a: float, b: float, t: float, x: float, big_t: float
) -> float:
    """Expected purchases in (T, T + t] of one customer known to be alive at T, by numerical
    integration (the check for BetaGeoModel.expected_purchases's closed form).

    Given alive, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x) are independent, and an
    alive customer expects (1 - exp(-lambda p t)) / p purchases; the lambda expectation is
    closed, (1 - (1 + p t / (alpha + T))^-(r + x)) / p, and the p one is integrated with scipy's
    adaptive quadrature, split around the Beta's bulk and the integrand's knee."""
    shape, rate = r + x, t / (alpha + big_t)
    first, second = a, b + x
    log_norm = float(betaln(first, second))

    def gain(p: float) -> float:
        return float(-np.expm1(-shape * np.log1p(p * rate)) / p)

    mean = first / (first + second)
    spread = np.sqrt(first * second / ((first + second) ** 2 * (first + second + 1.0)))
    marks = [mean + c * spread for c in (-8, -4, -2, -1, 0, 1, 2, 4, 8)] + [1.0 / (shape * rate)]
    if first < 1.0:
        # p = v^(1/a) takes the p^(a-1) pole at 0 away: p^(a-1) dp = dv / a
        def integrand(v: float) -> float:
            p = v ** (1.0 / first)
            return float(np.exp((second - 1.0) * np.log1p(-p) - log_norm) / first * gain(p))

        marks = [m**first for m in marks if 0.0 < m < 1.0]
    else:

        def integrand(v: float) -> float:
            log_density = (first - 1.0) * np.log(v) + (second - 1.0) * np.log1p(-v) - log_norm
            return float(np.exp(log_density) * gain(v))

    points = sorted({m for m in marks if 1e-12 < m < 1.0 - 1e-12})
    value, _ = quad(integrand, 0.0, 1.0, points=points, limit=400, epsabs=0.0, epsrel=1e-10)
    return float(value)


class BetaGeoModel:
    """BG/NBD: Poisson purchasing at rate lambda ~ Gamma(r, alpha) while alive; after each purchase
    the customer drops out with probability p ~ Beta(a, b).

    A statistical model on per-customer summaries, not a scikit-learn estimator: `fit` takes
    three vectors (frequency, recency, T), not X / y, so it does not claim the estimator API
    (no get_params, cloning or pipelines); it is saved with `to_dict` / `from_dict`.

    `penalizer_coef` adds `penalizer_coef * (r^2 + alpha^2 + a^2 + b^2)` to the mean negative
    log-likelihood (as `lifetimes` did), which keeps the fit finite on tiny or degenerate shops.
    Learned: `r_`, `alpha_`, `a_`, `b_`, `log_likelihood_` (summed over customers), `n_customers_`.
    """

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        self.penalizer_coef = penalizer_coef

    # ----- fitting -------------------------------------------------------------------------
    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BetaGeoModel:
        """Fit by maximum likelihood; inputs per customer in one time unit (days or weeks).

        Raises ValueError on missing, negative or inconsistent inputs, BTYDFitError when the
        optimiser fails."""
        x, t_x, big_t = _check_summary(frequency, recency, T)
        if len(x) == 0:
            raise ValueError("no customers to fit")
        (ux, ut, uT), weights = _distinct_rows(x, t_x, big_t)
        n = float(weights.sum())
        penalizer = float(self.penalizer_coef)

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = _bgnbd_loglik_and_grad(params, ux, ut, uT)
            value = -float(weights @ ll) / n + penalizer * float(params @ params)
            # d/dlog(theta) = theta * d/dtheta
            gradient = -(grad @ weights) / n * params + 2.0 * penalizer * params**2
            return value, gradient

        # alpha is a time scale: start it at the mean observation length so that days and weeks
        # both start close to the optimum.
        start = np.log([1.0, max(float(np.mean(big_t)), 1e-3), 1.0, 1.0])
        log_params = _minimise(objective, start, "BG/NBD")
        self.r_, self.alpha_, self.a_, self.b_ = (float(v) for v in np.exp(log_params))
        ll, _ = _bgnbd_loglik_and_grad(np.exp(log_params), ux, ut, uT)
        self.log_likelihood_ = float(weights @ ll)
        self.n_customers_ = int(n)
        return self

    @property
    def params_(self) -> dict[str, float]:
        """The fitted parameters as a dict (r, alpha, a, b)."""
        check_fitted(self, "r_")
        return {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}

    # ----- per-customer outputs ---------------------------------------------------------------
    def _log_alive_odds_against(
        self, x: FloatArray, t_x: FloatArray, big_t: FloatArray
    ) -> FloatArray:
        """log of a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, -inf for x == 0."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        out = np.full(len(x), -np.inf)
        repeat = x > 0
        xr = x[repeat]
        out[repeat] = (
            np.log(a)
            - np.log(b + xr - 1.0)
            + (r + xr) * (np.log(alpha + big_t[repeat]) - np.log(alpha + t_x[repeat]))
        )
        return out

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(the customer is still alive at T) given the history.

        Caveat: this is exactly 1 for customers without a repeat purchase (BG/NBD customers can
        only drop out right after a purchase), so it ranks one-time buyers as the safest of all
        and must never be used as a churn score."""
        check_fitted(self, "r_")
        x, t_x, big_t = _check_summary(frequency, recency, T)
        return np.exp(-np.logaddexp(0.0, self._log_alive_odds_against(x, t_x, big_t)))

    def expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Conditional expected number of purchases in (T, T + t] given the history.

        `t` is in the unit of the inputs. The hypergeometric term of the paper,
        ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t)), is rewritten with
        Pfaff's transformation as 2F1(a-1, r+x; a+b+x-1; -t/(alpha+T)): no power of a large
        number multiplies a tiny one, so frequent buyers and near-degenerate fits (a, b in the
        millions, i.e. an almost fixed drop-out chance) stay finite."""
        check_fitted(self, "r_")
        x, t_x, big_t = _check_summary(frequency, recency, T)
        r, a, b = self.r_, self.a_, self.b_
        if abs(a - 1.0) < 1e-6:
            a = 1.0 + 1e-6  # the formula has a removable singularity at a = 1
        if t <= 0:
            return np.zeros(len(x))
        w = -t / (self.alpha_ + big_t)
        hyper = np.empty(len(x))
        near = w >= -0.5
        hyper[near] = hyp2f1(a - 1.0, r + x[near], a + b + x[near] - 1.0, w[near])
        # far horizons (|w| > 1/2): the paper's own form converges there (z = w / (w - 1) >= 1/3).
        # Its 2F1 is negative for customers without a repeat purchase when a + b < 1 (then
        # c = a + b - 1 < 0; seen on young shops), so the power is taken in log space and the
        # sign kept apart: a plain log made those customers' expected orders NaN.
        far = ~near
        z = w[far] / (w[far] - 1.0)
        series = hyp2f1(r + x[far], b + x[far], a + b + x[far] - 1.0, z)
        with np.errstate(divide="ignore"):  # a 2F1 of exactly 0 gives log 0 = -inf, exp 0
            hyper[far] = np.sign(series) * np.exp(
                (r + x[far]) * np.log1p(-z) + np.log(np.abs(series))
            )
        numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - hyper)
        alive = self.probability_alive(x, t_x, big_t)
        expected = numerator * alive
        # Guard: far outside realistic fits (r above 20 together with a above 10^4, ten-year
        # horizons for a one-day-old customer) scipy's 2F1 can be wrong, even negative. The
        # answer must lie between P(at least one purchase) and its first-order bound
        # P(alive) * (r + x) * t / (alpha + T); rows outside, or not finite, are integrated
        # numerically instead (slower, per row; none on the realistic fits checked).
        lower = _order_within(alive, r + x, self.alpha_ + big_t, t)
        upper = alive * (r + x) * t / (self.alpha_ + big_t)
        with np.errstate(invalid="ignore"):
            wrong = ~(
                np.isfinite(expected)
                & (expected >= lower * (1.0 - 1e-9))
                & (expected <= upper * (1.0 + 1e-9))
            )
        for i in np.flatnonzero(wrong):
            expected[i] = alive[i] * _alive_expected_purchases(
                self.r_, self.alpha_, self.a_, self.b_, t, x[i], big_t[i]
            )
        return expected

    def probability_of_purchase(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(at least one purchase in (T, T + t]) given the history; `t` in the inputs' unit.

        Derivation: a customer can only drop out right after a purchase, so one who is alive at
        T makes no purchase in the next t with probability exp(-lambda t), and the posterior of
        lambda given alive is Gamma(r + x, alpha + T). Hence
        P = P(alive) * (1 - ((alpha + T) / (alpha + T + t))^(r + x))."""
        check_fitted(self, "r_")
        x, t_x, big_t = _check_summary(frequency, recency, T)
        alive = self.probability_alive(x, t_x, big_t)
        return _order_within(alive, self.r_ + x, self.alpha_ + big_t, t)

    def median_time_to_next_purchase(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """The time t after T by which a next purchase is more likely than not (inputs' unit).

        Solves probability_of_purchase(t) = 0.5 in closed form:
        t = (alpha + T) * ((1 - 0.5 / P(alive))^(-1 / (r + x)) - 1); infinite when
        P(alive) <= 0.5 (a next purchase is unlikely ever to happen)."""
        check_fitted(self, "r_")
        x, t_x, big_t = _check_summary(frequency, recency, T)
        alive = self.probability_alive(x, t_x, big_t)
        out = np.full(len(x), np.inf)
        likely = alive > 0.5
        remaining = 1.0 - 0.5 / alive[likely]
        out[likely] = (self.alpha_ + big_t[likely]) * np.expm1(
            -np.log(remaining) / (self.r_ + x[likely])
        )
        return out

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """Per-customer log-likelihood under the fitted parameters."""
        check_fitted(self, "r_")
        x, t_x, big_t = _check_summary(frequency, recency, T)
        params = np.array([self.r_, self.alpha_, self.a_, self.b_])
        return _bgnbd_loglik_and_grad(params, x, t_x, big_t)[0]

    # ----- persistence (JSON, never pickle) ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain JSON-able values."""
        check_fitted(self, "r_")
        return {
            "model": "bgnbd",
            "penalizer_coef": self.penalizer_coef,
            "params": self.params_,
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BetaGeoModel:
        """Rebuild a fitted model from `to_dict` output; raises ValueError on another model."""
        if data.get("model") != "bgnbd":
            raise ValueError(f"not a BG/NBD model description: {data.get('model')!r}")
        model = cls(penalizer_coef=float(data["penalizer_coef"]))
        params = data["params"]
        model.r_, model.alpha_ = float(params["r"]), float(params["alpha"])
        model.a_, model.b_ = float(params["a"]), float(params["b"])
        model.log_likelihood_ = float(data["log_likelihood"])
        model.n_customers_ = int(data["n_customers"])
        return model


def _bgnbd_loglik_and_grad(
    params: FloatArray, x: FloatArray, t_x: FloatArray, big_t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer BG/NBD log-likelihood and its gradient in (r, alpha, a, b), shape (4, n)."""
    r, alpha, a, b = params
    repeat = x > 0
    log_alpha_t = np.log(alpha + big_t)
    log_alpha_tx = np.log(alpha + t_x)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b) - (r + x) * log_alpha_t
    # x - 1 is only meaningful for repeat buyers; elsewhere the term is absent (weight 0).
    x_safe = np.where(repeat, x, 1.0)
    a3 = np.where(
        repeat,
        betaln(a + 1.0, b + x_safe - 1.0) - betaln(a, b) - (r + x) * log_alpha_tx,
        -np.inf,
    )
    total = np.logaddexp(a2, a3)
    ll = a1 + total
    w2 = np.exp(a2 - total)
    w3 = 1.0 - w2

    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w2 * log_alpha_t - w3 * log_alpha_tx
    d_alpha = r / alpha - (r + x) * (w2 / (alpha + big_t) + w3 / (alpha + t_x))
    d_a = w2 * (psi_ab - psi_abx) + w3 * (digamma(a + 1.0) - digamma(a) + psi_ab - psi_abx)
    d_b = w2 * (digamma(b + x) - digamma(b) + psi_ab - psi_abx) + w3 * (
        digamma(b + x_safe - 1.0) - digamma(b) + psi_ab - psi_abx
    )
    return ll, np.vstack([d_r, d_alpha, d_a, d_b])


class GammaGammaModel:
    """Gamma-Gamma spend model: each transaction's value ~ Gamma(p, nu), nu ~ Gamma(q, gamma).

    Like BetaGeoModel, a statistical model on two per-customer vectors (frequency, monetary
    value), not a scikit-learn estimator; saved with `to_dict` / `from_dict`.

    Fitted on customers with at least one repeat purchase (frequency > 0) and the mean value of
    their repeat purchases; it assumes value and frequency are independent. `penalizer_coef` as
    in BetaGeoModel. Learned: `p_`, `q_`, `gamma_`, `log_likelihood_`, `n_customers_`,
    `observed_order_value_` (the fitted customers' repeat spend over their repeat purchases)."""

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        self.penalizer_coef = penalizer_coef

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGammaModel:
        """Fit by maximum likelihood on repeat customers; rows with frequency 0 are ignored.

        Raises ValueError when no customer has a repeat purchase with a positive value."""
        x = _as_float(frequency, "frequency")
        m = _as_float(monetary_value, "monetary_value")
        if len(x) != len(m):
            raise ValueError("frequency and monetary_value must have the same length")
        use = (x > 0) & (m > 0)
        if use.sum() < 2:
            raise ValueError(
                "Gamma-Gamma needs at least two customers with a repeat purchase of positive value"
            )
        (ux, um), weights = _distinct_rows(x[use], m[use])
        n = float(weights.sum())
        penalizer = float(self.penalizer_coef)

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = _gamma_gamma_loglik_and_grad(params, ux, um)
            value = -float(weights @ ll) / n + penalizer * float(params @ params)
            gradient = -(grad @ weights) / n * params + 2.0 * penalizer * params**2
            return value, gradient

        # gamma is a value scale: start it at the mean spend.
        start = np.log([1.0, 1.0, max(float(np.mean(um)), 1e-6)])
        log_params = _minimise(objective, start, "Gamma-Gamma")
        self.p_, self.q_, self.gamma_ = (float(v) for v in np.exp(log_params))
        ll, _ = _gamma_gamma_loglik_and_grad(np.exp(log_params), ux, um)
        self.log_likelihood_ = float(weights @ ll)
        self.n_customers_ = int(n)
        self.observed_order_value_ = float(np.sum(x[use] * m[use]) / np.sum(x[use]))
        return self

    @property
    def params_(self) -> dict[str, float]:
        """The fitted parameters as a dict (p, q, gamma)."""
        check_fitted(self, "p_")
        return {"p": self.p_, "q": self.q_, "gamma": self.gamma_}

    def expected_order_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Conditional expected value of a customer's future orders, in the shop's currency.

        E = p (gamma + x m) / (p x + q - 1); customers with x = 0 (or no value) get the
        population mean p gamma / (q - 1).

        Heavy-tailed order values (lognormal with a spread of 1.5 or more, e.g. a few wholesale
        buyers among consumers) fit q <= 1: the population mean then does not exist, and for a
        customer with p x + q <= 1 neither does the posterior one. Those customers get the
        shop's observed mean repeat order value (`observed_order_value_`, NaN for a model saved
        without it) instead of no value at all; the others keep their posterior mean."""
        check_fitted(self, "p_")
        x = _as_float(frequency, "frequency")
        m = np.nan_to_num(np.asarray(monetary_value, dtype=np.float64).reshape(-1))
        x = np.where(m > 0, x, 0.0)
        p, q, gamma = self.p_, self.q_, self.gamma_
        denominator = p * x + q - 1.0
        finite = denominator > 0
        value = np.full(len(x), self.observed_order_value_)
        value[finite] = p * (gamma + x[finite] * m[finite]) / denominator[finite]
        return value

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain JSON-able values."""
        check_fitted(self, "p_")
        return {
            "model": "gamma_gamma",
            "penalizer_coef": self.penalizer_coef,
            "params": self.params_,
            "log_likelihood": self.log_likelihood_,
            "n_customers": self.n_customers_,
            "observed_order_value": self.observed_order_value_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GammaGammaModel:
        """Rebuild a fitted model from `to_dict` output; raises ValueError on another model."""
        if data.get("model") != "gamma_gamma":
            raise ValueError(f"not a Gamma-Gamma model description: {data.get('model')!r}")
        model = cls(penalizer_coef=float(data["penalizer_coef"]))
        params = data["params"]
        model.p_, model.q_, model.gamma_ = (float(params[k]) for k in ("p", "q", "gamma"))
        model.log_likelihood_ = float(data["log_likelihood"])
        model.n_customers_ = int(data["n_customers"])
        # saved before 2026-12-06: no observed value, so customers without a mean stay empty
        model.observed_order_value_ = float(data.get("observed_order_value", np.nan))
        return model


def _gamma_gamma_loglik_and_grad(
    params: FloatArray, x: FloatArray, m: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer Gamma-Gamma log-likelihood of the mean repeat value and its gradient."""
    p, q, gamma = params
    px = p * x
    log_total = np.log(gamma + m * x)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_total
    )
    psi_total = digamma(px + q)
    d_p = x * (psi_total - digamma(px) + np.log(m) + np.log(x) - log_total)
    d_q = psi_total - digamma(q) + np.log(gamma) - log_total
    d_gamma = q / gamma - (px + q) / (gamma + m * x)
    return ll, np.vstack([d_p, d_q, d_gamma])


def discounted_clv(
    bgnbd: BetaGeoModel,
    gamma_gamma: GammaGammaModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon_days: float = 365.0,
    annual_discount_rate: float = 0.10,
    days_per_unit: float = 1.0,
) -> FloatArray:
    """Discounted expected spend over the next `horizon_days`, in the shop's currency.

    CLV = sum_{i=1..M} (E[Y(i)] - E[Y(i-1)]) * v / (1 + d)^i, with months of 365.25/12 days,
    M = ceil(horizon_days / month) (the last step ends exactly at the horizon), E[Y(i)] the
    BG/NBD expected purchases by the end of step i, v the Gamma-Gamma expected order value and
    d = (1 + annual_discount_rate)^(1/12) - 1 the monthly rate. `days_per_unit` converts the
    inputs' time unit to days (7 for weeks)."""
    value = gamma_gamma.expected_order_value(frequency, monetary_value)
    monthly_rate = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    steps = int(np.ceil(horizon_days / DAYS_PER_MONTH - 1e-9))
    total = np.zeros(len(value))
    previous = np.zeros(len(value))
    for step in range(1, steps + 1):
        end_days = min(step * DAYS_PER_MONTH, horizon_days)
        expected = bgnbd.expected_purchases(end_days / days_per_unit, frequency, recency, T)
        total += (expected - previous) / (1.0 + monthly_rate) ** step
        previous = expected
    return total * value
