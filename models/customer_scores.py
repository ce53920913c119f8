"""The CRM's score table: churn risk with reasons, value, next order, RFM segment and loyalty.

`CustomerScorer` holds the fitted BTYD models, the churn model, the RFM quintiles and, when
fitted for a value horizon, the spend forecast chosen by backtest (`models.spend`). It is
fitted from a shop at `as_of` and scores a shop (or a ready customer feature frame) into one row
per customer with exactly `SCORE_COLUMNS` (plus `SPEND_COLUMN` when asked). Persistence avoids
pickle: parameters as JSON, the tree models with skops, loaded only with an explicit list of
trusted types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from models.btyd import BetaGeoModel, GammaGammaModel, discounted_clv
from models.churn import (
    BTYD_INPUTS,
    ChurnModel,
    add_btyd_outputs,
    build_training_set,
    fit_bgnbd,
    training_cutoffs,
)
from models.loyalty import RFMScorer, loyalty_score, satisfaction_index
from models.score_columns import SCORE_COLUMNS, SPEND_COLUMN
from models.spend import (
    BTYD,
    SPEND_FEATURES,
    LearnedSpend,
    SpendChoice,
    btyd_spend,
    choose_spend_model,
    fit_gamma_gamma,
    forecast,
)

REASON_SEPARATOR = "; "
FORMAT_VERSION = 3  # 2: the churn trees are a list (bagged); 3: the chosen spend forecast
READABLE_VERSIONS = (2, 3)
CHURN_MODEL_FILE = "churn_classifier.skops"
SPEND_MODEL_FILE = "spend_regressor.skops"
PARAMS_FILE = "customer_scorer.json"

# Every type a fitted HistGradientBoostingClassifier holds; skops refuses anything else.
TRUSTED_SKOPS_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.link.LogLink",
    "sklearn._loss._loss.CyHalfPoissonLoss",
    "numpy.dtype",
    "builtins.slice",
]


def _feature_function() -> Any:
    from features.customers import customer_features

    return customer_features


def _label_function() -> Any:
    from features.labels import churn_labels

    return churn_labels


def remembered_features() -> Any:
    """The feature function, remembering each cut-off's frame (the callers copy before they
    add columns). Keyed by the cut-off alone: features at a cut-off read rows before it only
    (docs/features.md), so a shop cut later (`Shop.before`) gives the same frame and one memo
    may serve a backtest fitted on the shop before its cut and the fit on all data."""
    compute = _feature_function()
    frames: dict[pd.Timestamp, pd.DataFrame] = {}

    def features(shop: Any, as_of: pd.Timestamp) -> pd.DataFrame:
        if as_of not in frames:
            frames[as_of] = compute(shop, as_of)
        return frames[as_of]

    return features


def _spend_label_function() -> Any:
    from features.labels import spend_labels

    return spend_labels


class CustomerScorer:
    """Fit once per shop and `as_of`; then `score` any shop or feature frame.

    Parameters: `risk_thresholds` (medium, high) on churn probability; `n_cutoffs` and
    `step_days` place the churn training cut-offs; `annual_discount_rate` discounts the CLV;
    `next_order_cap_days`: an expected next order further away than this is left empty.
    Learned (after fit): `as_of_`, `churn_horizon_days_`, `bgnbd_`, `gamma_gamma_` (None when
    the shop has no prices), `churn_model_` (None when fitted with `fit_churn=False`: a shop
    too young to learn churn still gets loyalty, value and timing), `rfm_`, `cutoffs_`,
    `spend_choice_` (`models.spend.SpendChoice`: which spend forecast won the backtest for the
    value horizon, why, and its figures; None when fitted without a value horizon) and
    `spend_model_` (the learned forecast when the winner uses it, else None)."""

    def __init__(
        self,
        risk_thresholds: tuple[float, float] = (0.3, 0.6),
        n_cutoffs: int = 6,
        step_days: float = 28.0,
        annual_discount_rate: float = 0.10,
        next_order_cap_days: float = 365.0,
        churn_params: dict[str, Any] | None = None,
    ) -> None:
        self.risk_thresholds = risk_thresholds
        self.n_cutoffs = n_cutoffs
        self.step_days = step_days
        self.annual_discount_rate = annual_discount_rate
        self.next_order_cap_days = next_order_cap_days
        self.churn_params = churn_params

    def fit(
        self,
        shop: Any,
        as_of: pd.Timestamp | str,
        churn_horizon_days: float = 90,
        seed: int = 0,
        fit_churn: bool = True,
        value_horizon_days: float | None = None,
        feature_function: Any = None,
    ) -> CustomerScorer:
        """Fit every part on the shop's data before `as_of` (UTC, exclusive).

        Churn learns from cut-offs whose label windows end by `as_of`. Raises ValueError when
        the shop is too young for the horizon (with `fit_churn`) or has no customers before
        `as_of`. Without `fit_churn` the churn columns are left empty and the loyalty score's
        retention part uses P(alive) instead of 1 - churn probability. With
        `value_horizon_days` N the spend forecast for N days is chosen by backtest
        (`models.spend.choose_spend_model`; a shop too young for it keeps BG/NBD x
        Gamma-Gamma, the reason in `spend_choice_`). `feature_function(shop, cutoff)`: where
        the customer features come from (default: computed here, each cut-off once when the
        spend choice shares churn's); pass one `remembered_features()` to several fits to
        compute each cut-off once across them."""
        if value_horizon_days is not None and not value_horizon_days > 0:
            raise ValueError(f"value_horizon_days must be positive, got {value_horizon_days}")
        as_of = _utc(as_of)
        # Churn and the spend choice share cut-offs when their horizons match: features once.
        if feature_function is None:
            plain = value_horizon_days is None
            feature_function = _feature_function() if plain else remembered_features()
        features = feature_function(shop, as_of)
        if len(features) == 0:
            raise ValueError(f"no customer ordered before {as_of}; choose a later --as-of")
        self.cutoffs_ = []
        self.churn_model_: ChurnModel | None = None
        if fit_churn:
            first_order = shop.purchases["ordered_at"].min()
            self.cutoffs_ = training_cutoffs(
                as_of, churn_horizon_days, first_order, self.n_cutoffs, self.step_days
            )
            training = build_training_set(
                shop, self.cutoffs_, churn_horizon_days, feature_function, _label_function()
            )
            params = dict(self.churn_params or {})
            params.setdefault("risk_thresholds", self.risk_thresholds)
            self.churn_model_ = ChurnModel(random_state=seed, **params).fit(
                training.features, training.churned, training.cutoff
            )
        self.bgnbd_ = fit_bgnbd(features)
        self.gamma_gamma_ = fit_gamma_gamma(features)
        self.rfm_ = RFMScorer().fit(features)
        self.as_of_ = as_of
        self.churn_horizon_days_ = float(churn_horizon_days)
        self.spend_choice_: SpendChoice | None = None
        self.spend_model_: LearnedSpend | None = None
        if value_horizon_days is not None:
            self.spend_choice_, self.spend_model_ = self._choose_spend(
                shop, as_of, float(value_horizon_days), seed, feature_function
            )
        return self

    def _choose_spend(
        self,
        shop: Any,
        as_of: pd.Timestamp,
        horizon_days: float,
        seed: int,
        feature_function: Any,
    ) -> tuple[SpendChoice, LearnedSpend | None]:
        """The backtest-chosen spend forecast for `horizon_days`, trained on cut-offs placed as
        churn's are (`n_cutoffs`, `step_days`)."""
        first_order = shop.purchases["ordered_at"].min()

        def cutoffs(end: pd.Timestamp) -> list[pd.Timestamp]:
            return training_cutoffs(end, horizon_days, first_order, self.n_cutoffs, self.step_days)

        return choose_spend_model(
            shop,
            as_of,
            horizon_days,
            cutoffs,
            feature_function,
            _spend_label_function(),
            seed=seed,
        )

    def score(
        self,
        shop_or_features: Any,
        as_of: pd.Timestamp | str | None = None,
        value_horizon_days: float | None = None,
    ) -> pd.DataFrame:
        """One row per customer who ordered before `as_of` (default: the fit's `as_of`), with
        exactly `SCORE_COLUMNS`; sorted by customer_id.

        Accepts a Shop (features computed here) or a frame from `customer_features`. Times are
        UTC; `expected_next_order_at` is NaT when a next order within `next_order_cap_days` is
        not more likely than not. With `value_horizon_days` N (days, > 0) the table also has
        `SPEND_COLUMN`: the expected spend in [as_of, as_of + N days) (`_predicted_spend`)."""
        if value_horizon_days is not None and not value_horizon_days > 0:
            raise ValueError(f"value_horizon_days must be positive, got {value_horizon_days}")
        if not hasattr(self, "bgnbd_"):
            raise ValueError("the scorer is not fitted: call fit or load a saved scorer")
        as_of = self.as_of_ if as_of is None else _utc(as_of)
        if isinstance(shop_or_features, pd.DataFrame):
            features = shop_or_features.reset_index(drop=True)
        else:
            features = _feature_function()(shop_or_features, as_of)
        features = add_btyd_outputs(features, self.bgnbd_, self.churn_horizon_days_)
        x, t_x, big_t = (features[c].to_numpy(np.float64) for c in BTYD_INPUTS)

        p_alive = self.bgnbd_.probability_alive(x, t_x, big_t)
        reasons: list[list[str]] = [[] for _ in range(len(features))]
        churn = np.full(len(features), np.nan)
        risk = np.full(len(features), None, dtype=object)
        if self.churn_model_ is not None and len(features):
            churn, reasons = self.churn_model_.explain(features)
            risk = self.churn_model_.risk_tier(churn)
        # Without a churn model, retention in the loyalty score is P(alive) (BG/NBD).
        retention_risk = churn if self.churn_model_ is not None else 1.0 - p_alive
        satisfaction = satisfaction_index(features)
        rfm = self.rfm_.transform(features)
        wait_days = self.bgnbd_.median_time_to_next_purchase(x, t_x, big_t)
        soon = wait_days <= self.next_order_cap_days
        next_order = pd.Series(pd.NaT, index=features.index, dtype="datetime64[ns, UTC]")
        next_order[soon] = as_of + pd.to_timedelta(wait_days[soon], unit="D")
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.where(x > 0, t_x / np.where(x > 0, x, 1.0), np.nan)

        table = pd.DataFrame(
            {
                "customer_id": features["customer_id"].astype(str),
                "churn_probability": np.round(churn, 4),
                "churn_risk": risk,
                "churn_reasons": np.array(
                    [REASON_SEPARATOR.join(r) for r in reasons], dtype=object
                ),
                "loyalty_score": loyalty_score(rfm, retention_risk, satisfaction),
                "segment": rfm["segment"].to_numpy(),
                # Rounded to what the figures can claim (a CRM shows them as they are).
                "p_alive": np.round(p_alive, 4),
                "expected_orders_90d": np.round(
                    self.bgnbd_.expected_purchases(90.0, x, t_x, big_t), 4
                ),
                "predicted_clv_365d": np.round(self._clv(features, x, t_x, big_t), 2),
                "expected_next_order_at": next_order.dt.round("s"),
                "avg_days_between_orders": np.round(gap, 2),
                "satisfaction": np.round(satisfaction, 1),
            }
        )
        columns = list(SCORE_COLUMNS)
        if value_horizon_days is not None:
            spend = self._predicted_spend(features, x, t_x, big_t, value_horizon_days)
            table[SPEND_COLUMN] = np.round(spend, 2)
            columns.append(SPEND_COLUMN)
        return table.sort_values("customer_id", ignore_index=True)[columns]

    def _predicted_spend(
        self,
        features: pd.DataFrame,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        horizon_days: float,
    ) -> np.ndarray:
        """Expected spend per customer in the next `horizon_days` days, shop currency,
        undiscounted. At the horizon the scorer was fitted for (`spend_choice_`), the forecast
        that won its backtest; at any other horizon, and when BG/NBD x Gamma-Gamma won:
        BG/NBD expected orders (one order = one UTC purchase day, as the BTYD inputs count
        them) times the Gamma-Gamma expected order value (a customer without a repeat day gets
        the population's mean order value). NaN for every customer when the shop has no
        prices (no Gamma-Gamma fit), as `predicted_clv_365d`."""
        if self.gamma_gamma_ is None or "btyd_monetary_value" not in features:
            return np.full(len(features), np.nan)
        spend, order_value = btyd_spend(features, self.bgnbd_, self.gamma_gamma_, horizon_days)
        if self.spend_choice_ is None or self.spend_choice_.winner == BTYD:
            return spend
        at_horizon = add_btyd_outputs(features, self.bgnbd_, horizon_days)
        at_horizon[SPEND_FEATURES[0]] = order_value
        at_horizon[SPEND_FEATURES[1]] = spend
        return forecast(self.spend_choice_, self.spend_model_, at_horizon, spend, horizon_days)

    def _clv(
        self, features: pd.DataFrame, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        if self.gamma_gamma_ is None or "btyd_monetary_value" not in features:
            return np.full(len(features), np.nan)
        value = features["btyd_monetary_value"].to_numpy(np.float64)
        return discounted_clv(
            self.bgnbd_,
            self.gamma_gamma_,
            x,
            t_x,
            big_t,
            np.nan_to_num(value),
            horizon_days=365.0,
            annual_discount_rate=self.annual_discount_rate,
        )

    # ----- persistence --------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write the fitted scorer to `directory` (created): JSON parameters plus the churn
        trees as skops. Returns the directory."""
        import skops.io

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        churn = self.churn_model_
        data = {
            "format_version": FORMAT_VERSION,
            "config": {
                "risk_thresholds": list(self.risk_thresholds),
                "n_cutoffs": self.n_cutoffs,
                "step_days": self.step_days,
                "annual_discount_rate": self.annual_discount_rate,
                "next_order_cap_days": self.next_order_cap_days,
                "churn_params": self.churn_params,
            },
            "as_of": self.as_of_.isoformat(),
            "churn_horizon_days": self.churn_horizon_days_,
            "cutoffs": [c.isoformat() for c in self.cutoffs_],
            "bgnbd": self.bgnbd_.to_dict(),
            "gamma_gamma": None if self.gamma_gamma_ is None else self.gamma_gamma_.to_dict(),
            "rfm": self.rfm_.to_dict(),
            "churn": None if churn is None else _churn_description(churn),
            "spend": self._spend_description(),
        }
        (directory / PARAMS_FILE).write_text(json.dumps(data, indent=1))
        if churn is not None:
            skops.io.dump(churn.classifiers_, directory / CHURN_MODEL_FILE)
        if self.spend_model_ is not None:
            skops.io.dump(self.spend_model_.regressor_, directory / SPEND_MODEL_FILE)
        return directory

    def _spend_description(self) -> dict[str, Any] | None:
        """The JSON part of the spend choice (the learned trees go to a skops file)."""
        choice, model = getattr(self, "spend_choice_", None), getattr(self, "spend_model_", None)
        if choice is None:
            return None
        return {
            "choice": choice.to_dict(),
            "model": None
            if model is None
            else {"params": model.get_params(), "columns": model.columns_},
        }

    @classmethod
    def load(cls, directory: Path | str) -> CustomerScorer:
        """Read a scorer written by `save`. Raises ValueError when the directory is not a saved
        scorer or the tree file holds a type outside `TRUSTED_SKOPS_TYPES`."""
        directory = Path(directory)
        params_path = directory / PARAMS_FILE
        if not params_path.exists():
            raise ValueError(f"{directory} holds no saved scorer ({PARAMS_FILE} is missing)")
        data = json.loads(params_path.read_text())
        if data.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"unsupported scorer format {data.get('format_version')!r}")
        config = data["config"]
        scorer = cls(
            risk_thresholds=tuple(config["risk_thresholds"]),
            n_cutoffs=config["n_cutoffs"],
            step_days=config["step_days"],
            annual_discount_rate=config["annual_discount_rate"],
            next_order_cap_days=config["next_order_cap_days"],
            churn_params=config["churn_params"],
        )
        scorer.as_of_ = pd.Timestamp(data["as_of"])
        scorer.churn_horizon_days_ = float(data["churn_horizon_days"])
        scorer.cutoffs_ = [pd.Timestamp(c) for c in data["cutoffs"]]
        scorer.bgnbd_ = BetaGeoModel.from_dict(data["bgnbd"])
        spend = data["gamma_gamma"]
        scorer.gamma_gamma_ = None if spend is None else GammaGammaModel.from_dict(spend)
        scorer.rfm_ = RFMScorer.from_dict(data["rfm"])
        scorer.churn_model_ = None
        if data["churn"] is not None:
            scorer.churn_model_ = _load_churn(data["churn"], directory / CHURN_MODEL_FILE)
        scorer.spend_choice_, scorer.spend_model_ = _load_spend(
            data.get("spend"), directory / SPEND_MODEL_FILE
        )
        return scorer


def _churn_description(churn: ChurnModel) -> dict[str, Any]:
    """The JSON part of a fitted churn model (its trees go to a skops file)."""
    calibrator = churn.calibrator_
    return {
        "params": {
            k: list(v) if isinstance(v, tuple) else v for k, v in churn.get_params().items()
        },
        "feature_names": churn.feature_names_,
        "bag_columns": churn.bag_columns_,
        "reference": [None if np.isnan(v) else float(v) for v in churn.reference_],
        "calibration": None
        if calibrator is None
        else {
            "slope": float(calibrator.coef_[0, 0]),
            "intercept": float(calibrator.intercept_[0]),
        },
    }


def _load_churn(churn_data: dict[str, Any], model_path: Path) -> ChurnModel:
    """A churn model from its JSON part and skops trees (only `TRUSTED_SKOPS_TYPES`)."""
    churn_params = dict(churn_data["params"])
    churn_params["risk_thresholds"] = tuple(churn_params["risk_thresholds"])
    churn = ChurnModel(**churn_params)
    churn.classifiers_ = list(_trusted_skops(model_path))
    churn.feature_names_ = list(churn_data["feature_names"])
    churn.bag_columns_ = [list(columns) for columns in churn_data["bag_columns"]]
    churn.reference_ = np.array(
        [np.nan if v is None else v for v in churn_data["reference"]], dtype=np.float64
    )
    churn.classes_ = np.array([0, 1])
    churn.calibrator_ = None
    calibration = churn_data["calibration"]
    if calibration is not None:
        calibrator = LogisticRegression()
        calibrator.coef_ = np.array([[calibration["slope"]]])
        calibrator.intercept_ = np.array([calibration["intercept"]])
        calibrator.classes_ = np.array([0, 1])
        churn.calibrator_ = calibrator
    return churn


def _trusted_skops(path: Path) -> Any:
    """A skops file's object, refused when it holds a type outside `TRUSTED_SKOPS_TYPES`
    (each file's bytes built once per process: `models.skops_files`)."""
    from models.skops_files import load_trusted

    return load_trusted(path, TRUSTED_SKOPS_TYPES)


def _load_spend(
    spend_data: dict[str, Any] | None, model_path: Path
) -> tuple[SpendChoice | None, LearnedSpend | None]:
    """The spend choice and, when a learned forecast won, its trees (a scorer saved before
    format 3 has neither)."""
    if spend_data is None:
        return None, None
    choice = SpendChoice.from_dict(spend_data["choice"])
    if spend_data["model"] is None:
        return choice, None
    model = LearnedSpend(**spend_data["model"]["params"])
    model.columns_ = list(spend_data["model"]["columns"])
    model.regressor_ = _trusted_skops(model_path)
    return choice, model


def _utc(as_of: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(as_of)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
