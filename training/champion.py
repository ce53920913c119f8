"""The shop's current champion measured on a candidate's own backtest (four cases, best first)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.registry_names import (
    AS_OF_TAG,
    BACKTEST_CUT_TAG,
    BACKTEST_KEY_TAG,
    BACKTEST_MODEL_URI_TAG,
    beats_baseline,
    recorded_metrics,
    registered_name,
)
from training.candidate import Candidate
from training.registry import champion_version

if TYPE_CHECKING:
    from mlflow import MlflowClient


def compare_with_champion(client: MlflowClient, candidate: Candidate, shop: str) -> None:
    """Fill `champion_metrics` and `comparison`: the champion on this candidate's backtest.

    In order of preference:
    1. same backtest key (same data, window, settings): the champion's recorded metrics are
       exactly what re-running its backtest gives;
    2. champion fitted at or before this cut: the served champion itself is evaluated on this
       window (out of sample for it);
    3. champion's own backtest model (fitted before its cut, which is at or before this one):
       evaluated on this window, the champion's procedure on the same backtest, leak-free;
    4. otherwise (a champion from a later as_of): its recorded backtest, and the reason says so.

    Only the same shop's champion is looked at."""
    name = registered_name(shop, candidate.name)
    champion = champion_version(client, name)
    if champion is None:
        return
    version = str(champion.version)
    tags = champion.tags or {}
    candidate.champion_beats_baseline = beats_baseline(tags)
    recorded = recorded_metrics(champion.tags or {})
    if tags.get(BACKTEST_KEY_TAG) == candidate.backtest_key:
        candidate.champion_metrics = recorded
        candidate.comparison = f"same backtest as champion v{version}"
        return
    problems = []
    champion_as_of = tags.get(AS_OF_TAG)
    if champion_as_of and pd.Timestamp(champion_as_of) <= candidate.cut:
        try:
            import mlflow.pyfunc

            loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            candidate.champion_metrics = candidate.evaluate_champion(loaded.unwrap_python_model())
            candidate.comparison = f"champion v{version} evaluated on this backtest window"
            return
        except Exception as error:  # a broken champion must not block training
            problems.append(f"loading it failed ({type(error).__name__}: {str(error)[:200]})")
    champion_cut = tags.get(BACKTEST_CUT_TAG)
    backtest_uri = tags.get(BACKTEST_MODEL_URI_TAG)
    if (
        backtest_uri
        and champion_cut
        and candidate.backtest_loader is not None
        and pd.Timestamp(champion_cut) <= candidate.cut
    ):
        try:
            import mlflow

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=backtest_uri))
            model = candidate.backtest_loader(local)
            candidate.champion_metrics = candidate.evaluate_champion(model)
            candidate.comparison = (
                f"backtest model of champion v{version} (fitted before {champion_cut}) "
                "evaluated on this backtest window"
            )
            return
        except Exception as error:
            problems.append(
                f"its backtest model failed ({type(error).__name__}: {str(error)[:200]})"
            )
    candidate.champion_metrics = recorded
    why = "; ".join(problems) or "it has no leak-free model for this window"
    candidate.comparison = (
        f"champion v{version}: {why}; compared with its recorded backtest on its own window"
    )
