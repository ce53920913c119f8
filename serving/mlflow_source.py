"""Loads the champion models from the MLflow registry into a `ServingModels` snapshot.

Only this module imports mlflow (lazily), and only the model store's background thread calls it:
nothing on the request path touches MLflow or disk.
"""

from __future__ import annotations

from collections.abc import Mapping

from serving.config import Settings
from serving.model_store import Role, ServingModels


class MlflowModelSource:
    """Reads `@champion` versions of the three registered models."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def champion_versions(self) -> dict[Role, str]:
        """The version holding the alias for each role."""
        raise NotImplementedError

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """Load those versions into a new snapshot."""
        raise NotImplementedError
