"""Fixtures of the quality tests: the session's trained champions, the sample shop's planted
truths, and what its customers really did in the 30 days after the models' `as_of`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from tests.conftest import SAMPLE_SHOP_NAME, TrainedSampleStore


def load_champion(store: TrainedSampleStore, role: str) -> Any:
    """The unwrapped python model of `role`'s champion in the trained store; MLflow's global
    URIs are put back afterwards."""
    import mlflow

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.tracking_uri)
        mlflow.set_tracking_uri(store.tracking_uri)
        mlflow.set_registry_uri(store.tracking_uri)
        try:
            uri = f"models:/patronage.{SAMPLE_SHOP_NAME}.{role}@champion"
            return mlflow.pyfunc.load_model(uri).unwrap_python_model()
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ShopHistory:
    """The sample shop around the models' `as_of`: purchases before and after it, and the
    planted per-customer truths (`_truth/customers.csv`, times parsed as UTC)."""

    as_of: pd.Timestamp
    before: pd.DataFrame
    after: pd.DataFrame
    truth: pd.DataFrame


@pytest.fixture(scope="session")
def shop_history(trained_sample_store: TrainedSampleStore) -> ShopHistory:
    directory = trained_sample_store.shop_dir
    ids = {"customer_id": str, "item_id": str, "order_id": str}
    purchases = pd.read_csv(directory / "purchases.csv", dtype=ids)
    purchases["ordered_at"] = pd.to_datetime(purchases["ordered_at"], utc=True)
    truth = pd.read_csv(directory / "_truth" / "customers.csv", dtype={"customer_id": str})
    for column in ("drifting_since", "left_at"):
        truth[column] = pd.to_datetime(truth[column], utc=True)
    as_of = pd.Timestamp(trained_sample_store.as_of)
    return ShopHistory(
        as_of=as_of,
        before=purchases[purchases["ordered_at"] < as_of],
        after=purchases[purchases["ordered_at"] >= as_of],
        truth=truth,
    )
