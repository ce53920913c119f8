"""Where training writes: the MLflow tracking store, its artifacts, and a reachability check.

The default store is `sqlite:///mlruns/mlflow.db` relative to the current directory (the project
root under `make run`), with artifacts in `mlruns/artifacts/`. `MLFLOW_TRACKING_URI` overrides it,
including a remote `mlflow server` (`http://host:port`), whose own artifact store is then used.
`mlflow` is imported inside the functions: importing it costs about 1.5 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from models.registry_names import MLFLOW_CLIENT_DEFAULTS

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_EXPERIMENT = "patronage"
ARTIFACTS_DIR_NAME = "artifacts"


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or opened; nothing was written."""


@dataclass(frozen=True)
class TrackingStore:
    """A resolved tracking store: its URI and, for a local SQLite store, where artifacts go."""

    tracking_uri: str
    artifact_location: str | None
    """A `file://` URI for new experiments of a local store; None lets a server decide."""

    @property
    def is_remote(self) -> bool:
        """True for an `http(s)://` tracking server."""
        return self.tracking_uri.startswith(("http://", "https://"))


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the current dir), else None."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    parsed = urlparse(tracking_uri)
    # sqlite:///relative/file.db -> path "/relative/file.db"; sqlite:////abs/file.db -> "//abs..."
    raw = unquote(parsed.path)
    path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
    return path if path.is_absolute() else Path.cwd() / path


def resolve_store(tracking_uri: str | None = None) -> TrackingStore:
    """The store to use: the argument, else `MLFLOW_TRACKING_URI`, else the default SQLite store.

    For a SQLite store the database's directory is created and artifacts go to `artifacts/` beside
    the database file. A `./mlruns` file-store URI is refused because MLflow 3 deprecates it."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        artifacts = database.parent / ARTIFACTS_DIR_NAME
        return TrackingStore(tracking_uri=uri, artifact_location=artifacts.resolve().as_uri())
    if uri.startswith(("http://", "https://", "databricks", "postgresql", "mysql", "mssql")):
        return TrackingStore(tracking_uri=uri, artifact_location=None)
    raise ValueError(
        f"tracking URI {uri!r} is not supported: use a SQLite store such as "
        f"{DEFAULT_TRACKING_URI!r} or a tracking server http://HOST:PORT (the MLflow file store "
        "is deprecated)"
    )


def connect(tracking_uri: str | None = None) -> tuple[TrackingStore, MlflowClient]:
    """Point MLflow at the store and check it answers; raises `TrackingUnavailable` if not.

    Sets the process-wide tracking and registry URIs (MLflow keeps them globally)."""
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    store = resolve_store(tracking_uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    try:
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    except Exception as error:  # any failure here means "cannot use this store"
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking store at {store.tracking_uri}: "
            f"{_first_line(error)}. Start the server or fix MLFLOW_TRACKING_URI; nothing was "
            "changed."
        ) from error
    return store, client


def ensure_experiment(client: MlflowClient, store: TrackingStore, name: str) -> str:
    """The id of experiment `name`, created (with this store's artifact location) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=store.artifact_location))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
