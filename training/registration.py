"""Registering a training's versions in the shop's namespace, all or nothing: an undo list puts
every alias, tag and version back when the registry fails mid-way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NoReturn

import pandas as pd

from models.registry_names import (
    AS_OF_TAG,
    BACKTEST_CUT_TAG,
    BACKTEST_KEY_TAG,
    BACKTEST_MODEL_URI_TAG,
    BASELINE_NOTE_TAG,
    BASELINE_TAG,
    DATA_SHA256_TAG,
    DECISION_TAG,
    METRIC_TAG_PREFIX,
    REASON_TAG,
    ROLE_TAG,
    ROWS_TAG,
    SEED_TAG,
    SHOP_TAG,
    SKIPPED_TAG,
    SOURCE_TAG,
    registered_name,
)
from training.candidate import KEY_METRICS, Candidate
from training.options import TrainingFailed, TrainOptions
from training.promotion import Decision
from training.registry import CHALLENGER, champion_history, champion_version, set_champion
from training.shop_data import DataSummary

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


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
    client: MlflowClient,
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
    transaction = RegistryTransaction(client)
    try:
        decisions = [_decide(candidate, options) for candidate in candidates]
        for role, reason in skipped.items():
            name = transaction.registered_model(shop, role)
            transaction.set_model_tag(name, SKIPPED_TAG, reason[:5000])
        return [
            _register_candidate(
                transaction,
                shop,
                candidate,
                decision,
                run_id,
                _version_tags(candidate, decision, as_of, data, options),
            )
            for candidate, decision in zip(candidates, decisions, strict=True)
        ]
    except Exception as error:
        transaction.roll_back(error)


def _decide(candidate: Candidate, options: TrainOptions) -> Decision:
    """The promotion rule applied to one candidate (`training.promotion.decide`)."""
    from training.promotion import decide

    return decide(
        candidate.name,
        candidate.metrics,
        candidate.champion_metrics,
        force=options.force,
        comparison=candidate.comparison,
        beats_baseline=candidate.beats_baseline,
        champion_beats_baseline=candidate.champion_beats_baseline,
    )


def _version_tags(
    candidate: Candidate,
    decision: Decision,
    as_of: pd.Timestamp,
    data: DataSummary,
    options: TrainOptions,
) -> dict[str, str]:
    """The tags of a new version: what it was trained on, its backtest, the decision and its
    key metrics (read by champion comparison, `patronage models` and the server)."""
    return {
        AS_OF_TAG: as_of.isoformat(),
        BACKTEST_KEY_TAG: candidate.backtest_key,
        BACKTEST_CUT_TAG: candidate.cut.isoformat(),
        BACKTEST_MODEL_URI_TAG: candidate.backtest_model_uri,
        DATA_SHA256_TAG: data.sha256,
        SEED_TAG: str(options.seed),
        DECISION_TAG: decision.decision,
        REASON_TAG: decision.reason[:5000],
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


def _register_candidate(
    transaction: RegistryTransaction,
    shop: str,
    candidate: Candidate,
    decision: Decision,
    run_id: str,
    tags: dict[str, str],
) -> ModelOutcome:
    """One candidate's version, alias `challenger`, and `champion` when the decision says so."""
    client = transaction.client
    name = transaction.registered_model(shop, candidate.name)
    transaction.set_model_tag(name, SKIPPED_TAG, None)
    previous_challenger = _alias_version(client, name, CHALLENGER)
    previous_champion = champion_version(client, name)
    previous_history = champion_history(client, name)
    number = transaction.add_version(name, candidate, run_id, tags)
    transaction.set_alias(name, CHALLENGER, number, previous_challenger)
    if decision.promote:
        transaction.set_champion(name, number, decision, previous_champion, previous_history)
        champion = number
    else:
        champion = str(previous_champion.version) if previous_champion else "-"
    return ModelOutcome(
        candidate.name,
        number,
        decision.decision,
        decision.reason,
        champion,
        dict(candidate.metrics),
        candidate.beats_baseline,
        candidate.baseline_note,
    )


class RegistryTransaction:
    """Registry writes that can be taken back: each write records how to put the registry as it
    was, and `roll_back` does so, newest first."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self._undo: list[Callable[[], None]] = []

    def registered_model(self, shop: str, role: str) -> str:
        """The shop's registered model of `role`, created (tagged with shop and role) if new."""
        from mlflow.exceptions import MlflowException

        name = registered_name(shop, role)
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name,
                tags={SHOP_TAG: shop, ROLE_TAG: role},
                description=f"Patronage {role} model of shop {shop!r} (docs/training.md)",
            )
            self._undo.append(partial(self.client.delete_registered_model, name))
        return name

    def set_model_tag(self, name: str, key: str, value: str | None) -> None:
        """Set (or with None delete) a registered-model tag."""
        client = self.client
        previous = (client.get_registered_model(name).tags or {}).get(key)
        if previous == value:
            return
        if value is None:
            client.delete_registered_model_tag(name, key)
        else:
            client.set_registered_model_tag(name, key, value)
        if previous is None:
            self._undo.append(partial(client.delete_registered_model_tag, name, key))
        else:
            self._undo.append(partial(client.set_registered_model_tag, name, key, previous))

    def add_version(
        self, name: str, candidate: Candidate, run_id: str, tags: dict[str, str]
    ) -> str:
        """A new version of `name` from the candidate's logged model; returns its number."""
        # A tracking server wants the logged model's id beside a models:/ source.
        version = self.client.create_model_version(
            name,
            candidate.model_uri,
            run_id=run_id,
            tags=tags,
            model_id=candidate.model_id or None,
        )
        number = str(version.version)
        self._undo.append(partial(self.client.delete_model_version, name, number))
        return number

    def set_alias(self, name: str, alias: str, version: str, previous: str | None) -> None:
        """Point `alias` at `version` (`previous`: the version it pointed at, None: none)."""
        self._undo.append(partial(_restore_alias, self.client, name, alias, previous))
        self.client.set_registered_model_alias(name, alias, version)

    def set_champion(
        self,
        name: str,
        version: str,
        decision: Decision,
        previous: ModelVersion | None,
        history: list[str],
    ) -> None:
        """Move `champion` to `version` (`previous` and `history`: the champion and its
        history before this run)."""
        self._undo.append(partial(_restore_champion, self.client, name, previous, history))
        set_champion(self.client, name, version, decision.decision, decision.reason)

    def roll_back(self, error: Exception) -> NoReturn:
        """Undo every write so far (newest first, going on past failures) and raise
        `TrainingFailed` saying what went wrong."""
        problems = []
        for step in reversed(self._undo):
            try:
                step()
            except Exception as undo_error:  # keep undoing the rest
                problems.append(_first_line(undo_error))
        extra = f" (undo also failed: {'; '.join(problems)})" if problems else ""
        raise TrainingFailed(
            f"registering the models failed ({type(error).__name__}: {_first_line(error)}); "
            f"the registry was put back as it was{extra}"
        ) from error


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _restore_alias(client: MlflowClient, name: str, alias: str, version: str | None) -> None:
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass  # the alias went with the deleted version
    else:
        client.set_registered_model_alias(name, alias, version)


def _restore_champion(
    client: MlflowClient, name: str, previous: ModelVersion | None, history: list[str]
) -> None:
    from training.registry import CHAMPION, HISTORY_TAG

    _restore_alias(client, name, CHAMPION, str(previous.version) if previous else None)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
