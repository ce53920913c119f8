"""What the console's models page reads from the MLflow registry: every registered version of
every shop in the store, with aliases, decisions and backtest metrics, and a run's training
report.

Only this module of the console imports mlflow (lazily, in a worker thread); the listing is
kept `LISTING_SECONDS` so opening the page repeatedly does not query the registry each time.
Serving still never writes to the registry.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.registry_names import (
    AS_OF_TAG,
    BASELINE_NOTE_TAG,
    DECISION_TAG,
    MLFLOW_CLIENT_DEFAULTS,
    REASON_TAG,
    ROLE_TAG,
    ROLES,
    SHOP_TAG,
    SKIPPED_TAG,
    beats_baseline,
    recorded_metrics,
    shop_models,
)

LISTING_SECONDS = 30.0
REPORT_ARTIFACT = "report/report.html"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
"""MLflow run ids are 32 lower-case hex digits; anything else is refused before MLflow."""


class ReportMissing(LookupError):
    """The run has no training report (or does not exist)."""


@dataclass(frozen=True)
class VersionView:
    """One registered version as the models page shows it."""

    version: str
    aliases: tuple[str, ...]
    created_at: str
    decision: str
    reason: str
    as_of: str
    metrics: dict[str, float]
    beats_baseline: bool | None
    baseline_note: str
    run_id: str


@dataclass(frozen=True)
class ModelView:
    """One registered model (a shop's role) and its versions, newest first."""

    shop: str
    role: str
    name: str
    skipped: str
    versions: list[VersionView] = field(default_factory=list)


def _client(tracking_uri: str) -> Any:
    """A registry client; raises `ModelNotFound` for a SQLite store that does not exist (MLflow
    would create an empty one)."""
    import os

    from serving.mlflow_source import require_sqlite_file

    require_sqlite_file(tracking_uri)
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _version_view(version: Any, aliases: dict[str, list[str]]) -> VersionView:
    tags = version.tags or {}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    return VersionView(
        version=str(version.version),
        aliases=tuple(sorted(aliases.get(str(version.version), []))),
        created_at=created.isoformat(timespec="seconds"),
        decision=tags.get(DECISION_TAG, ""),
        reason=tags.get(REASON_TAG, ""),
        as_of=tags.get(AS_OF_TAG, ""),
        metrics=dict(sorted(recorded_metrics(tags).items())),
        beats_baseline=beats_baseline(tags),
        baseline_note=tags.get(BASELINE_NOTE_TAG, ""),
        run_id=version.run_id or "",
    )


def list_models(tracking_uri: str) -> list[ModelView]:
    """Every shop's registered models with their versions (newest first), by shop and role."""
    client = _client(tracking_uri)
    order = {role: i for i, role in enumerate(ROLES)}
    found = sorted(
        shop_models(client), key=lambda m: (m.tags[SHOP_TAG], order.get(m.tags[ROLE_TAG], 9))
    )
    views = []
    for model in found:
        aliases: dict[str, list[str]] = {}
        for alias, number in (model.aliases or {}).items():
            aliases.setdefault(str(number), []).append(alias)
        versions = client.search_model_versions(f"name = '{model.name}'")
        views.append(
            ModelView(
                shop=model.tags[SHOP_TAG],
                role=model.tags[ROLE_TAG],
                name=model.name,
                skipped=model.tags.get(SKIPPED_TAG, ""),
                versions=[
                    _version_view(v, aliases)
                    for v in sorted(versions, key=lambda v: int(v.version), reverse=True)
                ],
            )
        )
    return views


def training_report(tracking_uri: str, run_id: str) -> bytes:
    """The HTML training report of a run (self-contained: figures embedded); raises
    `ReportMissing` for a malformed run id or a run without a report."""
    if not RUN_ID.match(run_id):
        raise ReportMissing("not a run id")
    import mlflow
    from mlflow.exceptions import MlflowException

    from serving.mlflow_source import require_sqlite_file

    scratch = Path(tempfile.mkdtemp(prefix="patronage-crm-report-"))
    try:
        require_sqlite_file(tracking_uri)
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=REPORT_ARTIFACT,
            dst_path=str(scratch),
            tracking_uri=tracking_uri,
        )
        return Path(local).read_bytes()
    except (MlflowException, OSError, LookupError) as error:
        raise ReportMissing(f"run {run_id} has no training report") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class RegistryListing:
    """`list_models`, kept for `LISTING_SECONDS`."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()
        self._at = 0.0
        self._views: list[ModelView] | None = None

    def models(self) -> list[ModelView]:
        """The listing (read again when older than `LISTING_SECONDS`)."""
        with self._lock:
            if self._views is None or time.monotonic() - self._at > LISTING_SECONDS:
                self._views = list_models(self.tracking_uri)
                self._at = time.monotonic()
            return self._views
