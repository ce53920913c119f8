"""Churn: will a customer place no order in the next horizon? Calibrated, tiered and explained.

Training set: several rolling cut-offs before `as_of` whose label windows end at or before
`as_of` (`cutoff + horizon <= as_of`, so no label peeks past `as_of`). At every cut-off the
customer features come from the features layer and the BG/NBD model is refitted on that
cut-off's history alone, so its outputs are features too (`btyd_*`).

Model: a bag of gradient-boosted tree models (HistGradientBoostingClassifier) with monotonic
constraints where the direction is known (more complaints never lowers churn), each on its own
seeded random half of the features (random subspaces), trained on every cut-off and averaged.
The averaged probabilities are used as they are: log-loss trees fitted on every cut-off
measured better calibrated than any Platt map tried (see ChurnModel.fit); `calibrate=True`
adds a Platt map fitted on the latest cut-off.

Reasons: for each customer and each group of related features (recency, complaints, ratings,
...), the drop in churn probability when that group is replaced by a typical retained
customer's values (medians of the training rows that did order again). The three largest
positive drops become plain-words reasons built from the customer's own values. A customer at
medium or high risk always gets one: when no drop reaches a point, the largest positive one,
and when none is positive, that no single cause stands out (see ChurnModel.explain).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.utils import Tags, assert_all_finite
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d
from threadpoolctl import threadpool_limits

from models.btyd import BetaGeoModel, BTYDFitError

FeatureFunction = Callable[[Any, pd.Timestamp], pd.DataFrame]
LabelFunction = Callable[[Any, pd.Timestamp, float], pd.Series]

BTYD_INPUTS = ("btyd_frequency", "btyd_recency_days", "btyd_T_days")
BTYD_OUTPUTS = ("btyd_expected_orders", "btyd_p_alive", "btyd_p_order")
EXCLUDED_PREFIXES = ("channel_share_",)
"""Columns left out of the model: their set depends on the data (one per channel value)."""

# +1: a larger value can only raise churn; -1: can only lower it. Only where the direction is
# known for every shop; the rest is learned freely.
MONOTONIC_DIRECTIONS: dict[str, int] = {
    "days_since_last_order": 1,
    "orders_last_30d": -1,
    "orders_last_90d": -1,
    "complaints": 1,
    "complaints_last_90d": 1,
    "rating_mean": -1,
    "rating_min": -1,
    "return_rate": 1,
    "negative_feedback_share": 1,
    "btyd_expected_orders": -1,
    "btyd_p_order": -1,
}

REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "recency": (
        "days_since_last_order",
        "overdue_ratio",
        "btyd_recency_days",
        "btyd_expected_orders",
        "btyd_p_alive",
        "btyd_p_order",
    ),
    "recent_orders": ("orders_last_30d", "orders_last_90d", "spend_last_30d", "spend_last_90d"),
    "frequency": (
        "orders",
        "btyd_frequency",
        "orders_last_365d",
        "order_gap_mean_days",
        "order_gap_std_days",
        "purchase_lines",
        "units",
        "distinct_items",
        "repeat_item_share",
    ),
    "spend_trend": ("spend_trend_90d_diff", "spend_trend_90d_ratio", "spend_previous_90d"),
    "spend": ("total_spend", "mean_order_value", "btyd_monetary_value", "spend_last_365d"),
    "complaints": ("complaints", "complaints_last_90d", "days_since_last_complaint"),
    "ratings": ("ratings", "rating_mean", "rating_min"),
    "returns": ("returns", "return_rate"),
    "negative_feedback": ("negative_feedback_share", "feedback"),
    "tenure": ("tenure_days", "days_since_signup", "btyd_T_days"),
}
"""Features explained together: a reason is about one of these, never about a lone column."""

MIN_REASON_EFFECT = 0.01
"""A group must raise the churn probability by at least one point to be named as a reason."""


def add_btyd_outputs(
    features: pd.DataFrame, bgnbd: BetaGeoModel, horizon_days: float
) -> pd.DataFrame:
    """The features with `btyd_expected_orders`, `btyd_p_alive`, `btyd_p_order` added.

    Uses the features layer's `btyd_frequency`, `btyd_recency_days`, `btyd_T_days` (days);
    `horizon_days` is the churn horizon. Raises KeyError when those inputs are missing."""
    x, t_x, big_t = (features[c].to_numpy(np.float64) for c in BTYD_INPUTS)
    out = features.copy()
    out["btyd_expected_orders"] = bgnbd.expected_purchases(horizon_days, x, t_x, big_t)
    out["btyd_p_alive"] = bgnbd.probability_alive(x, t_x, big_t)
    out["btyd_p_order"] = bgnbd.probability_of_purchase(horizon_days, x, t_x, big_t)
    return out


def fit_bgnbd(features: pd.DataFrame, penalizer_coef: float = 0.0) -> BetaGeoModel:
    """BG/NBD fitted on the features layer's BTYD inputs (days).

    Unpenalised by default: the L2 penalty acts on raw parameters, and alpha in days is ~30, so
    even 0.001 visibly biases the fit (CDNOW: BTYD AUC 0.764 instead of 0.769). When the plain
    fit fails (a tiny or degenerate shop) it is retried with a penalty of 0.01."""
    inputs = [features[c].to_numpy(np.float64) for c in BTYD_INPUTS]
    try:
        return BetaGeoModel(penalizer_coef=penalizer_coef).fit(*inputs)
    except BTYDFitError:
        return BetaGeoModel(penalizer_coef=max(penalizer_coef, 0.01)).fit(*inputs)


MIN_HISTORY_DAYS = 28.0
"""A churn training cut-off needs at least this much shop history before it."""


def churn_history_days(
    horizon_days: float, step_days: float = 28.0, min_history_days: float = MIN_HISTORY_DAYS
) -> float:
    """Days of shop history (first order to `as_of`) needed to learn churn over
    `horizon_days`: two cut-offs `step_days` apart, each with `min_history_days` before it and
    a whole label window after it."""
    return horizon_days + step_days + min_history_days


def training_cutoffs(
    as_of: pd.Timestamp,
    horizon_days: float,
    first_order_at: pd.Timestamp,
    n_cutoffs: int = 4,
    step_days: float = 28.0,
    min_history_days: float = MIN_HISTORY_DAYS,
) -> list[pd.Timestamp]:
    """Cut-offs `as_of - horizon - k * step` (k = 0..n-1), latest first, with label windows
    ending at or before `as_of`; cut-offs with under `min_history_days` of shop history are
    dropped. Raises ValueError when fewer than two remain (the shop is too young to learn
    churn over this horizon: shorten the horizon or wait for more history)."""
    cutoffs = [
        as_of - pd.Timedelta(days=horizon_days + k * step_days) for k in range(int(n_cutoffs))
    ]
    earliest = first_order_at + pd.Timedelta(days=min_history_days)
    cutoffs = [c for c in cutoffs if c >= earliest]
    if len(cutoffs) < 2:
        raise ValueError(
            f"the shop's history (first order {first_order_at:%Y-%m-%d}) is too short to learn "
            f"churn over {horizon_days:g} days before {as_of:%Y-%m-%d}: need at least "
            f"{churn_history_days(horizon_days, step_days, min_history_days):g} days; use a "
            "shorter horizon"
        )
    return cutoffs


@dataclass(frozen=True)
class TrainingSet:
    """Stacked rows of every cut-off: features (with BTYD outputs), label (1 = churned), and
    the cut-off number of each row (0 = latest)."""

    features: pd.DataFrame
    churned: pd.Series
    cutoff: NDArray[np.int64]
    cutoffs: list[pd.Timestamp]


def build_training_set(
    shop: Any,
    cutoffs: Sequence[pd.Timestamp],
    horizon_days: float,
    feature_function: FeatureFunction,
    label_function: LabelFunction,
) -> TrainingSet:
    """Features and churn labels at each cut-off, BG/NBD refitted per cut-off (no leakage:
    features use rows before the cut-off, labels the window after it)."""
    frames, labels, numbers = [], [], []
    for number, cutoff in enumerate(cutoffs):
        features = feature_function(shop, cutoff)
        features = add_btyd_outputs(features, fit_bgnbd(features), horizon_days)
        churned = label_function(shop, cutoff, horizon_days)
        churned = churned.reindex(features["customer_id"].astype(str)).to_numpy()
        if np.isnan(churned.astype(np.float64)).any():
            raise ValueError(f"labels at {cutoff} do not cover every featured customer")
        frames.append(features)
        labels.append(churned.astype(np.int64))
        numbers.append(np.full(len(features), number, dtype=np.int64))
    return TrainingSet(
        features=pd.concat(frames, ignore_index=True),
        churned=pd.Series(np.concatenate(labels), name="churned"),
        cutoff=np.concatenate(numbers),
        cutoffs=list(cutoffs),
    )


def model_columns(features: pd.DataFrame) -> list[str]:
    """The numeric feature columns the churn model uses (ids and per-channel shares left out)."""
    return [
        c
        for c in features.columns
        if c != "customer_id"
        and not (isinstance(c, str) and c.startswith(EXCLUDED_PREFIXES))
        and pd.api.types.is_numeric_dtype(features[c])
    ]


class ChurnModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated churn classifier over a feature frame; `predict_proba[:, 1]` = P(churn).

    A scikit-learn binary classifier (it passes `check_estimator`). `X` is normally the
    features layer's customer frame: columns are then used by name (ids, per-channel shares
    and non-numeric columns left out; a column missing when predicting counts as unknown,
    NaN), and the monotonic constraints and reasons follow the names. Any other 2-D array-like
    is numeric features by position (the same width at fit and predict). Missing values are
    allowed (unknown), sparse input is not.

    `fit(X, y, cutoff)`: `y` two classes, 1 = churned (any two labels work: `classes_` holds
    them sorted, the second is churn); `cutoff` numbers the training cut-offs (0 = latest),
    with `calibrate` the latest calibrates (Platt scaling, see fit). `n_bags` tree models,
    each on a random `feature_fraction` of the features (drawn with seed `random_state + k`),
    are averaged; `n_bags=1` uses every feature. `risk_thresholds` (medium, high) split
    probabilities into low / medium / high.
    `n_threads` caps OpenMP threads (None = all): one thread is about ten times faster than two
    on a busy 2-core machine (OpenMP spinning). With more than one, the bags are fitted side by
    side (joblib threads, one bag per thread while there are more bags than threads).
    Learned: `feature_names_` (the columns used), `bag_columns_` (feature positions per bag),
    `classifiers_`, `calibrator_` (or None), `reference_`, `classes_`, `n_iter_` (boosting
    iterations per bag), `n_features_in_` (columns of the fit's X) and, when X was a frame with
    string column names, `feature_names_in_`."""

    def __init__(
        self,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 7,
        min_samples_leaf: int = 200,
        l2_regularization: float = 1.0,
        monotonic: bool = True,
        feature_fraction: float = 0.5,
        n_bags: int = 5,
        calibrate: bool = False,
        risk_thresholds: tuple[float, float] = (0.3, 0.6),
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.monotonic = monotonic
        self.feature_fraction = feature_fraction
        self.n_bags = n_bags
        self.calibrate = calibrate
        self.risk_thresholds = risk_thresholds
        self.random_state = random_state
        self.n_threads = n_threads

    def _classifier(self, n_rows: int, columns: Sequence[str]) -> HistGradientBoostingClassifier:
        constraints = [MONOTONIC_DIRECTIONS.get(c, 0) for c in columns] if self.monotonic else None
        return HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            # small shops: leaves must still be possible
            min_samples_leaf=max(5, min(self.min_samples_leaf, n_rows // 50)),
            l2_regularization=self.l2_regularization,
            monotonic_cst=constraints,
            early_stopping=False,
            random_state=self.random_state,
        )

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing feature value is unknown, not an error
        tags.classifier_tags.multi_class = False  # churned or not
        return tags

    def fit(self, X: Any, y: Any, cutoff: Any = None) -> ChurnModel:
        """Fit on stacked cut-offs (see the class docstring). Raises ValueError when a class is
        missing (every customer churned or none did), on more than two classes and on labels
        that are not classes (NaN, continuous values)."""
        with threadpool_limits(self.n_threads):
            return self._fit(X, y, cutoff)

    def _fit(self, X: Any, y: Any, cutoff: Any) -> ChurnModel:
        X = _fit_frame(X)
        self.classes_, y = _encoded_labels(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
        cutoff = np.zeros(len(y), dtype=np.int64) if cutoff is None else np.asarray(cutoff)
        self.n_features_in_ = X.shape[1]
        if all(isinstance(c, str) for c in X.columns):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        # a column nobody has (no ratings in the whole shop) carries nothing, and HGB's binning
        # fails on it
        self.feature_names_ = [c for c in model_columns(X) if X[c].notna().any()]
        matrix = _steady(X[self.feature_names_].to_numpy(np.float64))
        # averaging models that each see a random half of the features: a little steadier
        # ranking than one model (CDNOW: AUC +0.0006, AP +0.0024; HGB's per-split max_features
        # measured about the same).
        n_features = len(self.feature_names_)
        if self.n_bags <= 1 or n_features < 2:
            self.bag_columns_ = [list(range(n_features))]
        else:
            size = max(1, int(round(self.feature_fraction * n_features)))
            self.bag_columns_ = [
                sorted(
                    np.random.default_rng(self.random_state + bag)
                    .permutation(n_features)[:size]
                    .tolist()
                )
                for bag in range(self.n_bags)
            ]
        # The bags are independent fits: within the `n_threads` budget, several at once in
        # threads (each with its share of OpenMP threads) rather than one bag on all threads;
        # HGB's result does not depend on its thread count, so neither do the trees.
        workers, threads_each = _bag_workers(len(self.bag_columns_), self.n_threads)
        self.classifiers_ = joblib.Parallel(n_jobs=workers, prefer="threads")(
            joblib.delayed(_fit_bag)(
                self._classifier(len(y), [self.feature_names_[i] for i in columns]),
                matrix[:, columns],
                y,
                threads_each,
            )
            for columns in self.bag_columns_
        )
        self.n_iter_ = np.array([c.n_iter_ for c in self.classifiers_])
        latest = cutoff == cutoff.min()
        self.calibrator_: LogisticRegression | None = None
        if self.calibrate and len(np.unique(y[latest])) == 2:
            # Platt scaling on the logit, fitted on the latest cut-off (its label window ends
            # closest to as_of): older windows carry an older churn rate, and the model trained
            # on all of them sits between. Strictly increasing, so no ties and no reordering.
            # Off by default: ECE with / without it (4 cut-offs), CDNOW 0.016 / 0.013, generated
            # shop 0.049 / 0.038. (A blind model fitted without the latest cut-off, as before,
            # corrected the drift twice once applied to the full model: CDNOW ECE 0.021.)
            raw = _logit(self._probability(matrix[latest]))  # no map yet: the bags' mean
            self.calibrator_ = LogisticRegression(C=1e6).fit(raw[:, None], y[latest])
        retained = matrix[y == 0]
        with warnings.catch_warnings():
            # "All-NaN slice": a group nobody has (no ratings at all) gets a NaN reference
            warnings.simplefilter("ignore", RuntimeWarning)
            self.reference_ = np.nanmedian(retained, axis=0)
        return self

    def _bag_probabilities(
        self, matrix: NDArray[np.float64], bags: Sequence[int] | None = None
    ) -> list[NDArray[np.float64]]:
        """P(churn) of each bag (or of the bags numbered in `bags`), uncalibrated."""
        chosen = range(len(self.classifiers_)) if bags is None else bags
        with threadpool_limits(self.n_threads):
            return [
                self.classifiers_[b].predict_proba(matrix[:, self.bag_columns_[b]])[:, 1]
                for b in chosen
            ]

    def _combined(self, per_bag: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        """The bags' mean, through the Platt map when there is one."""
        raw = np.asarray(np.mean(per_bag, axis=0))
        if self.calibrator_ is None:
            return raw
        return np.asarray(self.calibrator_.predict_proba(_logit(raw)[:, None])[:, 1])

    def _probability(self, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._combined(self._bag_probabilities(matrix))

    def _frame(self, X: Any) -> pd.DataFrame:
        """X as a frame: a frame as it is (columns by name); any other array-like by position,
        named as the fit's columns (raises ValueError on another width)."""
        check_is_fitted(self, "classifiers_")
        if isinstance(X, pd.DataFrame):
            return X
        matrix = _numeric_matrix(X)
        expected = getattr(self, "n_features_in_", len(self.feature_names_))
        if matrix.shape[1] != expected:
            raise ValueError(
                f"X has {matrix.shape[1]} features, but {type(self).__name__} is expecting "
                f"{expected} features as input"
            )
        names = getattr(self, "feature_names_in_", None)
        if names is None and not hasattr(self, "n_features_in_"):
            names = self.feature_names_  # a model saved before n_features_in_ was kept
        return pd.DataFrame(matrix, columns=None if names is None else list(names))

    def _matrix(self, X: pd.DataFrame) -> NDArray[np.float64]:
        check_is_fitted(self, "classifiers_")
        columns = [
            X[c].to_numpy(np.float64) if c in X else np.full(len(X), np.nan)
            for c in self.feature_names_
        ]
        return _steady(np.column_stack(columns)) if columns else np.empty((len(X), 0))

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Columns: P(retained), P(churned); a feature missing from X counts as unknown (NaN)."""
        churn = self._probability(self._matrix(self._frame(X)))
        return np.column_stack([1.0 - churn, churn])

    def predict(self, X: Any) -> NDArray[Any]:
        """The churn class (`classes_[1]`, 1 when fitted on 0/1 labels) where P(churn) >= 0.5,
        else the other."""
        churn = self.predict_proba(X)[:, 1] >= 0.5
        return np.asarray(self.classes_[churn.astype(np.int64)])

    def risk_tier(self, churn_probability: NDArray[np.float64]) -> NDArray[np.object_]:
        """'low' / 'medium' / 'high' by `risk_thresholds` (medium from the first, high from the
        second threshold, both inclusive)."""
        medium, high = self.risk_thresholds
        return np.where(
            churn_probability >= high,
            "high",
            np.where(churn_probability >= medium, "medium", "low"),
        ).astype(object)

    def group_effects(self, X: Any) -> pd.DataFrame:
        """Per customer and reason group: P(churn) minus P(churn) with that group's features set
        to a typical retained customer's values (positive = the group raises churn)."""
        X = self._frame(X)
        return self._group_effects(self._matrix(X), X.index)[1]

    def _group_effects(
        self, matrix: NDArray[np.float64], index: pd.Index, at_risk_only: bool = False
    ) -> tuple[NDArray[np.float64], pd.DataFrame]:
        # Only what can change is predicted again: the bags that see a group's columns, on the
        # rows whose values differ from the reference (most customers have no complaints, say).
        # Same result as predicting every bag on every row, with far fewer tree walks.
        # `at_risk_only`: rows in the low risk tier (never given reasons) keep effects of 0.
        per_bag = self._bag_probabilities(matrix)
        base = self._combined(per_bag)
        wanted = base >= self.risk_thresholds[0] if at_risk_only else np.ones(len(base), bool)
        effects = {}
        for group, columns in REASON_GROUPS.items():
            idx = [i for i, c in enumerate(self.feature_names_) if c in columns]
            if not idx:
                continue
            values, typical = matrix[:, idx], self.reference_[idx]
            same = (values == typical) | (np.isnan(values) & np.isnan(typical))
            rows = np.flatnonzero(~same.all(axis=1) & wanted)
            effect = np.zeros(len(matrix))
            if len(rows):
                changed = matrix[rows]
                changed[:, idx] = typical
                touched = [b for b, cols in enumerate(self.bag_columns_) if set(cols) & set(idx)]
                replaced = dict(
                    zip(touched, self._bag_probabilities(changed, touched), strict=True)
                )
                effect[rows] = base[rows] - self._combined(
                    [replaced[b] if b in replaced else p[rows] for b, p in enumerate(per_bag)]
                )
            effects[group] = effect
        return base, pd.DataFrame(effects, index=index)

    def reasons(self, X: Any, top: int = 3) -> list[list[str]]:
        """Up to `top` plain-words reasons per customer, strongest first (see the module doc)."""
        return self.explain(X, top)[1]

    def explain(self, X: Any, top: int = 3) -> tuple[NDArray[np.float64], list[list[str]]]:
        """P(churn) and up to `top` reasons per customer in one pass (see `reasons`).

        A customer in the low risk tier (below the first of `risk_thresholds`) gets no reasons:
        what nudges a 3% risk to 4% is not worth a CRM user's action, and a reason printed
        next to a low risk reads as a warning. A customer at medium or high risk gets at least
        one: the groups raising the risk by `MIN_REASON_EFFECT` or more; without any, the group
        raising it most (by less); when no group raises it (in a shop where most customers
        lapse, a typical retained customer is at high risk too), `no_single_cause`."""
        X = self._frame(X)
        churn, effects = self._group_effects(self._matrix(X), X.index, at_risk_only=True)
        names = np.array(effects.columns)
        values = effects.to_numpy()
        order = np.argsort(-values, axis=1)[:, :top]
        low = churn < self.risk_thresholds[0]
        out: list[list[str]] = []
        records = X.to_dict("records")  # row access through pandas is the slow part
        typical = dict(zip(self.feature_names_, self.reference_.tolist(), strict=True))
        typical_churn: float | None = None
        for row, picks in enumerate(order):
            if low[row]:
                out.append([])
                continue
            customer = records[row]
            reasons = [
                describe_reason(str(names[g]), customer, typical)
                for g in picks
                if values[row, g] >= MIN_REASON_EFFECT
            ]
            if not reasons and len(picks) and values[row, picks[0]] > 0:
                reasons = [describe_reason(str(names[picks[0]]), customer, typical)]
            elif not reasons:
                if typical_churn is None:
                    typical_churn = float(self._probability(_steady(self.reference_[None, :]))[0])
                reasons = [no_single_cause(typical_churn, self.risk_thresholds[0])]
            out.append(reasons)
        return churn, out


def _bag_workers(n_bags: int, n_threads: int | None) -> tuple[int, int]:
    """(bags fitted at once, OpenMP threads for each) within `n_threads` (None: every CPU)."""
    budget = joblib.cpu_count() if n_threads is None else max(1, int(n_threads))
    workers = max(1, min(n_bags, budget))
    return workers, max(1, budget // workers)


def _fit_bag(
    classifier: HistGradientBoostingClassifier,
    matrix: NDArray[np.float64],
    churned: NDArray[np.int64],
    threads: int,
) -> HistGradientBoostingClassifier:
    # OpenMP limits are per thread: a joblib worker thread must set its own
    with threadpool_limits(threads, user_api="openmp"):
        return classifier.fit(matrix, churned)


def _numeric_matrix(X: Any) -> NDArray[np.float64]:
    """A 2-D float array from any array-like; NaN allowed. Raises ValueError on 1-D, empty,
    complex or infinite input, TypeError on sparse input."""
    return np.asarray(check_array(X, dtype=np.float64, ensure_all_finite="allow-nan"))


def _fit_frame(X: Any) -> pd.DataFrame:
    """The fit's X as a frame: a frame as it is, any other array-like with columns 0..n-1."""
    if isinstance(X, pd.DataFrame):
        if X.shape[0] == 0:
            raise ValueError("no rows to learn churn from (0 samples)")
        return X
    return pd.DataFrame(_numeric_matrix(X))


def _encoded_labels(y: Any) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """The two classes (sorted) and y as 0 / 1 (1 = the second class: churned for 0/1 labels).

    Raises ValueError on a missing y, NaN or continuous labels, one class or more than two."""
    if y is None:
        raise ValueError(
            "ChurnModel requires y to be passed, but the target y is None: give the churn "
            "labels (1 = churned)"
        )
    y = column_or_1d(y, warn=True)
    assert_all_finite(y, input_name="y")
    check_classification_targets(y)
    classes, encoded = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            "churn labels hold a single class (1 class found): need churned and retained rows"
        )
    if len(classes) > 2:
        raise ValueError(
            "Only binary classification is supported. The type of the target is "
            f"{type_of_target(y)}: churn labels are 1 = churned, 0 = retained"
        )
    return classes, encoded.astype(np.int64)


def _steady(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    # Feature values are not bit-reproducible (e.g. btyd_monetary_value differs in the last
    # bits between two computations on the same shop: summation order), and the trees' bin
    # edges sit between observed values, so last-bit noise moved rows across edges and refits
    # on the same data differed. Six decimals is far below any meaningful difference.
    return np.asarray(np.round(matrix, 6))


def _logit(probability: NDArray[np.float64]) -> NDArray[np.float64]:
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped) - np.log1p(-clipped))


def _value(customer: Mapping[str, Any], column: str) -> float:
    value = customer.get(column, np.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _plural(count: float, word: str) -> str:
    n = int(round(count))
    return f"{n} {word}" + ("" if n == 1 else "s")


def no_single_cause(typical_churn: float, medium: float) -> str:
    """The reason of a customer at risk whom no feature group alone puts at risk: their values
    are as good as a typical retained customer's in every group. `typical_churn` is the model's
    P(churn) for that typical customer, `medium` the first risk threshold."""
    typical = f"a typical returning customer scores {100 * typical_churn:.0f}%"
    if typical_churn >= medium:
        return f"no single cause: churn is common here ({typical})"
    return f"no single cause: their habits together raise the risk, no one alone ({typical})"


def describe_reason(
    group: str, customer: Mapping[str, Any], typical: Mapping[str, Any] | None = None
) -> str:
    """Plain words for one reason group, from the customer's own feature values; `typical`
    (a retained customer's median values) adds a comparison where words alone would mislead."""
    typical = typical or {}
    v = lambda column: _value(customer, column)  # noqa: E731
    if group == "recency":
        # orders = distinct order ids, as the features and the frequency reason count them
        days, overdue, orders = v("days_since_last_order"), v("overdue_ratio"), v("orders")
        if not orders > 1:
            return f"only one order so far, {days:.0f} days ago"
        if np.isnan(overdue):  # every order at the same time: no gap between them
            return f"{_plural(orders, 'order')}, all on one day {days:.0f} days ago, none since"
        if overdue >= 1.5:
            return f"no order for {days:.0f} days, {overdue:.1f}x the usual gap"
        return f"no order for {days:.0f} days"
    if group == "recent_orders":
        recent = v("orders_last_90d")
        if recent == 0:
            return "no orders in the last 90 days"
        return f"only {_plural(recent, 'order')} in the last 90 days"
    if group == "frequency":
        return f"{_plural(v('orders'), 'order')} in {v('tenure_days'):.0f} days as a customer"
    if group == "spend_trend":
        ratio = v("spend_trend_90d_ratio")
        if np.isfinite(ratio) and ratio < 1:
            return f"spend down {100 * (1 - ratio):.0f}% against the previous 90 days"
        return "spending pattern changed over the last 90 days"
    if group == "spend":
        value, usual = v("mean_order_value"), _value(typical, "mean_order_value")
        if np.isfinite(usual) and value < usual:
            return f"low spend: mean order value {value:.2f} against a typical {usual:.2f}"
        if np.isfinite(usual):
            return f"spending pattern: mean order value {value:.2f} (typical {usual:.2f})"
        return f"spending pattern: mean order value {value:.2f}"
    if group == "complaints":
        recent, total = v("complaints_last_90d"), v("complaints")
        if recent > 0:
            return f"{_plural(recent, 'complaint')} in the last 90 days"
        if total > 0:
            return (
                f"{_plural(total, 'complaint')}, the last "
                f"{v('days_since_last_complaint'):.0f} days ago"
            )
        return "no complaints, but no feedback either"
    if group == "ratings":
        if v("ratings") > 0:
            return (
                f"average rating {v('rating_mean'):.1f} of 5 "
                f"(lowest {v('rating_min'):.0f}) over {_plural(v('ratings'), 'rating')}"
            )
        return "has never rated a purchase"
    if group == "returns":
        returns = v("returns")
        if returns > 0:
            return f"{_plural(returns, 'return')} ({100 * v('return_rate'):.0f}% of items bought)"
        return "no returns"
    if group == "negative_feedback":
        share = v("negative_feedback_share")
        if np.isfinite(share):
            return f"{100 * share:.0f}% of their feedback is negative"
        return "has never left feedback"
    if group == "tenure":
        return f"customer for {v('tenure_days'):.0f} days"
    return group.replace("_", " ")
