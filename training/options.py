"""The arguments of `patronage train` and its two ways to stop: the whole run (`TrainingFailed`,
registry intact) or one role the data cannot carry (`RoleSkipped`, the other roles go on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.registry_names import ROLES


class TrainingFailed(RuntimeError):
    """Training stopped; the registry is as it was. The message says why and what to do."""


class RoleSkipped(ValueError):
    """The shop's data cannot carry one role; the message is one plain sentence saying why and
    what would make it possible. The other roles still train."""


@dataclass(frozen=True)
class TrainOptions:
    """Arguments of `patronage train` (see its --help)."""

    directory: str | Path
    as_of: str | pd.Timestamp | None = None
    churn_horizon_days: int = 90
    value_horizon_days: int = 90
    """The horizon the spend forecast is chosen (and a learned one fitted) for; 0: keep BG/NBD
    x Gamma-Gamma without a backtest (docs/churn-and-loyalty.md)."""
    recommendation_window_days: int = 30
    experiment: str = "patronage"
    seed: int = 0
    time_budget_s: float = 30.0
    force: bool = False
    max_reject_rate: float = 0.01
    rejects_dir: str | Path | None = None
    """Where the rejected rows and their reasons go (None: `directory/_rejects/`)."""
    progress: bool = True
    tracking_uri: str | None = None
    extra_purchases: pd.DataFrame | None = None
    """Purchases received since the files were written (the serving event log), canonical types."""
    extra_feedback: pd.DataFrame | None = None
    extra_items: pd.DataFrame | None = None
    """The latest posted row of each item (`features.event_log.read_item_updates`): catalog changes
    such as `available: false`, applied over the files' items table."""
    events_source: str = ""
    shop: str | None = None
    """The shop's name in the registry (None: the data directory's name)."""
    roles: tuple[str, ...] = ROLES
    """The roles to train (recommender, churn, loyalty)."""
