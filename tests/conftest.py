"""Shared fixtures: where the shared reference data lives, and BLAS pinned to one thread."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PATRONAGE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


REPO_DEFAULT_EXPERIMENT_DIR = PROJECT_ROOT / "mlruns" / "0"
"""Where MLflow puts runs of its "Default" experiment when a store was created in the repository."""


def _entries(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()} if directory.is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def _no_mlflow_runs_in_the_repository() -> Iterator[None]:
    """Fail the session when a test logged MLflow runs into the repository's `mlruns/0`.

    Tests keep their stores and artifacts under their temporary directories (`mlflow_store`);
    runs already there before the session (e.g. by hand) are left alone and not counted."""
    before = _entries(REPO_DEFAULT_EXPERIMENT_DIR)
    yield
    new = sorted(_entries(REPO_DEFAULT_EXPERIMENT_DIR) - before)
    if new:
        pytest.fail(
            f"a test wrote MLflow runs into the repository ({REPO_DEFAULT_EXPERIMENT_DIR}: "
            f"{', '.join(new[:5])}); log into a store under tmp_path (the mlflow_store fixture)"
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; fails (never skips) when it is missing, saying where it was looked for."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(
            f"reference data not found at {SHARED_DATA}: clone the project with ../shared beside "
            "it or set PATRONAGE_SHARED_DATA"
        )
    return SHARED_DATA


SAMPLE_SHOP_SIZE = {"customers": 800, "items": 120, "days": 365, "seed": 7}
"""The size of the shared small sample shop (`sample_shop_dir`); tests may read it."""


@pytest.fixture(scope="session")
def sample_shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated sample shop (CSV, planted truths in `_truth/`), made once per session.

    800 customers, 120 items, 365 days from 2025-01-01, seed 7. Read-only: copy it before
    changing anything in it."""
    from features.sample_shop import generate_shop

    directory = tmp_path_factory.mktemp("sample_shop")
    generate_shop(directory, **SAMPLE_SHOP_SIZE)
    return directory


@dataclass(frozen=True)
class MlflowStore:
    """A private MLflow SQLite store of one test: `root/mlflow.db` plus `root/artifacts/`."""

    root: Path
    tracking_uri: str


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with every migration applied, made once per session.

    A new store spends about 2 s on migrations; `mlflow_store` copies this file instead.
    MLflow writes the artifact location of the "Default" experiment (id 0) into the database
    when it creates it, by default `./mlruns/0` of the current directory, i.e. the repository:
    here it is a directory beside the template, so a run logged without an experiment stays
    in the test's temporary files."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    directory = tmp_path_factory.mktemp("mlflow_template")
    path = directory / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", default_artifact_root=str(directory / "artifacts"))
    store.engine.dispose()
    return path


@pytest.fixture
def mlflow_store(
    migrated_mlflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MlflowStore]:
    """A fresh MLflow store for one test: a copy of the migrated database in the test's tmp dir.

    Sets `MLFLOW_TRACKING_URI` (artifacts go to `artifacts/` beside the database, see
    training/tracking.py) and restores the previous tracking and registry URIs afterwards."""
    import mlflow

    root = tmp_path / "mlruns"
    root.mkdir()
    shutil.copyfile(migrated_mlflow_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous_tracking = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowStore(root=root, tracking_uri=uri)
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        # None clears MLflow's globals; monkeypatch then restores the environment variables.
        mlflow.set_tracking_uri(previous_tracking)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _converted_shop(tables: dict) -> object:
    """A `Shop` from an importer's tables (no customers table: an empty one)."""
    import pandas as pd

    from features.shop import Shop

    customers = tables.get("customers")
    if customers is None:
        customers = pd.DataFrame(
            {"customer_id": pd.Series(dtype="str"), "signed_up_at": pd.Series(dtype="M8[ns, UTC]")}
        )
    return Shop(tables["purchases"], tables["feedback"], tables["items"], customers)


@pytest.fixture(scope="session")
def groceries_shop(shared_data: Path) -> object:
    """The Groceries data set as an in-memory `Shop` (via features.importers), once per session."""
    from features.importers import groceries_tables

    return _converted_shop(groceries_tables(shared_data / "groceries/Groceries_dataset.csv").tables)


@pytest.fixture(scope="session")
def cdnow_shop(shared_data: Path) -> object:
    """CDNOW_master (23,570 customers) as an in-memory `Shop` (via features.importers)."""
    from features.importers import cdnow_tables

    return _converted_shop(cdnow_tables(shared_data / "cdnow/CDNOW_master.txt").tables)


@pytest.fixture(scope="session")
def spark_session() -> Iterator[object]:
    """One local[2] SparkSession for the whole test session (UI off, 2 shuffle partitions, UTC)."""
    from features.engines import local_spark_session

    session = local_spark_session(cores=2, shuffle_partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
