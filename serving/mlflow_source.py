"""Loads the champion models from the MLflow registry into a `ServingModels` snapshot.

The recommender it builds applies posted availability (`serving.availability`) and answers the
default question from precomputed lists (`serving.precompute`).

Only this module imports mlflow (lazily), and only the model store's background thread calls it:
nothing on the request path touches MLflow or disk. Each version is downloaded to a temporary
directory, its `python_model.pkl` is checked by `models.pyfunc.check_model_dir` (a tampered
artifact cannot run code), loaded with `mlflow.pyfunc.load_model`, unwrapped to the in-memory
objects (`.bundle`, `.scores`) and the directory removed: the snapshot holds everything in memory.
A role whose version did not change is reused from the previous snapshot.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from models.registry_names import (
    BASELINE_NOTE_TAG,
    MLFLOW_CLIENT_DEFAULTS,
    SKIPPED_TAG,
    SOURCE_TAG,
    beats_baseline,
    recorded_metrics,
    registered_name,
    shops,
)
from serving.availability import BundleRecommender, HiddenItems, ShownItems, no_posted_items
from serving.config import Settings
from serving.model_store import (
    ROLES,
    CustomerScoreTable,
    LoadedModel,
    Role,
    ServingModels,
    UntrainedRecommender,
    UntrainedScores,
)
from serving.segment_rules import segment_rules

logger = logging.getLogger("patronage.serving")


class ModelNotFound(LookupError):
    """A registered model or its alias is missing; the message says what to run."""


class ModelLoadFailed(RuntimeError):
    """A champion could not be downloaded or loaded; the message names the role, the
    registered model and the version."""


MISSING_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
"""MLflow's error codes for a registered model or alias that does not exist; any other error
from the registry is the registry failing, and is reported as such."""


class MlflowModelSource:
    """Reads the alias (default `champion`) of one shop's three registered models (the shop
    of the settings, else the store's only shop). A role without that alias is served as
    unavailable, with the reason training recorded; at least one role must have it."""

    def __init__(
        self,
        settings: Settings,
        hidden_items: HiddenItems = no_posted_items,
        shown_items: ShownItems = no_posted_items,
    ) -> None:
        self.settings = settings
        self.hidden_items = hidden_items
        self.shown_items = shown_items
        self.shop = settings.shop
        self.served_shop = settings.shop
        self.names: dict[Role, str] = {}
        self.unavailable: dict[Role, str] = {}
        """Roles without the alias at the last `champion_versions`, and why."""
        self._client: Any = None

    def _mlflow_client(self) -> Any:
        if self._client is None:
            for name, value in MLFLOW_CLIENT_DEFAULTS.items():
                os.environ.setdefault(name, value)
            uri = self.settings.tracking_uri
            require_sqlite_file(uri)
            import mlflow
            from mlflow import MlflowClient

            # Process-wide, but this process only ever reads this one store.
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _shop(self, client: Any) -> str:
        """The served shop: the configured one, else the store's only shop."""
        if self.shop:
            return self.shop
        known = shops(client)
        if len(known) != 1:
            which = f"several shops ({', '.join(known)})" if known else "no shop's models"
            raise ModelNotFound(
                f"{self.settings.tracking_uri} holds {which}: "
                + (
                    "start with --shop NAME (or PATRONAGE_SHOP)"
                    if known
                    else "run `patronage train DIR` first"
                )
            )
        return known[0]

    def champion_versions(self) -> dict[Role, str]:
        """The version holding the alias for each role that has one (the others, with why, in
        `unavailable`); raises `ModelNotFound` when no role has one."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client()
        shop = self._shop(client)
        self.served_shop = shop
        self.names = {role: registered_name(shop, role) for role in ROLES}
        alias = self.settings.model_alias
        versions: dict[Role, str] = {}
        unavailable: dict[Role, str] = {}
        for role, name in self.names.items():
            try:
                version = client.get_model_version_by_alias(name, alias)
            except MlflowException as error:
                if error.error_code not in MISSING_CODES:
                    raise  # the registry itself failed (unreadable, corrupt): not "no model"
                unavailable[role] = self._why_missing(client, name, alias, error)
                continue
            versions[role] = str(version.version)
        if not versions:
            raise ModelNotFound(
                f"shop {shop!r} has no @{alias} model in {self.settings.tracking_uri} ("
                + "; ".join(f"{role}: {why}" for role, why in unavailable.items())
                + f"); run `patronage train DIR --shop {shop}` first"
            )
        self.unavailable = unavailable
        return versions

    def alias_version(self, role: Role, alias: str) -> str | None:
        """The version of the served shop's `role` model holding `alias`, or None when it has
        none (a registry that fails raises)."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client()
        shop = self._shop(client)
        self.served_shop = shop
        self.names = {r: registered_name(shop, r) for r in ROLES}
        try:
            return str(client.get_model_version_by_alias(self.names[role], alias).version)
        except MlflowException as error:
            if error.error_code not in MISSING_CODES:
                raise
            return None

    @staticmethod
    def _why_missing(client: Any, name: str, alias: str, error: Exception) -> str:
        """Why `name` has no version with `alias`: the reason training recorded, or what to do."""
        from mlflow.exceptions import MlflowException

        try:
            skipped = (client.get_registered_model(name).tags or {}).get(SKIPPED_TAG)
        except MlflowException:
            return f"{name} is not registered: run `patronage train DIR` first"
        if skipped:
            return f"training skipped it: {skipped}"
        return f"{name} has no @{alias} version ({str(error).splitlines()[0]})"

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """Load the asked versions (reusing unchanged roles of `previous`) into a snapshot;
        roles not in `versions` are served as unavailable."""
        client = self._mlflow_client()
        loaded: dict[Role, tuple[LoadedModel, Any]] = {}
        for role, version in versions.items():
            kept = None if previous is None else previous.versions.get(role)
            if kept is not None and kept.name == self.names[role] and kept.version == version:
                continue
            try:
                loaded[role] = self._load_one(client, role, version)
            except Exception as error:
                raise ModelLoadFailed(
                    f"loading the {role} model {self.names[role]} version {version} failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return self._snapshot(loaded, versions, previous)

    def _load_one(self, client: Any, role: Role, version: str) -> tuple[LoadedModel, Any]:
        import mlflow

        from models.pyfunc import check_model_dir

        name = self.names[role]
        model_version = client.get_model_version(name, version)
        tags = model_version.tags or {}
        metrics = recorded_metrics(tags)
        scratch = Path(tempfile.mkdtemp(prefix=f"patronage-serve-{role}-"))
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}",
                dst_path=str(scratch),
                tracking_uri=self.settings.tracking_uri,
            )
            check_model_dir(local)
            python_model = mlflow.pyfunc.load_model(local).unwrap_python_model()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        as_of = getattr(python_model, "as_of", None)
        info = LoadedModel(
            role=role,
            name=name,
            version=version,
            run_id=model_version.run_id,
            metrics=metrics,
            as_of=None if as_of is None else pd.Timestamp(as_of).isoformat(),
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            beats_baseline=beats_baseline(tags),
            baseline_note=tags.get(BASELINE_NOTE_TAG, ""),
            data_source=tags.get(SOURCE_TAG, ""),
        )
        logger.info("loaded %s version %s", name, version)
        return info, python_model

    def _snapshot(
        self,
        loaded: Mapping[Role, tuple[LoadedModel, Any]],
        versions: Mapping[Role, str],
        previous: ServingModels | None,
    ) -> ServingModels:
        unavailable = {role: self.unavailable.get(role, "no champion model") for role in ROLES}
        unavailable = {role: why for role, why in unavailable.items() if role not in versions}

        def keep(role: Role) -> bool:
            return role not in loaded and previous is not None

        recommender: Any
        if "recommender" in unavailable:
            recommender = UntrainedRecommender(unavailable["recommender"])
            recommender_as_of = pd.Timestamp.max.tz_localize("UTC")
        elif keep("recommender"):
            assert previous is not None
            recommender, recommender_as_of = previous.recommender, previous.recommender_as_of
        else:
            bundle = loaded["recommender"][1].bundle
            recommender = BundleRecommender(
                bundle,
                self.settings.precompute_top_k,
                self.hidden_items,
                self.shown_items,
                next_need_weight=self.settings.next_need_weight,
            )
            recommender_as_of = _utc(bundle.as_of)
        tables: dict[Role, Any] = {}
        for role in ("churn", "loyalty"):
            if role in unavailable:
                tables[role] = UntrainedScores(role, unavailable[role])
            elif keep(role):
                assert previous is not None
                tables[role] = previous.churn if role == "churn" else previous.loyalty
            else:
                python_model = loaded[role][1]
                tables[role] = CustomerScoreTable.from_frame(
                    python_model.scores.reset_index(drop=True),
                    _utc(python_model.as_of),
                    segment_rules(python_model),
                )
        served = {
            role: loaded[role][0] if role in loaded else previous.versions[role]  # type: ignore[union-attr]
            for role in versions
        }
        return ServingModels(
            recommender=recommender,
            recommender_as_of=recommender_as_of,
            churn=tables["churn"],
            loyalty=tables["loyalty"],
            versions=served,
            strategies={
                "churn": "churn-model-scores-at-as_of",
                "loyalty": "loyalty-model-scores-at-as_of",
            },
            unavailable=unavailable,
            shop=self.served_shop,
        )


def require_sqlite_file(uri: str) -> None:
    """A `sqlite:///PATH` store must exist: MLflow would create an empty one and every model
    would then look missing. Raises `ModelNotFound` saying which file and what to do."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ModelNotFound(
            f"no MLflow database at {path.resolve()} (tracking URI {uri}): run `patronage "
            "train DIR` from the same directory first, or set MLFLOW_TRACKING_URI to the store"
        )


def _utc(stamp: Any) -> pd.Timestamp:
    value = pd.Timestamp(stamp)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
