"""Shared fixtures: where the shared reference data lives, and BLAS and OpenMP at one thread."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# OpenMP (scikit-learn's trees, implicit) at one thread in the test processes and every command
# they start: two test processes share the two cores, and idle OpenMP threads spin against the
# other process's work (tests/test_shops.py's fixture: 159 s alone, 603 s inside the suite).
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PATRONAGE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


SLOW_FILES_FIRST = (
    "tests/training/test_pipeline.py",
    "tests/test_shops.py",
    "tests/test_spark.py",
    "tests/serving/test_end_to_end.py",
    "tests/serving/test_openapi_fuzz.py",
    "tests/serving/test_crm_browser.py",
    "tests/models/test_churn.py",
    "tests/test_docs.py",
    "tests/serving/test_crash.py",
    "tests/test_postgresql.py",
)
"""Test files by wall time, longest first (measured with `pytest --durations`, 2026-12-07).

`make test` runs whole files on two processes (`--dist loadfile --no-loadscope-reorder`),
handing out files in collection order; starting the longest ones first keeps one process from
finishing a long file alone at the end while the other idles (longest-first scheduling).
xdist's default order (most tests per file first) started tests/test_shops.py last."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run `SLOW_FILES_FIRST` before every other file, each file's tests in their own order."""
    rank = {name: position for position, name in enumerate(SLOW_FILES_FIRST)}

    def file_rank(item: pytest.Item) -> int:
        relative = Path(str(item.path)).resolve().relative_to(PROJECT_ROOT).as_posix()
        return rank.get(relative, len(rank))

    items.sort(key=file_rank)  # stable: the rest keep pytest's order


UNTRACKED_BY_DESIGN = (".venv/", ".hypothesis/", "patronage.egg-info/", "data/sample/")
"""Paths a test run may leave or find changed in the repository: the environment, caches and
the sample shop `make run` generates (caches like .pytest_cache, .mypy_cache, __pycache__ and
.ruff_cache are matched by name wherever they are)."""
CACHE_NAMES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")


def _modified_time(path: str) -> float:
    """Modification time of a repository file; -1 when it does not exist."""
    try:
        return (PROJECT_ROOT / path).stat().st_mtime
    except OSError:
        return -1.0


def _repository_state() -> dict[str, float] | None:
    """Every file `git status --porcelain --ignored` reports (untracked, ignored or changed;
    directories expanded) with its modification time; None outside a git checkout."""
    import subprocess

    try:
        listing = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    state: dict[str, float] = {}
    for line in listing.splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if path.startswith(UNTRACKED_BY_DESIGN) or any(
            part in CACHE_NAMES for part in Path(path).parts
        ):
            continue
        target = PROJECT_ROOT / path
        files = [f for f in target.rglob("*") if f.is_file()] if target.is_dir() else [target]
        for file in files:
            name = str(file.relative_to(PROJECT_ROOT))
            state[name] = _modified_time(name)
    return state


@pytest.fixture(scope="session", autouse=True)
def _tests_leave_the_repository_alone() -> Iterator[None]:
    """Fail the session when the tests created, changed or deleted a file in the repository.

    Tests write only under their temporary directories (`tmp_path`, `mlflow_store`, ...).
    Compares `git status --porcelain --ignored` (files expanded, with modification times)
    before and after the session, so an edit made by hand during the run is reported too;
    the environment, caches and `make run`'s data/sample are left out."""
    before = _repository_state()
    yield
    after = _repository_state()
    if before is None or after is None:
        return
    # A file no longer listed (e.g. committed during the run) is compared as it is on disk.
    after.update({path: _modified_time(path) for path in before.keys() - after.keys()})
    touched = sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )
    if touched:
        pytest.fail(
            f"the test run created, changed or deleted {len(touched)} file(s) in the repository "
            f"{PROJECT_ROOT}: {', '.join(touched[:8])}; write under tmp_path instead (MLflow: "
            "the mlflow_store fixture; a relative path: monkeypatch.chdir(tmp_path))"
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


def _shared_directory(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str
) -> tuple[Path, AbstractContextManager[bool]]:
    """A directory every test process of this run shares (`make test` runs two), and a
    context that holds the run-wide lock on it and says whether it still needs building.

    Under pytest-xdist the workers' temporary directories share a parent made for this run;
    without xdist (`worker_id` "master") the directory is this process's own."""
    import fcntl

    if worker_id == "master":
        directory = tmp_path_factory.mktemp(name)

        @contextlib.contextmanager
        def alone() -> Iterator[bool]:
            yield True

        return directory, alone()
    directory = tmp_path_factory.getbasetemp().parent / name

    @contextlib.contextmanager
    def locked() -> Iterator[bool]:
        with open(f"{directory}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits while one builds
            done = directory.with_name(f"{name}.done")
            needed = not done.exists()
            if needed:
                shutil.rmtree(directory, ignore_errors=True)  # a build that failed midway
                directory.mkdir()
            yield needed
            if needed:
                done.touch()

    return directory, locked()


@pytest.fixture(scope="session")
def sample_shop_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A small generated sample shop (CSV, planted truths in `_truth/`), made once per run
    (shared by the test processes).

    800 customers, 120 items, 365 days from 2025-01-01, seed 7. Read-only: copy it before
    changing anything in it."""
    from features.sample_shop import generate_shop

    directory, build = _shared_directory(tmp_path_factory, worker_id, "sample_shop")
    with build as needed:
        if needed:
            generate_shop(directory, **SAMPLE_SHOP_SIZE, overwrite=True)
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


SAMPLE_SHOP_NAME = "sample"
"""The shop name the session's trained store registers the sample shop under."""
SAMPLE_TRAINED_AS_OF = "2025-12-02T00:00:00Z"
"""`as_of` of the session's trained store: 30 days before the sample shop ends (365 days from
2025-01-01), so the last 30 days are a future the models never saw (quality tests)."""


SAMPLE_TRAINED_BUDGET_S = 120.0
"""The recommender search budget of the session's trained store: far above what the small shop
needs, so the search is never cut short by a busy machine and the store is the same every run."""


@dataclass(frozen=True)
class TrainedSampleStore:
    """A temp MLflow SQLite store with the sample shop's three champions (version 1 each)."""

    root: Path
    tracking_uri: str
    shop_dir: Path
    as_of: str
    result: Any
    """The `training.pipeline.TrainResult` of the training that made the store."""


@pytest.fixture(scope="session")
def trained_sample_store(
    sample_shop_dir: Path,
    migrated_mlflow_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
) -> TrainedSampleStore:
    """`sample_shop_dir` trained once per run (shared by the test processes: a training is
    about a minute of CPU) by the training pipeline at `SAMPLE_TRAINED_AS_OF` (recommender
    search budget `SAMPLE_TRAINED_BUDGET_S`, seed 0), registered as shop "sample". Read-only: a
    test that changes the registry copies `root / "mlflow.db"` first (the artifacts, under
    `root / "artifacts"`, are then shared read-only; `copy_trained_store` also sends new runs'
    artifacts elsewhere)."""
    import pickle

    import mlflow

    from training.pipeline import TrainOptions, train

    directory, build = _shared_directory(tmp_path_factory, worker_id, "trained_sample")
    root = directory / "mlruns"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with build as needed:
        if needed:
            root.mkdir()
            shutil.copyfile(migrated_mlflow_db, root / "mlflow.db")
            result = train(
                TrainOptions(
                    directory=sample_shop_dir,
                    as_of=SAMPLE_TRAINED_AS_OF,
                    tracking_uri=uri,
                    progress=False,
                    time_budget_s=SAMPLE_TRAINED_BUDGET_S,
                    shop=SAMPLE_SHOP_NAME,
                    rejects_dir=root.parent / "rejects",
                )
            )
            (directory / "result.pickle").write_bytes(pickle.dumps(result))
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    return TrainedSampleStore(
        root=root,
        tracking_uri=uri,
        shop_dir=sample_shop_dir,
        as_of=SAMPLE_TRAINED_AS_OF,
        result=pickle.loads((directory / "result.pickle").read_bytes()),
    )


def copy_trained_store(store: TrainedSampleStore, root: Path) -> str:
    """A private copy of `store`'s registry database in `root` (created); its tracking URI.

    The models already there keep reading their artifacts from the shared store (read-only);
    runs logged into the copy write theirs under `root / "artifacts"` (the experiment's
    artifact location is moved there), so the shared store stays as it was built."""
    import sqlite3

    root.mkdir(parents=True, exist_ok=True)
    database = root / "mlflow.db"
    shutil.copyfile(store.root / "mlflow.db", database)
    shared, own = ((r / "artifacts").resolve().as_uri() for r in (store.root, root))
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        moved = connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?",
            (own, shared),
        ).rowcount
    assert moved, f"no experiment of the copied store keeps its artifacts at {shared}"
    return f"sqlite:///{database}"


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session: `PATRONAGE_TEST_DATABASE_URL` when set, else a
    throwaway cluster (benchmarks/postgres_cluster.py) on a free port, stopped afterwards.
    Fails (never skips) when neither works, saying what to install or set."""
    from benchmarks.postgres_cluster import ClusterUnavailable, database_url, wait_until_ready

    try:
        with database_url() as url:
            wait_until_ready(url)
            yield url
    except ClusterUnavailable as error:
        pytest.fail(str(error))


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server for one test (dropped afterwards); its URL."""
    import uuid

    import psycopg
    from psycopg import sql

    from features.postgres_url import with_database

    name = f"patronage_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(postgres_url, name)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
