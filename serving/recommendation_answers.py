"""What every recommendation answer shares: which models answer a shopper, and the fields that
name the answer (items, strategy, note, model version, variant, recommendation id).

Every recommendation route (personal, session, cross-sell, similar) picks its models with
`answering_models` and builds its answer with `answer_fields`, so that each answer carries a
fresh `recommendation_id` (`features.recommendation_ids`: it names the model version, route,
strategy and variant, for the online metrics) and the `variant` that produced it. The hot-path
cost is one random id and, when a challenger share is set, one BLAKE2b hash of the shopper id.
"""

from __future__ import annotations

from typing import Any

from features.recommendation_ids import Route, Variant, new_recommendation_id
from serving.challenger import assigned_variant, challenger_models
from serving.deps import Services, loaded_models
from serving.model_store import RecommendationList, ServingModels, finite_or_none


def answering_models(services: Services, shopper_id: str | None) -> tuple[ServingModels, Variant]:
    """The snapshot that answers this shopper (customer or session id; None: anonymous) and
    its variant: the challenger's when the shopper falls in `challenger_share` and a distinct
    `@challenger` recommender is loaded, else the champion's (503 before the first load)."""
    models = loaded_models(services)
    share = services.settings.challenger_share
    if share > 0 and assigned_variant(shopper_id, share) == "challenger":
        challenger = challenger_models(services.challenger)
        if challenger is not None:
            return challenger, "challenger"
    return models, "champion"


def recommended_items(result: RecommendationList) -> list[dict[str, object]]:
    """The answer's `items`: item id and score (null when not finite), best first."""
    return [
        {"item_id": item, "score": finite_or_none(float(score))}
        for item, score in zip(result.item_ids, result.scores, strict=True)
    ]


def answer_fields(
    models: ServingModels, variant: Variant, route: Route, result: RecommendationList
) -> dict[str, Any]:
    """The fields every recommendation answer has: `items`, `strategy`, `note`,
    `model_version`, `variant` and a new `recommendation_id`."""
    version = models.version_of("recommender")
    return {
        "items": recommended_items(result),
        "strategy": result.strategy,
        "note": result.note,
        "model_version": version,
        "variant": variant,
        "recommendation_id": new_recommendation_id(variant, route, version, result.strategy),
    }
