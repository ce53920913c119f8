"""CRM routes: churn and loyalty of one customer, scores in bulk, segment sizes.

Scores are precomputed for every customer at the model's `as_of` (the fastest honest answer:
the models only see data before `as_of`, so scoring again per request would give the same
numbers). What posted events change honestly without a retrain is added on top: the last order
date and the days from it to `as_of`. Every "days" in these answers counts to `as_of` (which
the answer shows), never to the wall clock: the scores beside it are at `as_of` too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from models.score_columns import CHURN_COLUMNS, LOYALTY_COLUMNS
from serving.deps import (
    CRM_KEY,
    CrmDep,
    customer_request,
    dumps,
    hand_checked_openapi,
    json_bytes_response,
    json_response,
    loaded_models,
)
from serving.errors import ApiError, ErrorBody
from serving.model_store import CustomerScoreTable, RoleNotTrained, ServingModels
from serving.overlay import EventOverlay
from serving.routes.responses import error_responses
from serving.schemas import (
    BatchScoresAnswer,
    BatchScoresRequest,
    ChurnAnswer,
    LoyaltyAnswer,
    SegmentsAnswer,
)

router = APIRouter(tags=["crm"])

CRM_ERRORS = error_responses("crm", "invalid request; `detail` says what to fix")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "the model has no score for this customer"}
}


def _row_or_404(table: CustomerScoreTable, customer_id: str) -> int:
    row = table.row(customer_id)
    if row is None:
        raise ApiError(
            404,
            "unknown_customer",
            f"no score for customer {customer_id!r}: the model scored customers with an order "
            f"before {table.as_of.isoformat()}; new customers are scored by the next "
            "`patronage train`",
        )
    return row


EMPTY_CHURN: dict[str, Any] = {**dict.fromkeys(CHURN_COLUMNS), "churn_reasons": []}
EMPTY_LOYALTY: dict[str, Any] = dict.fromkeys(LOYALTY_COLUMNS)


def _churn_fields(table: CustomerScoreTable | None, row: int | None) -> dict[str, Any]:
    return _fields(table, row, CHURN_COLUMNS, EMPTY_CHURN)


def _loyalty_fields(table: CustomerScoreTable | None, row: int | None) -> dict[str, Any]:
    return _fields(table, row, LOYALTY_COLUMNS, EMPTY_LOYALTY)


def _fields(
    table: CustomerScoreTable | None,
    row: int | None,
    names: tuple[str, ...],
    empty: dict[str, Any],
) -> dict[str, Any]:
    """The `names` columns of one row; `empty` (copied) when there is no table or no row."""
    if table is None or row is None:
        return dict(empty)
    columns = table.columns
    return {name: columns[name][row] for name in names}


def _last_order(
    models: ServingModels, overlay: EventOverlay, customer_id: str, row: int
) -> tuple[str | None, float | None, int]:
    """(last order ISO, days from it to `as_of`, orders posted since `as_of`).

    The days are negative when the last order was posted after `as_of`: they count to the
    table's clock, so `last_order_at` = `as_of` - `days_since_last_order` in every answer."""
    table = models.loyalty
    known = table.columns["last_order_at"][row]
    posted = overlay.orders_since(customer_id, table.as_of)
    latest_posted = overlay.last_order_since(customer_id, table.as_of) if posted else None
    last_iso = latest_posted.isoformat() if latest_posted is not None else known
    if last_iso is None:
        return None, None, posted
    last_seconds = (
        latest_posted.timestamp()
        if latest_posted is not None
        else table.columns["last_order_seconds"][row]
    )
    days = round((table.as_of.timestamp() - last_seconds) / 86400.0, 3)
    return last_iso, days, posted


@router.get(
    "/v1/customers/{customer_id}/churn",
    response_model=ChurnAnswer,
    responses={**CRM_ERRORS, **NOT_FOUND},
    summary="Churn risk of one customer, with reasons",
    openapi_extra=hand_checked_openapi(),
)
async def customer_churn(request: Request) -> Response:
    """Churn probability, risk tier and up to three reasons at the model's `as_of`."""
    services, customer_id = await customer_request(request, CRM_KEY)
    models = loaded_models(services)
    table = models.churn
    row = _row_or_404(table, customer_id)
    body = table.answer_cache[row]
    if body is None:  # the whole answer depends on the loaded model only: render it once
        answer = {"customer_id": customer_id, **_churn_fields(table, row)}
        answer["as_of"] = table.as_of_iso
        answer["model_version"] = models.version_of("churn")
        answer["strategy"] = models.strategies.get("churn", "precomputed-at-as_of")
        body = table.answer_cache[row] = dumps(answer)
    return json_bytes_response(body)


