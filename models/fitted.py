"""The not-fitted guard of the models that are not scikit-learn estimators (BTYD, RFM)."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError


def check_fitted(model: object, attribute: str) -> None:
    """Raise sklearn's `NotFittedError` (a ValueError) unless `model` has the learned
    `attribute`: call `fit` (or `from_dict`) first."""
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet: call fit (or load a "
            "fitted one with from_dict) first"
        )
