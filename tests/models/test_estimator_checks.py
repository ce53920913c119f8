"""The scikit-learn estimator convention we claim: ChurnModel passes every `check_estimator`
check, and the models that are not X/y estimators no longer claim to be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, is_classifier
from sklearn.utils.estimator_checks import estimator_checks_generator

from models.btyd import BetaGeoModel, GammaGammaModel
from models.churn import ChurnModel
from models.loyalty import RFMScorer

# Few, fast boosting rounds: the checks' data sets are tiny. One instance bags random halves of
# the features (the default), the other uses every feature with the Platt map.
ESTIMATORS = [
    ChurnModel(max_iter=20, learning_rate=0.3),
    ChurnModel(max_iter=30, learning_rate=0.3, n_bags=1, calibrate=True),
]


NOT_CLAIMED = {"check_array_api_input"}
"""Checks of an API we do not claim (the array API: ChurnModel takes numpy and pandas); they
are left out here, not skipped at run time."""


def _checks() -> list[Any]:
    """Every (estimator, check) pair of scikit-learn's suite, minus `NOT_CLAIMED`."""
    pairs = []
    for estimator in ESTIMATORS:
        for _, check in estimator_checks_generator(estimator, legacy=True):
            name = getattr(check, "func", check).__name__
            if name not in NOT_CLAIMED:
                pairs.append(pytest.param(estimator, check, id=f"{estimator!r}-{name}"))
    return pairs


@pytest.mark.parametrize(("estimator", "check"), _checks())
def test_churn_model_passes_sklearn_checks(
    estimator: ChurnModel, check: Callable[[ChurnModel], None]
) -> None:
    check(estimator)


def test_churn_model_is_a_binary_classifier() -> None:
    assert is_classifier(ChurnModel())
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    with pytest.raises(ValueError, match="Only binary classification"):
        ChurnModel().fit(X, np.arange(20) % 3)


def test_a_frame_and_its_array_give_the_same_probabilities() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"days_since_last_order": rng.random(300) * 200, "orders": rng.integers(1, 9, 300)}
    )
    churned = (frame["days_since_last_order"] + rng.normal(0, 40, 300) > 100).astype(int)
    by_name = ChurnModel(max_iter=20).fit(frame, churned)
    assert by_name.feature_names_in_.tolist() == ["days_since_last_order", "orders"]
    np.testing.assert_array_equal(
        by_name.predict_proba(frame), by_name.predict_proba(frame.to_numpy())
    )
    # a frame is read by name: shuffled columns, the same answer
    np.testing.assert_array_equal(
        by_name.predict_proba(frame),
        by_name.predict_proba(frame[["orders", "days_since_last_order"]]),
    )


@pytest.mark.parametrize("model", [BetaGeoModel, GammaGammaModel, RFMScorer])
def test_models_that_are_not_x_y_estimators_do_not_claim_to_be(model: Any) -> None:
    # BG/NBD fits (frequency, recency, T), Gamma-Gamma (frequency, monetary value) and RFM
    # a named feature frame into string segments: none is an estimator on X / y.
    assert not issubclass(model, BaseEstimator)
