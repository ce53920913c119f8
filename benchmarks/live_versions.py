"""The two recommender versions the shopper simulation serves: a plain popularity champion and
the trained model as challenger, registered in the shop's MLflow store.

The popularity version is the trained bundle with its personal, repeat and cross-sell roles
replaced by `PopularityRecommender` (every customer sees the same best sellers by number of
buyers, minus what the business rules exclude; what goes with a purchase is popularity too),
so the two versions differ only in what is learned. It is logged and registered like any
version (a pyfunc `RecommenderModel` with the bundle as its artifact), then `@champion` moves to
it and `@challenger` to the trained version.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.registry_names import CHALLENGER_ALIAS, CHAMPION_ALIAS, registered_name

if TYPE_CHECKING:
    from models.recommenders.bundle import RecommenderBundle

POPULARITY_TAG = "patronage.bench.live"
"""Version tag marking the popularity version this benchmark registered (reused on a rerun)."""


@dataclass(frozen=True)
class LiveVersions:
    """Registered version numbers of the recommender: champion (popularity), challenger."""

    champion: str
    challenger: str


def popularity_bundle(trained: RecommenderBundle) -> RecommenderBundle:
    """The trained `RecommenderBundle` with popularity in the discovery, repeat and cross-sell
    roles (fitted on its all-time history; items not sold at `as_of` masked as in training)."""
    from features.interactions import Interactions
    from models.recommenders.popularity import PopularityRecommender

    history = Interactions(trained.history["hinf"], trained.customer_ids, trained.item_ids)
    popularity = PopularityRecommender().fit(history).for_available(trained.rules.available)
    roles = ("discovery", "repeat", "cross_sell")
    return replace(
        trained,
        models={**trained.models, **dict.fromkeys(roles, popularity)},
        model_history={**trained.model_history, **dict.fromkeys(roles, "hinf")},
        strategies={**trained.strategies, **dict.fromkeys(roles, "popularity")},
        report={"note": "plain popularity: the shopper simulation's champion"},
    )


def register_live_versions(tracking_uri: str, shop: str) -> LiveVersions:
    """Register the popularity version beside the trained champion (once per store) and point
    `@champion` at it and `@challenger` at the trained version."""
    import mlflow
    from mlflow import MlflowClient

    name = registered_name(shop, "recommender")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    earlier = [
        v for v in client.search_model_versions(f"name='{name}'") if POPULARITY_TAG in v.tags
    ]
    if earlier:
        popular = str(earlier[0].version)
        trained = earlier[0].tags[POPULARITY_TAG]
    else:
        trained = str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
        popular = _register_popularity(tracking_uri, name, trained)
        client.set_model_version_tag(name, popular, POPULARITY_TAG, trained)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, popular)
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, trained)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    return LiveVersions(champion=popular, challenger=trained)


def _register_popularity(tracking_uri: str, name: str, trained_version: str) -> str:
    """Log the popularity bundle as a pyfunc model in its own run and register it; its version."""
    import mlflow

    from models.pyfunc import RecommenderModel
    from training.run_logging import pip_requirements

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    wrapper = mlflow.pyfunc.load_model(f"models:/{name}/{trained_version}")
    bundle = popularity_bundle(wrapper.unwrap_python_model().bundle)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as scratch:
        directory = Path(scratch) / "bundle"
        bundle.save(directory)
        with mlflow.start_run(run_name="popularity champion (benchmarks.live)"), _quiet():
            info = mlflow.pyfunc.log_model(
                name="recommender",
                python_model=RecommenderModel(),
                artifacts={"bundle": str(directory)},
                pip_requirements=pip_requirements(),
            )
    return str(mlflow.register_model(info.model_uri, name).version)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's generic advice on logging a Python object (answered by `check_model_dir` when
    the server loads it) and on a missing signature, silenced as training does."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
