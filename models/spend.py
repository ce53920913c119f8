"""Predicted spend over a horizon: BG/NBD x Gamma-Gamma, a learned model, and the backtest on
the shop's own latest held-out window that chooses between them.

- `bgnbd_gamma_gamma`: BG/NBD expected orders in the horizon x the Gamma-Gamma expected order
  value (the published models; one order = one UTC purchase day, as the BTYD inputs count them).
- `learned`: gradient-boosted trees (HistGradientBoostingRegressor, Poisson loss: spend is
  non-negative, often zero and skewed) on the customer features (recency, frequency, spend in
  windows, trend, order gaps, feedback) plus the BTYD outputs at the horizon (expected orders,
  P(alive), Gamma-Gamma order value and their product). Trained as churn is: on rolling
  cut-offs `as_of - horizon - k x step` whose label windows end by `as_of`, every BTYD model
  refitted at its cut-off, the label being the spend in `[cut-off, cut-off + horizon)`
  (`features.labels.spend_labels`).
- `learned_and_bgnbd_gamma_gamma_mean`: the average of the two forecasts.
- `recent_spend_rate`: the customer's spend of the last 90 days (`spend_last_90d`) as a daily
  rate times the horizon: the spend trend BG/NBD x Gamma-Gamma cannot see (it weighs every
  past order alike), and the learned trees only partly.
- `learned_bgnbd_gamma_gamma_recent_mean`: the average of the three forecasts (each errs in
  its own way: averaging them lowers the error where no single one is best everywhere).

Choice (`choose_spend_model`): the latest window `[as_of - horizon, as_of)` is held out. The
learned model is fitted on cut-offs whose label windows end by `as_of - horizon`, every
candidate forecasts the held-out window from the data before it, and each is scored on the
three value measures (`spend_metrics`: Spearman, mean absolute error, the share of the real
spend held by the predicted top 10%). A challenger replaces BG/NBD x Gamma-Gamma only when it
is better on at least two of the three (`MIN_MEASURES_WON`); between two such, the one better
on more measures, then the lower error. A winner with the learned model in it is refitted on
all cut-offs before `as_of`. A shop too young for two training cut-offs before the held-out
window, with fewer than `MIN_HELD_OUT_CUSTOMERS` customers in it (the three measures cannot
tell forecasts apart: the top 10% of 200 is 20 customers), or without prices keeps BG/NBD x
Gamma-Gamma, the reason said.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from models.btyd import BetaGeoModel, GammaGammaModel

BTYD = "bgnbd_gamma_gamma"
LEARNED = "learned"
MEAN = "learned_and_bgnbd_gamma_gamma_mean"
RECENT = "recent_spend_rate"
MEAN_OF_THREE = "learned_bgnbd_gamma_gamma_recent_mean"
MEMBERS = {
    BTYD: (BTYD,),
    LEARNED: (LEARNED,),
    MEAN: (LEARNED, BTYD),
    RECENT: (RECENT,),
    MEAN_OF_THREE: (LEARNED, BTYD, RECENT),
}
"""Each spend forecast the backtest compares (the first is the published default) as the plain
forecasts it averages."""
SPEND_MODELS = tuple(MEMBERS)
RECENT_WINDOW_DAYS = 90.0
RECENT_SPEND_COLUMN = "spend_last_90d"
"""The feature `recent_spend_rate` reads: the customer's spend of the last 90 days."""
MIN_MEASURES_WON = 2
"""A challenger must beat BG/NBD x Gamma-Gamma on this many of the three measures."""
MIN_HELD_OUT_CUSTOMERS = 200
"""Fewer customers known at the held-out window's start: BG/NBD x Gamma-Gamma is kept."""
MEASURES = {"spearman": 1, "mae": -1, "top_decile_spend_share": 1}
"""The value measures and their direction (+1: higher is better)."""
SPEND_FEATURES = ("btyd_order_value", "btyd_spend")
"""Columns `spend_frame` adds to the features (with the BTYD outputs at the horizon)."""

FeatureFunction = Callable[[Any, pd.Timestamp], pd.DataFrame]
LabelFunction = Callable[[Any, pd.Timestamp, float], pd.Series]


def fit_gamma_gamma(features: pd.DataFrame) -> GammaGammaModel | None:
    """Gamma-Gamma on repeat customers with a known repeat value; None when fewer than 10 (a
    shop without prices): spend is then left empty rather than guessed."""
    if "btyd_monetary_value" not in features:
        return None
    value = features["btyd_monetary_value"].to_numpy(np.float64)
    frequency = features["btyd_frequency"].to_numpy(np.float64)
    known = np.isfinite(value) & (value > 0) & (frequency > 0)
    if known.sum() < 10:
        return None
    return GammaGammaModel(penalizer_coef=0.001).fit(frequency[known], value[known])


