"""Champion and challenger on real traffic: which shopper gets which, and the challenger's models.

With `PATRONAGE_CHALLENGER_SHARE` above 0, that share of shoppers is answered by the shop's
`@challenger` recommender when it exists and differs from the champion. A shopper's variant is a
pure function of their id (customer id, or session id for anonymous visitors): the first 8 bytes
of its BLAKE2b digest as a number in [0, 1), below the share means challenger. It is the same in
every worker process and after every restart (never Python's `hash()`, which is salted per
process), so a shopper never switches variant while the share and the challenger stay.

`ChallengerSource` is a `ModelSource` for a second `ModelStore`: it loads only the recommender
at the `challenger` alias (polled like the champion), and nothing when that alias is missing or
points at the champion's version (then everyone gets the champion, named as such).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from features.recommendation_ids import Variant
from models.registry_names import CHALLENGER_ALIAS, RECOMMENDER, Role

if TYPE_CHECKING:  # the split itself needs none of them (a light import for every worker)
    from serving.mlflow_source import MlflowModelSource
    from serving.model_store import ModelStore, ServingModels

BUCKETS = 2**64


def challenger_fraction(shopper_id: str) -> float:
    """The shopper's fixed place in [0, 1): BLAKE2b (8-byte digest) of the UTF-8 id."""
    digest = hashlib.blake2b(shopper_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / BUCKETS


def assigned_variant(shopper_id: str | None, share: float) -> Variant:
    """`challenger` for the `share` (0 to 1) of shoppers whose fraction falls below it, else
    `champion`; a request without a shopper id is the champion's."""
    if share <= 0 or shopper_id is None:
        return "champion"
    return "challenger" if challenger_fraction(shopper_id) < share else "champion"


def challenger_models(store: ModelStore | None) -> ServingModels | None:
    """The challenger's snapshot when one is loaded with a recommender, else None."""
    models = None if store is None else store.current
    if models is None or RECOMMENDER not in models.versions:
        return None
    return models


class ChallengerSource:
    """Loads the shop's `@challenger` recommender (not churn or loyalty: only recommendation
    answers are split) through the champion's `MlflowModelSource` machinery."""

    def __init__(self, source: MlflowModelSource) -> None:
        self.source = source

    def champion_versions(self) -> dict[Role, str]:
        """`{"recommender": version}` of the challenger, or `{}` when there is none or it is
        the version the champion alias serves."""
        challenger = self.source.alias_version(RECOMMENDER, CHALLENGER_ALIAS)
        champion = self.source.alias_version(RECOMMENDER, self.source.settings.model_alias)
        if challenger is None or challenger == champion:
            return {}
        return {RECOMMENDER: challenger}

    def load(self, versions: Mapping[Role, str], previous: ServingModels | None) -> ServingModels:
        """The challenger's snapshot (its churn and loyalty are served as unavailable)."""
        self.source.unavailable = {
            role: "only the recommender is served as challenger" for role in ("churn", "loyalty")
        }
        if RECOMMENDER not in versions:
            self.source.unavailable[RECOMMENDER] = "no challenger distinct from the champion"
        return self.source.load(versions, previous)
