"""Storefront routes: recommendations for a customer, cross-sell for a basket, an anonymous
session's items, similar items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from features.contract import MAX_ID_LENGTH
from serving.deps import (
    STOREFRONT_KEY,
    StorefrontDep,
    checked_query,
    customer_request,
    hand_checked_openapi,
    json_response,
)
from serving.errors import ApiError, ErrorBody
from serving.recommendation_answers import answer_fields, answering_models
from serving.routes.responses import error_responses
from serving.schemas import (
    MAX_K,
    CrossSellAnswer,
    CrossSellRequest,
    RecommendationQuery,
    RecommendationsAnswer,
    SessionAnswer,
    SessionRequest,
    SimilarItemsAnswer,
)

router = APIRouter(tags=["storefront"])

AUTH_ERRORS = error_responses("storefront")
K = Annotated[int, Query(ge=1, le=MAX_K, description="number of items")]


@router.get(
    "/v1/customers/{customer_id}/recommendations",
    response_model=RecommendationsAnswer,
    responses=AUTH_ERRORS,
    summary="Recommended items for one customer",
    openapi_extra=hand_checked_openapi(RecommendationQuery),
)
async def customer_recommendations(request: Request) -> Response:
    """Top-k items; an unknown customer gets trending items (strategy `trending`, note
    `new customer`). Purchases, views and carts posted since the model's `as_of` join the
    customer's history at once: the model scores the updated row (factor models re-solve the
    customer's vector), so what goes with them moves up. Items bought since count as
    purchased; `excluded_recent_purchases` counts those the rule leaves out of this list."""
    services, customer_id = await customer_request(request, STOREFRONT_KEY)
    query = checked_query(RecommendationQuery, request)
    k, category, exclude_purchased = query.k, query.category, query.exclude_purchased
    models, variant = answering_models(services, customer_id)
    just_bought = services.overlay.items_bought_since(customer_id, models.recommender_as_of)
    interactions = services.overlay.interactions_since(customer_id, models.recommender_as_of)
    # `none`: bought items stay in the list, yet still tell the model what goes with them.
    result = models.recommender.recommend_for(
        customer_id, k, category or None, exclude_purchased, just_bought, interactions
    )
    excluded = 0
    # Only the model knows which bought items its rule keeps (a repeatable one may stay at rank
    # 1; `none`, or a shop whose learned default is `none`, keeps them all): the items left out
    # are those of them the same question without the posted purchases shows and this answer
    # does not. Asked again only when the rule leaves out one of the items bought since.
    left_out = (
        models.recommender.left_out_when_bought(just_bought, exclude_purchased)
        if just_bought
        else frozenset()
    )
    if left_out:
        without = models.recommender.recommend_for(
            customer_id, k, category or None, exclude_purchased, []
        )
        shown = set(result.item_ids)
        excluded = len({i for i in without.item_ids if i in left_out and i not in shown})
    return json_response(
        {
            "customer_id": customer_id,
            **answer_fields(models, variant, "personal", result),
            "excluded_recent_purchases": excluded,
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
    item ids in the basket are ignored; a basket of only unknown items gets trending items.
    With a `customer_id`, that customer's variant answers; an anonymous basket, the champion."""
    models, variant = answering_models(services, body.customer_id)
    result = models.recommender.cross_sell(body.items, body.customer_id, body.k)
    return json_response(
        {
            "basket": body.items,
            "customer_id": body.customer_id,
            **answer_fields(models, variant, "cross_sell", result),
        }
    )


@router.post(
    "/v1/recommendations/session",
    response_model=SessionAnswer,
    responses=AUTH_ERRORS,
    summary="Items for an anonymous session",
)
async def session_recommendations(body: SessionRequest, services: StorefrontDep) -> Response:
    """Top-k items for a visitor without a customer id, from the items they viewed or carted in
    this session (oldest first) alone: item-based, the later items weighing more (an item's
    weight halves every 3 places from the end). The session's items never come back; ids the
    model does not know are listed in `unknown_items` and ignored; a session of only unknown
    items gets trending items (note says so). With a `session_id`, that session's variant
    answers; without one, the champion."""
    models, variant = answering_models(services, body.session_id)
    found = models.recommender.session(body.items, body.k)
    return json_response(
        {
            "session_id": body.session_id,
            "session_items": body.items,
            "unknown_items": list(found.unknown_items),
            **answer_fields(models, variant, "session", found.answer),
        }
    )


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=SimilarItemsAnswer,
    responses={**AUTH_ERRORS, 404: {"model": ErrorBody, "description": "unknown item"}},
    summary="Items similar to one item",
)
async def similar_items(
    item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    services: StorefrontDep,
    k: K = 10,
) -> Response:
    """Top-k items similar to `item_id`; 404 when the model does not know the item. No shopper
    is named, so the champion answers."""
    models, variant = answering_models(services, None)
    try:
        result = models.recommender.similar(item_id, k)
    except KeyError:
        raise ApiError(
            404,
            "unknown_item",
            f"item {item_id!r} is not in the catalog the recommender "
            f"{models.version_of('recommender')} was trained on",
        ) from None
    return json_response({"item_id": item_id, **answer_fields(models, variant, "similar", result)})
