"""The model registry: names, aliases, promotion history, rollback, listing, downloading.

Each shop has three registered models, one per role (`models.registry_names`):
`patronage.<shop>.recommender`, `patronage.<shop>.churn`, `patronage.<shop>.loyalty` (see
docs/training.md). Every new version gets the alias `challenger`; the alias `champion` is what
serving loads. Each registered model keeps its champion history in the registered-model tag
`patronage.champion_history` (a JSON list of versions, oldest first) so that `rollback` can go
back to the previous champion. Every alias move is also written on the version as tags
(`patronage.decision`, `patronage.reason`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.registry_names import (
    AS_OF_TAG,
    BASELINE_NOTE_TAG,
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    CHURN,
    DATA_SHA256_TAG,
    DECISION_TAG,
    LOYALTY,
    METRIC_TAG_PREFIX,
    MODEL_PREFIX,
    REASON_TAG,
    RECOMMENDER,
    ROLE_TAG,
    ROLES,
    ROWS_TAG,
    SHOP_TAG,
    SKIPPED_TAG,
    SOURCE_TAG,
    beats_baseline,
    recorded_metrics,
    registered_name,
    shop_models,
    shops,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "CHURN",
    "LOYALTY",
    "METRIC_TAG_PREFIX",
    "RECOMMENDER",
    "ROLES",
    "registered_name",
    "shops",
]

CHAMPION = CHAMPION_ALIAS
CHALLENGER = CHALLENGER_ALIAS
HISTORY_TAG = "patronage.champion_history"


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown model or version, no history)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding alias `champion`, or None (also when the model does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """Versions that held `champion`, oldest first (the last one is the current champion)."""
    model = client.get_registered_model(name)
    raw = model.tags.get(HISTORY_TAG)
    if not raw:
        return []
    try:
        return [str(v) for v in json.loads(raw)]
    except (ValueError, TypeError):
        return []


def _write_history(client: MlflowClient, name: str, history: list[str]) -> None:
    # Tag values are limited in size; 200 promotions of history are plenty for a rollback.
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-200:]))


def set_champion(client: MlflowClient, name: str, version: str, decision: str, reason: str) -> None:
    """Move `champion` to `version`, append it to the history and tag the version with why.

    `decision` is a short word (`promoted`, `forced`, `manual`, `rollback`); `reason` a sentence."""
    version = str(version)
    history = champion_history(client, name)
    current = champion_version(client, name)
    if current is not None and (not history or history[-1] != str(current.version)):
        history.append(str(current.version))  # alias set outside Patronage: keep it rollbackable
    client.set_model_version_tag(name, version, DECISION_TAG, decision)
    client.set_model_version_tag(name, version, REASON_TAG, reason[:5000])
    client.set_model_version_tag(name, version, "patronage.champion_since", _now())
    client.set_registered_model_alias(name, CHAMPION, version)
    if not history or history[-1] != version:
        history.append(version)
    _write_history(client, name, history)


def promote(client: MlflowClient, name: str, version: str, reason: str = "") -> None:
    """Make `version` of `name` the champion by hand (`patronage promote`).

    Raises `RegistryError` for an unknown model or version."""
    _require_version(client, name, version)
    set_champion(client, name, version, "manual", reason or "promoted by hand (patronage promote)")


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from_version, to_version).

    Raises `RegistryError` when the model has no champion or no earlier champion."""
    _require_model(client, name)
    current = champion_version(client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back; see `patronage models`")
    history = champion_history(client, name)
    if history and history[-1] == str(current.version):
        history = history[:-1]
    if not history:
        raise RegistryError(
            f"{name} has no earlier champion than version {current.version}; use "
            "`patronage promote NAME VERSION` to choose one"
        )
    target = history[-1]
    _require_version(client, name, target)
    client.set_model_version_tag(name, str(current.version), "patronage.rolled_back_at", _now())
    client.set_model_version_tag(name, target, DECISION_TAG, "rollback")
    client.set_model_version_tag(
        name, target, REASON_TAG, f"rolled back from version {current.version}"
    )
    client.set_registered_model_alias(name, CHAMPION, target)
    _write_history(client, name, history)
    return str(current.version), target


def _require_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        known = ", ".join(sorted(m.name for m in shop_models(client))) or "none yet"
        raise RegistryError(
            f"no registered model named {name!r}; known: {known} (run `patronage train` first)"
        ) from error


def _require_version(client: MlflowClient, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    _require_model(client, name)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as error:
        raise RegistryError(f"{name} has no version {version}; see `patronage models`") from error


def resolve_shop(client: MlflowClient, shop: str | None) -> str:
    """`shop` itself when given, else the store's only shop.

    Raises `RegistryError` when no shop was given and the store holds none or several."""
    if shop:
        return shop
    known = shops(client)
    if len(known) == 1:
        return known[0]
    if not known:
        raise RegistryError("no shop has registered models yet: run `patronage train DIR` first")
    raise RegistryError(f"the store holds several shops ({', '.join(known)}): pass --shop NAME")


def resolve_model_name(client: MlflowClient, name: str, shop: str | None) -> str:
    """The registered model meant by `name`: a role (`churn`, with `shop` or the only shop)
    or a full registered name (`patronage.sample.churn`). Raises `RegistryError`."""
    if name in ROLES:
        return registered_name(resolve_shop(client, shop), name)
    if name.startswith(f"{MODEL_PREFIX}."):
        return name
    raise RegistryError(
        f"{name!r} is neither a role ({', '.join(ROLES)}) nor a registered model name "
        f"({MODEL_PREFIX}.SHOP.ROLE); see `patronage models`"
    )


def skipped_reason(client: MlflowClient, shop: str, role: str) -> str | None:
    """Why the last training of `shop` skipped `role` (None when it was not skipped)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(registered_name(shop, role))
    except MlflowException:
        return None
    return (model.tags or {}).get(SKIPPED_TAG) or None


@dataclass(frozen=True)
class VersionRow:
    """One line of `patronage models`."""

    shop: str
    role: str
    name: str
    version: str
    aliases: tuple[str, ...]
    created_at: str
    decision: str
    as_of: str
    metrics: dict[str, float]
    run_id: str
    beats_baseline: bool | None
    """None for versions trained before the baseline verdict was recorded."""
    baseline_note: str
    data_source: str
    data_rows: dict[str, int]
    data_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "shop": self.shop,
            "role": self.role,
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "created_at": self.created_at,
            "decision": self.decision,
            "as_of": self.as_of,
            "metrics": self.metrics,
            "run_id": self.run_id,
            "beats_baseline": self.beats_baseline,
            "baseline_note": self.baseline_note,
            "data_source": self.data_source,
            "data_rows": self.data_rows,
            "data_sha256": self.data_sha256,
        }


@dataclass(frozen=True)
class SkippedRow:
    """A role of a shop that has no version because training skipped it (and why)."""

    shop: str
    role: str
    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"shop": self.shop, "role": self.role, "name": self.name, "skipped": self.reason}


def list_versions(
    client: MlflowClient, shop: str | None = None, roles: tuple[str, ...] = ROLES
) -> tuple[list[VersionRow], list[SkippedRow]]:
    """Every version of the shop's (or every shop's) registered models, by shop and role,
    newest first; and the roles the last training skipped. Missing models are left out."""
    rows: list[VersionRow] = []
    skipped: list[SkippedRow] = []
    order = {role: i for i, role in enumerate(ROLES)}
    models = [
        m
        for m in shop_models(client)
        if (shop is None or m.tags[SHOP_TAG] == shop) and m.tags[ROLE_TAG] in roles
    ]
    models.sort(key=lambda m: (m.tags[SHOP_TAG], order.get(m.tags[ROLE_TAG], 9)))
    for model in models:
        name, model_shop, role = model.name, model.tags[SHOP_TAG], model.tags[ROLE_TAG]
        # search_model_versions does not fill aliases on every store: take them from the model.
        aliases: dict[str, list[str]] = {}
        for alias, version_number in (model.aliases or {}).items():
            aliases.setdefault(str(version_number), []).append(alias)
        versions = client.search_model_versions(f"name = '{name}'")
        if model.tags.get(SKIPPED_TAG):
            skipped.append(SkippedRow(model_shop, role, name, model.tags[SKIPPED_TAG]))
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            tags = version.tags or {}
            metrics = recorded_metrics(tags)
            created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
            try:
                data_rows = {
                    str(k): int(v) for k, v in json.loads(tags.get(ROWS_TAG, "{}")).items()
                }
            except (ValueError, TypeError, AttributeError):
                data_rows = {}
            rows.append(
                VersionRow(
                    shop=model_shop,
                    role=role,
                    name=name,
                    version=str(version.version),
                    aliases=tuple(sorted(aliases.get(str(version.version), []))),
                    created_at=created.isoformat(timespec="seconds"),
                    decision=tags.get(DECISION_TAG, ""),
                    as_of=tags.get(AS_OF_TAG, ""),
                    metrics=dict(sorted(metrics.items())),
                    run_id=version.run_id or "",
                    beats_baseline=beats_baseline(tags),
                    baseline_note=tags.get(BASELINE_NOTE_TAG, ""),
                    data_source=tags.get(SOURCE_TAG, ""),
                    data_rows=data_rows,
                    data_sha256=tags.get(DATA_SHA256_TAG, ""),
                )
            )
    return rows, skipped


def resolve_model_dir(uri: str, artifact: str | None = None) -> Path:
    """A local directory holding the MLflow model at `uri` (downloaded if needed).

    `uri` may be `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/...`, any artifact URI, or a
    local model directory. With `artifact` (e.g. "bundle" for the recommender, "scorer" or
    "scores" for churn and loyalty) the directory of that logged artifact is returned instead,
    ready for `RecommenderBundle.load` / `CustomerScorer.load`. Uses the current tracking store
    (`MLFLOW_TRACKING_URI` or the default `sqlite:///mlruns/mlflow.db`). Raises `RegistryError`
    when the model or the artifact is missing, `TrackingUnavailable` when the store is down."""
    local = Path(uri)
    if "://" not in uri and not uri.startswith("models:") and local.is_dir():
        model_dir = local
    else:
        from mlflow.exceptions import MlflowException

        from training.tracking import connect

        connect()
        import mlflow

        try:
            model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        except (MlflowException, OSError) as error:
            raise RegistryError(
                f"cannot find the model {uri}: {str(error).splitlines()[0]}. Train one with "
                "`patronage train DIR` or pass --model-uri"
            ) from error
    if artifact is None:
        return model_dir
    return model_artifact_dir(model_dir, artifact)


def model_artifact_dir(model_dir: Path, artifact: str) -> Path:
    """The directory of a named pyfunc artifact inside a local MLflow model directory.

    Raises `RegistryError` when the model has no such artifact."""
    import yaml

    meta_path = model_dir / "MLmodel"
    if not meta_path.exists():
        raise RegistryError(f"{model_dir} is not an MLflow model directory (no MLmodel file)")
    meta = yaml.safe_load(meta_path.read_text())
    artifacts = meta.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
    if artifact not in artifacts:
        raise RegistryError(
            f"the model in {model_dir} has no artifact {artifact!r}; it has: "
            f"{', '.join(sorted(artifacts)) or 'none'}"
        )
    return model_dir / artifacts[artifact]["path"]
