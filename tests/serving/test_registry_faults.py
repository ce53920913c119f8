"""A registry that is missing or broken is reported as what it is, fast (issue 22, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import Settings
from serving.mlflow_source import MlflowModelSource, ModelNotFound


def test_a_missing_sqlite_store_is_named_and_not_created(tmp_path: Path) -> None:
    """On main before 2026-12-07 MLflow created an empty database there, and the error said
    the models were not trained."""
    missing = tmp_path / "nowhere" / "mlflow.db"
    source = MlflowModelSource(Settings(api_keys="admin=a", tracking_uri=f"sqlite:///{missing}"))
    with pytest.raises(ModelNotFound, match="no MLflow database at .*nowhere/mlflow.db"):
        source.champion_versions()
    assert not missing.exists()


def test_a_corrupt_store_is_not_reported_as_missing_models(tmp_path: Path) -> None:
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"this is not a database" * 200)
    source = MlflowModelSource(Settings(api_keys="admin=a", tracking_uri=f"sqlite:///{corrupt}"))
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the store's own error type
        source.champion_versions()
    assert not isinstance(raised.value, ModelNotFound)
    assert "not a database" in str(raised.value)
