"""Registering a training's versions in the shop's namespace, all or nothing: an undo list puts
every alias, tag and version back when the registry fails mid-way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from models.registry_names import (
    BASELINE_NOTE_TAG,
    BASELINE_TAG,
    ROLE_TAG,
    ROWS_TAG,
    SHOP_TAG,
    SKIPPED_TAG,
    SOURCE_TAG,
    registered_name,
)
from training.candidate import KEY_METRICS, Candidate
from training.options import TrainingFailed, TrainOptions
from training.registry import (
    CHALLENGER,
    METRIC_TAG_PREFIX,
    champion_history,
    champion_version,
    set_champion,
)
from training.shop_data import DataSummary


@dataclass(frozen=True)
class ModelOutcome:
    """What happened to one registered model in this run."""

    name: str
    version: str
    decision: str
    reason: str
    champion: str
    """The champion version after this run."""
    metrics: dict[str, float]
    beats_baseline: bool = True
    baseline_note: str = ""


def register(
    client: Any,
    shop: str,
    candidates: list[Candidate],
    skipped: dict[str, str],
    options: TrainOptions,
    as_of: pd.Timestamp,
    run_id: str,
    data: DataSummary,
) -> list[ModelOutcome]:
    """Register every candidate in the shop's namespace, set `challenger`, move `champion`
    where the rule allows; mark the skipped roles (tag `patronage.skipped`, read by `serve`
    and `patronage models`) and clear that mark on the roles that trained.

    All-or-nothing: on any error the versions created here are deleted and aliases and tags
    restored, then `TrainingFailed` is raised."""

    from training.promotion import decide

    undo: list[Callable[[], None]] = []
    outcomes: list[ModelOutcome] = []
    try:
        decisions = [
            decide(
                c.name,
                c.metrics,
                c.champion_metrics,
                force=options.force,
                comparison=c.comparison,
                beats_baseline=c.beats_baseline,
                champion_beats_baseline=c.champion_beats_baseline,
            )
            for c in candidates
        ]
        for role, reason in skipped.items():
            name = _ensure_registered_model(client, shop, role, undo)
            _set_model_tag(client, name, SKIPPED_TAG, reason[:5000], undo)
        for candidate, decision in zip(candidates, decisions, strict=True):
            name = _ensure_registered_model(client, shop, candidate.name, undo)
            _set_model_tag(client, name, SKIPPED_TAG, None, undo)
            previous_challenger = _alias_version(client, name, CHALLENGER)
            previous_champion = champion_version(client, name)
            previous_history = champion_history(client, name)
            tags = {
                "patronage.as_of": as_of.isoformat(),
                "patronage.backtest_key": candidate.backtest_key,
                "patronage.backtest_cut": candidate.cut.isoformat(),
                "patronage.backtest_model_uri": candidate.backtest_model_uri,
                "patronage.data_sha256": data.sha256,
                "patronage.seed": str(options.seed),
                "patronage.decision": decision.decision,
                "patronage.reason": decision.reason[:5000],
                BASELINE_TAG: "true" if candidate.beats_baseline else "false",
                BASELINE_NOTE_TAG: candidate.baseline_note[:5000],
                SOURCE_TAG: data.source[:5000],
                ROWS_TAG: json.dumps(data.rows),
                **{
                    f"{METRIC_TAG_PREFIX}{key}": repr(float(candidate.metrics[key]))
                    for key in KEY_METRICS[candidate.name]
                    if key in candidate.metrics
                },
            }
            # A tracking server wants the logged model's id beside a models:/ source.
            version = client.create_model_version(
                name,
                candidate.model_uri,
                run_id=run_id,
                tags=tags,
                model_id=candidate.model_id or None,
            )
            number = str(version.version)
            undo.append(partial(client.delete_model_version, name, number))
            undo.append(partial(_restore_alias, client, name, CHALLENGER, previous_challenger))
            client.set_registered_model_alias(name, CHALLENGER, number)
            if decision.promote:
                undo.append(
                    partial(_restore_champion, client, name, previous_champion, previous_history)
                )
                set_champion(client, name, number, decision.decision, decision.reason)
                champion = number
            else:
                champion = str(previous_champion.version) if previous_champion else "-"
            outcomes.append(
                ModelOutcome(
                    candidate.name,
                    number,
                    decision.decision,
                    decision.reason,
                    champion,
                    dict(candidate.metrics),
                    candidate.beats_baseline,
                    candidate.baseline_note,
                )
            )
    except Exception as error:
        problems = []
        for step in reversed(undo):
            try:
                step()
            except Exception as undo_error:  # keep undoing the rest
                problems.append(str(undo_error).splitlines()[0] if str(undo_error) else "")
        extra = f" (undo also failed: {'; '.join(problems)})" if problems else ""
        raise TrainingFailed(
            f"registering the models failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the registry was put back as "
            f"it was{extra}"
        ) from error
    return outcomes


def _ensure_registered_model(
    client: Any, shop: str, role: str, undo: list[Callable[[], None]]
) -> str:
    """The shop's registered model of `role`, created (tagged with shop and role) if new."""
    from mlflow.exceptions import MlflowException

    name = registered_name(shop, role)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={SHOP_TAG: shop, ROLE_TAG: role},
            description=f"Patronage {role} model of shop {shop!r} (docs/training.md)",
        )
        undo.append(partial(client.delete_registered_model, name))
    return name


def _set_model_tag(
    client: Any, name: str, key: str, value: str | None, undo: list[Callable[[], None]]
) -> None:
    """Set (or with None delete) a registered-model tag, remembering how to put it back."""
    previous = (client.get_registered_model(name).tags or {}).get(key)
    if previous == value:
        return
    if value is None:
        client.delete_registered_model_tag(name, key)
    else:
        client.set_registered_model_tag(name, key, value)
    if previous is None:
        undo.append(partial(client.delete_registered_model_tag, name, key))
    else:
        undo.append(partial(client.set_registered_model_tag, name, key, previous))


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _restore_alias(client: Any, name: str, alias: str, version: str | None) -> None:
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # the alias went with the deleted version
    else:
        client.set_registered_model_alias(name, alias, version)


def _restore_champion(client: Any, name: str, previous: Any, history: list[str]) -> None:
    from training.registry import CHAMPION, HISTORY_TAG

    _restore_alias(client, name, CHAMPION, str(previous.version) if previous else None)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