def btyd_spend(
    features: pd.DataFrame,
    bgnbd: BetaGeoModel,
    gamma_gamma: GammaGammaModel,
    horizon_days: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(expected spend in the next `horizon_days`, expected order value) per feature row, in
    the shop's currency, undiscounted. A customer without a repeat day gets the population's
    mean order value (Gamma-Gamma with frequency 0)."""
    from models.churn import BTYD_INPUTS

    x, t_x, big_t = (features[c].to_numpy(np.float64) for c in BTYD_INPUTS)
    value = np.nan_to_num(features["btyd_monetary_value"].to_numpy(np.float64))
    order_value = np.asarray(gamma_gamma.expected_order_value(x, value), dtype=np.float64)
    orders = bgnbd.expected_purchases(float(horizon_days), x, t_x, big_t)
    return np.asarray(orders * order_value, dtype=np.float64), order_value


def spend_frame(
    shop: Any, cutoff: pd.Timestamp, horizon_days: float, feature_function: FeatureFunction
) -> pd.DataFrame:
    """The customer features at `cutoff` with BG/NBD and Gamma-Gamma refitted on that history
    alone: `btyd_*` outputs at `horizon_days` plus `SPEND_FEATURES` (NaN without prices)."""
    from models.churn import add_btyd_outputs, fit_bgnbd

    features = feature_function(shop, cutoff)
    bgnbd = fit_bgnbd(features)
    features = add_btyd_outputs(features, bgnbd, horizon_days)
    gamma_gamma = fit_gamma_gamma(features)
    if gamma_gamma is None:
        features["btyd_order_value"] = np.nan
        features["btyd_spend"] = np.nan
    else:
        spend, order_value = btyd_spend(features, bgnbd, gamma_gamma, horizon_days)
        features["btyd_order_value"] = order_value
        features["btyd_spend"] = spend
    return features


class LearnedSpend:
    """Boosted trees (Poisson loss) from a customer's features to their spend in the horizon.

    Parameters: `random_state`, `max_iter`, `learning_rate`, `max_leaf_nodes`,
    `min_samples_leaf` (small trees: a shop has a few thousand customers per cut-off).
    Learned: `columns_` (numeric feature columns with at least one finite value in training),
    `regressor_`."""

    def __init__(
        self,
        random_state: int = 0,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 50,
    ) -> None:
        self.random_state = random_state
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (saved beside the trees)."""
        return {
            "random_state": self.random_state,
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
        }

    def fit(self, features: pd.DataFrame, spend: NDArray[np.float64]) -> LearnedSpend:
        """Fit on stacked feature rows (`spend_frame`s) and the spend that followed each.

        Raises ValueError when a spend is negative or missing."""
        from models.churn import model_columns

        spend = np.asarray(spend, dtype=np.float64)
        if len(spend) != len(features) or not np.all(np.isfinite(spend)) or (spend < 0).any():
            raise ValueError("spend labels must be finite, non-negative, one per feature row")
        columns = model_columns(features)
        matrix = _matrix(features, columns)
        finite = np.asarray(np.isfinite(matrix).any(axis=0), dtype=bool).tolist()
        self.columns_ = [c for c, ok in zip(columns, finite, strict=True) if ok]
        regressor = HistGradientBoostingRegressor(
            loss="poisson",
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
        )
        # One OpenMP thread, as churn's trees: on a shared machine two threads busy-wait for
        # each other (these trees on 15,000 rows x 40 columns: 3.5 s with one thread, 63 s
        # with two at load 10). Training's own limit does not reach OpenMP loaded after it.
        with threadpool_limits(1, user_api="openmp"):
            self.regressor_ = regressor.fit(_matrix(features, self.columns_), spend)
        return self

    def predict(self, features: pd.DataFrame) -> NDArray[np.float64]:
        """Expected spend per row (shop currency, >= 0). A column missing from `features` is
        read as unknown (NaN), as the trees treat missing values."""
        with threadpool_limits(1, user_api="openmp"):
            predicted = self.regressor_.predict(_matrix(features, self.columns_))
        return np.clip(np.nan_to_num(np.asarray(predicted, dtype=np.float64)), 0.0, None)


def _matrix(features: pd.DataFrame, columns: list[str]) -> NDArray[np.float64]:
    frame = features.reindex(columns=columns)
    # a copy: one numeric column would otherwise be a read-only view of the frame
    matrix = frame.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix


def recent_spend(features: pd.DataFrame, horizon_days: float) -> NDArray[np.float64]:
    """`recent_spend_rate` per feature row: the spend of the last `RECENT_WINDOW_DAYS` days
    (shop currency) / that window x `horizon_days`; 0 where the window's spend is unknown."""
    if RECENT_SPEND_COLUMN not in features:
        return np.zeros(len(features))
    spent = np.nan_to_num(features[RECENT_SPEND_COLUMN].to_numpy(np.float64))
    return np.clip(spent, 0.0, None) / RECENT_WINDOW_DAYS * float(horizon_days)


def combined(name: str, plain: dict[str, NDArray[np.float64]]) -> NDArray[np.float64]:
    """The forecast `name` (one of `SPEND_MODELS`): the average of its `MEMBERS` in `plain`."""
    members = MEMBERS[name]
    return np.asarray(sum(plain[m] for m in members) / len(members), dtype=np.float64)


def spend_metrics(predicted: NDArray[np.float64], actual: NDArray[np.float64]) -> dict[str, float]:
    """Spearman rank correlation, mean absolute error (shop currency) and the share of the real
    spend held by the customers with the 10% highest predictions (at least one customer).
    Spearman is NaN when either side is constant; the share NaN when nobody spent."""
    from scipy.stats import spearmanr

    predicted = np.nan_to_num(np.asarray(predicted, dtype=np.float64))
    actual = np.asarray(actual, dtype=np.float64)
    top = np.argsort(-predicted, kind="stable")[: max(1, len(predicted) // 10)]
    varied = np.ptp(predicted) > 0 and np.ptp(actual) > 0
    total = float(actual.sum())
    return {
        "spearman": float(spearmanr(predicted, actual).statistic) if varied else float("nan"),
        "mae": float(np.mean(np.abs(predicted - actual))),
        "top_decile_spend_share": float(actual[top].sum() / total) if total > 0 else float("nan"),
    }


@dataclass
class SpendChoice:
    """Which spend forecast a shop uses for `horizon_days`, why, and the backtest behind it.

    `backtest`: model name -> `spend_metrics` on the held-out window `[cut, cut + horizon)`
    (empty when no backtest could run); `training_cutoffs`: where the chosen learned model was
    fitted (empty for BG/NBD x Gamma-Gamma)."""

    horizon_days: float
    winner: str
    reason: str
    cut: pd.Timestamp | None = None
    backtest: dict[str, dict[str, float]] = field(default_factory=dict)
    training_cutoffs: list[pd.Timestamp] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return {
            "horizon_days": self.horizon_days,
            "winner": self.winner,
            "reason": self.reason,
            "cut": None if self.cut is None else self.cut.isoformat(),
            "backtest": {
                name: {k: (None if not np.isfinite(v) else v) for k, v in metrics.items()}
                for name, metrics in self.backtest.items()
            },
            "training_cutoffs": [c.isoformat() for c in self.training_cutoffs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpendChoice:
        """The inverse of `to_dict`."""
        return cls(
            horizon_days=float(data["horizon_days"]),
            winner=str(data["winner"]),
            reason=str(data["reason"]),
            cut=None if data["cut"] is None else pd.Timestamp(data["cut"]),
            backtest={
                name: {k: (float("nan") if v is None else float(v)) for k, v in metrics.items()}
                for name, metrics in data["backtest"].items()
            },
            training_cutoffs=[pd.Timestamp(c) for c in data["training_cutoffs"]],
        )


def measures_won(challenger: dict[str, float], default: dict[str, float]) -> int:
    """On how many of `MEASURES` the challenger is strictly better (NaN never wins)."""
    return sum(
        bool(direction * (challenger[name] - default[name]) > 0)
        for name, direction in MEASURES.items()
    )


def pick_winner(backtest: dict[str, dict[str, float]]) -> tuple[str, str]:
    """(winner, reason) from backtest metrics of `SPEND_MODELS` (the rule in the docstring)."""
    default = backtest[BTYD]
    wins = {name: measures_won(backtest[name], default) for name in backtest if name != BTYD}
    eligible = [name for name, won in wins.items() if won >= MIN_MEASURES_WON]

    def said(name: str) -> str:
        m = backtest[name]
        return (
            f"{name}: Spearman {m['spearman']:.4f}, MAE {m['mae']:.2f}, top-decile share "
            f"{m['top_decile_spend_share']:.4f}"
        )

    if not eligible:
        return BTYD, (
            f"{BTYD} kept: no other forecast beat it on {MIN_MEASURES_WON} of "
            f"{len(MEASURES)} measures of the held-out window ({'; '.join(map(said, backtest))})"
        )
    winner = max(eligible, key=lambda name: (wins[name], -backtest[name]["mae"]))
    return winner, (
        f"{winner} beat {BTYD} on {wins[winner]} of {len(MEASURES)} measures of the held-out "
        f"window ({said(winner)}; {said(BTYD)})"
    )


def choose_spend_model(
    shop: Any,
    as_of: pd.Timestamp,
    horizon_days: float,
    cutoffs: Callable[[pd.Timestamp], list[pd.Timestamp]],
    feature_function: FeatureFunction,
    label_function: LabelFunction,
    seed: int = 0,
) -> tuple[SpendChoice, LearnedSpend | None]:
    """Backtest the spend forecasts on `[as_of - horizon, as_of)` and refit the winner.

    `cutoffs(end)` gives the training cut-offs whose label windows end by `end`, latest first
    (raising ValueError when the history is too short, as `models.churn.training_cutoffs`).
    Returns the choice and the learned model refitted on every cut-off before `as_of` (None
    when the winner does not use it)."""
    horizon_days = float(horizon_days)
    cut = as_of - pd.Timedelta(days=horizon_days)
    try:
        backtest_cutoffs = cutoffs(cut)
    except ValueError as error:
        return SpendChoice(
            horizon_days, BTYD, f"{BTYD} kept: too young to learn spend and check it ({error})"
        ), None
    frames: dict[pd.Timestamp, pd.DataFrame] = {}

    def frame(cutoff: pd.Timestamp) -> pd.DataFrame:
        if cutoff not in frames:
            frames[cutoff] = spend_frame(shop, cutoff, horizon_days, feature_function)
        return frames[cutoff]

    def labels(cutoff: pd.Timestamp) -> NDArray[np.float64]:
        ids = frame(cutoff)["customer_id"].astype(str)
        spent = label_function(shop, cutoff, horizon_days).reindex(ids)
        return np.nan_to_num(spent.to_numpy(np.float64))

    held_out = frame(cut)
    if len(held_out) < MIN_HELD_OUT_CUSTOMERS:
        return SpendChoice(
            horizon_days,
            BTYD,
            f"{BTYD} kept: {len(held_out)} customers before the held-out window from "
            f"{cut.date()}, too few to tell spend forecasts apart (at least "
            f"{MIN_HELD_OUT_CUSTOMERS})",
        ), None
    if not np.isfinite(held_out["btyd_spend"].to_numpy(np.float64)).any():
        return SpendChoice(
            horizon_days, BTYD, f"{BTYD} kept: the shop has too few priced repeat orders"
        ), None
    learned = _fit_learned(backtest_cutoffs, frame, labels, seed)
    plain = {
        BTYD: np.nan_to_num(held_out["btyd_spend"].to_numpy(np.float64)),
        LEARNED: learned.predict(held_out),
        RECENT: recent_spend(held_out, horizon_days),
    }
    actual = labels(cut)
    backtest = {name: spend_metrics(combined(name, plain), actual) for name in SPEND_MODELS}
    winner, reason = pick_winner(backtest)
    choice = SpendChoice(horizon_days, winner, reason, cut, backtest)
    if LEARNED not in MEMBERS[winner]:
        return choice, None
    frames = {c: f for c, f in frames.items() if c == cut}  # memory: the rest is not reused
    choice.training_cutoffs = cutoffs(as_of)
    return choice, _fit_learned(choice.training_cutoffs, frame, labels, seed)


def _fit_learned(
    cutoffs: list[pd.Timestamp],
    frame: Callable[[pd.Timestamp], pd.DataFrame],
    labels: Callable[[pd.Timestamp], NDArray[np.float64]],
    seed: int,
) -> LearnedSpend:
    features = pd.concat([frame(c) for c in cutoffs], ignore_index=True)
    spend = np.concatenate([labels(c) for c in cutoffs])
    return LearnedSpend(random_state=seed).fit(features, spend)


def forecast(
    choice: SpendChoice | None,
    learned: LearnedSpend | None,
    features: pd.DataFrame,
    btyd: NDArray[np.float64],
    horizon_days: float,
) -> NDArray[np.float64]:
    """The spend forecast the choice names for `horizon_days`, only at the horizon it was
    chosen for, else `btyd` (BG/NBD x Gamma-Gamma, NaN without prices; also when the winner
    needs a learned model and `learned` is None). `features` must carry `spend_frame`'s
    columns for that horizon."""
    if choice is None or choice.winner == BTYD or choice.winner not in MEMBERS:
        return btyd
    if not np.isclose(float(horizon_days), choice.horizon_days):
        return btyd
    members = MEMBERS[choice.winner]
    if LEARNED in members and learned is None:
        return btyd
    plain = {BTYD: np.nan_to_num(btyd), RECENT: recent_spend(features, horizon_days)}
    if LEARNED in members and learned is not None:
        plain[LEARNED] = learned.predict(features)
    return combined(choice.winner, plain)