@router.get(
    "/v1/customers/{customer_id}/loyalty",
    response_model=LoyaltyAnswer,
    responses={**CRM_ERRORS, **NOT_FOUND},
    summary="Loyalty score, segment, value and next order of one customer",
    openapi_extra=hand_checked_openapi(),
)
async def customer_loyalty(request: Request) -> Response:
    """Loyalty fields at `as_of`; `last_order_at` and `days_since_last_order` (days from it to
    `as_of`, negative for an order posted after `as_of`) include purchases posted to /v1/events
    since then (the model scores themselves change only on retraining)."""
    services, customer_id = await customer_request(request, CRM_KEY)
    models = loaded_models(services)
    table = models.loyalty
    row = _row_or_404(table, customer_id)
    fixed = table.answer_cache[row]
    if fixed is None:  # the model's part of the answer, rendered once, without its closing brace
        answer = {"customer_id": customer_id, **_loyalty_fields(table, row)}
        answer["as_of"] = table.as_of_iso
        answer["model_version"] = models.version_of("loyalty")
        answer["strategy"] = models.strategies.get("loyalty", "precomputed-at-as_of")
        fixed = table.answer_cache[row] = dumps(answer)[:-1]
    # The part that moves with posted events, added per request.
    last_order_at, days_since, posted = _last_order(models, services.overlay, customer_id, row)
    moving = dumps(
        {
            "last_order_at": last_order_at,
            "days_since_last_order": days_since,
            "orders_posted_since_as_of": posted,
        }
    )
    return json_bytes_response(fixed + b"," + moving[1:])


@router.post(
    "/v1/customers/scores:batch",
    response_model=BatchScoresAnswer,
    responses=CRM_ERRORS,
    summary="Churn and loyalty scores of up to 1,000 customers",
)
async def batch_scores(body: BatchScoresRequest, services: CrmDep) -> Response:
    """Scores in request order (a repeated id answered once); ids without a score are listed in
    `unknown_customer_ids` instead of failing the whole batch. A shop without a churn (or a
    loyalty) model gets the other's fields, nulls for the missing ones, and why in
    `unavailable`; without either, 503 `role_not_trained`."""
    if len(body.customer_ids) > services.settings.max_batch_customers:
        raise ApiError(
            422,
            "batch_too_large",
            f"send at most {services.settings.max_batch_customers} customer_ids per request",
        )
    models = loaded_models(services)
    unavailable = {r: why for r, why in models.unavailable.items() if r in ("churn", "loyalty")}
    if len(unavailable) == 2:
        raise RoleNotTrained("churn", unavailable["churn"])
    churn = None if "churn" in unavailable else models.churn
    loyalty = None if "loyalty" in unavailable else models.loyalty
    scores, unknown, seen = [], [], set()
    for customer_id in body.customer_ids:
        if customer_id in seen:
            continue
        seen.add(customer_id)
        churn_row = None if churn is None else churn.row(customer_id)
        loyalty_row = None if loyalty is None else loyalty.row(customer_id)
        if churn_row is None and loyalty_row is None:
            unknown.append(customer_id)
            continue
        scores.append(
            {
                "customer_id": customer_id,
                **_churn_fields(churn, churn_row),
                **_loyalty_fields(loyalty, loyalty_row),
            }
        )
    return json_response(
        {
            "scores": scores,
            "unknown_customer_ids": unknown,
            "as_of": (churn or loyalty).as_of_iso,  # type: ignore[union-attr]
            "model_versions": {
                role: None if role in unavailable else models.version_of(role)
                for role in ("churn", "loyalty")
            },
            "unavailable": unavailable,
        }
    )


@router.get(
    "/v1/segments",
    response_model=SegmentsAnswer,
    responses=CRM_ERRORS,
    summary="Loyalty segment sizes and thresholds",
)
async def segments(services: CrmDep) -> Response:
    """Every segment with its number of customers, share, loyalty-score range and rule."""
    models = loaded_models(services)
    return json_response(
        {
            "segments": list(models.loyalty.segments),
            "customers": len(models.loyalty),
            "as_of": models.loyalty.as_of_iso,
            "model_version": models.version_of("loyalty"),
            "strategy": models.strategies.get("loyalty", "precomputed-at-as_of"),
        }
    )
