"""Resolving `--model-uri` for commands that use a registered model (recommend, score)."""

from __future__ import annotations

from pathlib import Path

from patronage.cli import PatronageError

RECOMMENDER_CHAMPION = "models:/patronage-recommender@champion"
CHURN_CHAMPION = "models:/patronage-churn@champion"


def model_artifact(uri: str, artifact: str) -> Path:
    """The local directory of `artifact` ("bundle", "scorer") inside the MLflow model at `uri`.

    Uses `MLFLOW_TRACKING_URI` or the default store `sqlite:///mlruns/mlflow.db`; says what to do
    when the model is missing or the store cannot be reached."""
    from training.registry import resolve_model_dir
    from training.tracking import TrackingUnavailable

    try:
        return resolve_model_dir(uri, artifact=artifact)
    except TrackingUnavailable as error:
        raise PatronageError(f"--model-uri {uri}: {error}") from None
