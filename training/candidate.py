"""One model about to be logged and registered, with its backtest, and the backtest's identity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from training.options import TrainOptions
from training.registry import CHURN, LOYALTY, RECOMMENDER
from training.shop_data import DataSummary

BACKTEST_VERSION = 1
"""Bumped when the backtest definition changes, so recorded metrics stop counting as equal."""


KEY_METRICS: dict[str, tuple[str, ...]] = {
    RECOMMENDER: ("ndcg_at_10", "recall_at_10", "discovery_ndcg_at_10"),
    CHURN: ("roc_auc", "average_precision", "brier", "ece"),
    LOYALTY: ("orders_spearman", "orders_mae"),
}
"""Metrics copied onto each registered version as tags (listed by `patronage models`)."""


@dataclass
class Candidate:
    """One model about to be logged and registered, with its backtest."""

    name: str
    python_model: Any
    artifacts: dict[str, str]
    input_example: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    backtest_key: str
    cut: pd.Timestamp
    evaluate_champion: Callable[[Any], dict[str, float]]
    predict_params: dict[str, Any] | None = None
    backtest_dir: str = ""
    """Local directory of the backtest model (fitted before `cut`), logged with the run."""
    backtest_loader: Callable[[Path], Any] | None = None
    """Reads a logged backtest model into an object `evaluate_champion` accepts."""
    backtest_model_uri: str = ""
    champion_metrics: dict[str, float] | None = None
    comparison: str = ""
    model_uri: str = ""
    model_id: str = ""
    beats_baseline: bool = True
    baseline_note: str = ""
    champion_beats_baseline: bool | None = None
    fit_params: dict[str, Any] = field(default_factory=dict)
    """Choices the final fit made on its own validation window, logged as run parameters
    `NAME.KEY` (the recommender's next-need weights and default `exclude_purchased` rule)."""
    fit_metrics: dict[str, float] = field(default_factory=dict)
    """Validation figures behind those choices, logged as run metrics `fit.NAME.KEY`."""


def backtest_key(
    data: DataSummary, name: str, cut: pd.Timestamp, end: pd.Timestamp, options: TrainOptions
) -> str:
    """Identity of a backtest: same data, window and settings give the same key."""
    spec = {
        "v": BACKTEST_VERSION,
        "model": name,
        "data": data.sha256,
        "cut": cut.isoformat(),
        "end": end.isoformat(),
        "horizon": options.churn_horizon_days,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
