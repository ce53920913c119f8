"""The typed hand-offs between training's stages: what each role's backtest and fit read, and
what the backtests hand to logging and registration (data -> backtests -> log -> registry)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from training.candidate import Candidate
from training.options import TrainOptions
from training.progress import Progress
from training.shop_data import DataSummary, TrainingData

if TYPE_CHECKING:
    from features.shop import Shop
    from training.report import EvaluationReport


@dataclass(frozen=True)
class RoleInputs:
    """What each role's backtest and final fit read (`recommender_role`, `customer_roles`): the
    shop before `as_of` (UTC), its summary, the options, a scratch directory for artifacts, and
    the progress line and report the role adds to."""

    shop: Shop
    as_of: pd.Timestamp
    data: DataSummary
    options: TrainOptions
    workdir: Path
    progress: Progress
    report: EvaluationReport

    @classmethod
    def of(
        cls,
        training: TrainingData,
        options: TrainOptions,
        workdir: Path,
        progress: Progress,
        report: EvaluationReport,
    ) -> RoleInputs:
        """The inputs of every role for the loaded `training` data."""
        return cls(
            training.shop, training.as_of, training.summary, options, workdir, progress, report
        )


@dataclass(frozen=True)
class Backtests:
    """The backtest stage's result: a candidate per role the data carries (backtested beside
    its baselines, fitted on all data), the roles skipped with the sentence saying why, and
    the evaluation report logged with the run."""

    candidates: list[Candidate]
    skipped: dict[str, str]
    report: EvaluationReport
