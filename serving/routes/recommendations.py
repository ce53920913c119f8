"""Storefront routes: recommendations for a customer, cross-sell for a basket, similar items."""

from __future__ import annotations

from typing import Annotated, Any, cast, get_args

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.datastructures import QueryParams

from serving.deps import (
    STOREFRONT_KEY,
    StorefrontDep,
    customer_request,
    hand_checked_openapi,
    json_response,
    loaded_models,
)
from serving.errors import ApiError, ErrorBody
from serving.model_store import RecommendationList, finite_or_none
from serving.schemas import (
    MAX_K,
    CrossSellAnswer,
    CrossSellRequest,
    ExcludePurchased,
    RecommendationsAnswer,
    SimilarItemsAnswer,
)

router = APIRouter(tags=["storefront"])

AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "no or unknown API key"},
    403: {"model": ErrorBody, "description": "API key without the storefront scope"},
    422: {"model": ErrorBody, "description": "invalid parameters; `detail` says what to fix"},
    503: {"model": ErrorBody, "description": "models not loaded yet"},
}
K = Annotated[int, Query(ge=1, le=MAX_K, description="number of items")]


def _items(result: RecommendationList) -> list[dict[str, object]]:
    return [
        {"item_id": item, "score": finite_or_none(float(score))}
        for item, score in zip(result.item_ids, result.scores, strict=True)
    ]


EXCLUDE_CHOICES: tuple[ExcludePurchased, ...] = get_args(ExcludePurchased)
CATEGORY_MAX_LENGTH = 256
RECOMMENDATION_QUERY: tuple[dict[str, Any], ...] = (
    {
        "name": "k",
        "in": "query",
        "required": False,
        "description": "number of items",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_K,
            "default": 10,
            "title": "K",
            "description": "number of items",
        },
    },
    {
        "name": "category",
        "in": "query",
        "required": False,
        "description": "only items of this category (empty: all)",
        "schema": {
            "type": "string",
            "maxLength": CATEGORY_MAX_LENGTH,
            "default": "",
            "title": "Category",
            "description": "only items of this category (empty: all)",
        },
    },
    {
        "name": "exclude_purchased",
        "in": "query",
        "required": False,
        "description": "drop items the customer bought: all, non-repeatable ones, or none",
        "schema": {
            "type": "string",
            "enum": list(EXCLUDE_CHOICES),
            "default": "non-repeatable",
            "title": "Exclude Purchased",
            "description": "drop items the customer bought: all, non-repeatable ones, or none",
        },
    },
)
"""The query of personal recommendations, checked by `_recommendation_query`."""


def _recommendation_query(query: QueryParams) -> tuple[int, str, ExcludePurchased]:
    """(k, category, exclude_purchased) of the query, as `RECOMMENDATION_QUERY` declares them;
    422 saying what to fix otherwise."""
    raw_k = query.get("k")
    k = 10
    if raw_k is not None:
        k = int(raw_k) if raw_k.isascii() and raw_k.isdigit() and len(raw_k) <= 4 else 0
        if not 1 <= k <= MAX_K:
            raise ApiError(
                422,
                "invalid_request",
                f"query.k: give a whole number from 1 to {MAX_K}, not {raw_k!r}",
            )
    category = query.get("category", "")
    if len(category) > CATEGORY_MAX_LENGTH:
        raise ApiError(
            422,
            "invalid_request",
            f"query.category: give at most {CATEGORY_MAX_LENGTH} characters (got {len(category)})",
        )
    exclude = query.get("exclude_purchased", "non-repeatable")
    if exclude not in EXCLUDE_CHOICES:
        raise ApiError(
            422,
            "invalid_request",
            f"query.exclude_purchased: give one of {', '.join(EXCLUDE_CHOICES)}, not {exclude!r}",
        )
    return k, category, cast(ExcludePurchased, exclude)


@router.get(
    "/v1/customers/{customer_id}/recommendations",
    response_model=RecommendationsAnswer,
    responses=AUTH_ERRORS,
    summary="Recommended items for one customer",
    openapi_extra=hand_checked_openapi(*RECOMMENDATION_QUERY),
)
async def customer_recommendations(request: Request) -> Response:
    """Top-k items; an unknown customer gets trending items (strategy `trending`, note
    `new customer`). Items the customer bought in events posted since the model's `as_of` count
    as purchased."""
    services, customer_id = await customer_request(request, STOREFRONT_KEY)
    k, category, exclude_purchased = _recommendation_query(request.query_params)
    models = loaded_models(services)
    just_bought = (
        services.overlay.items_bought_since(customer_id, models.recommender_as_of)
        if exclude_purchased != "none"
        else []
    )
    result = models.recommender.recommend_for(
        customer_id, k, category or None, exclude_purchased, just_bought
    )
    return json_response(
        {
            "customer_id": customer_id,
            "items": _items(result),
            "strategy": result.strategy,
            "note": result.note,
            "model_version": models.version_of("recommender"),
            "excluded_recent_purchases": len(set(just_bought)),
        }
    )


@router.post(
    "/v1/recommendations/cross-sell",
    response_model=CrossSellAnswer,
    responses=AUTH_ERRORS,
    summary="Items that go with a basket",
)
async def cross_sell(body: CrossSellRequest, services: StorefrontDep) -> Response:
    """Top-k items for a basket (anonymous allowed); basket items are never returned. Unknown
    item ids in the basket are ignored; a basket of only unknown items gets trending items."""
    models = loaded_models(services)
    result = models.recommender.cross_sell(body.items, body.customer_id, body.k)
    return json_response(
        {
            "basket": body.items,
            "customer_id": body.customer_id,
            "items": _items(result),
            "strategy": result.strategy,
            "note": result.note,
            "model_version": models.version_of("recommender"),
        }
    )


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=SimilarItemsAnswer,
    responses={**AUTH_ERRORS, 404: {"model": ErrorBody, "description": "unknown item"}},
    summary="Items similar to one item",
)
async def similar_items(
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    services: StorefrontDep,
    k: K = 10,
) -> Response:
    """Top-k items similar to `item_id`; 404 when the model does not know the item."""
    models = loaded_models(services)
    try:
        result = models.recommender.similar(item_id, k)
    except KeyError:
        raise ApiError(
            404,
            "unknown_item",
            f"item {item_id!r} is not in the catalog the recommender "
            f"{models.version_of('recommender')} was trained on",
        ) from None
    return json_response(
        {
            "item_id": item_id,
            "items": _items(result),
            "strategy": result.strategy,
            "note": result.note,
            "model_version": models.version_of("recommender"),
        }
    )
