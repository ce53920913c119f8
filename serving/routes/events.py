"""CRM route: post purchases, feedback and item updates; appended durably to the event log
before the 201."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from features.contract import FEEDBACK, ITEMS, PURCHASES
from serving.deps import CrmDep, json_response
from serving.errors import ApiError, ErrorBody
from serving.events import contract_rejects, validate_event_rows
from serving.schemas import EventsAnswer, EventsRequest

router = APIRouter(tags=["crm"])


@router.post(
    "/v1/events",
    response_model=EventsAnswer,
    status_code=201,
    responses={
        401: {"model": ErrorBody, "description": "no or unknown API key"},
        403: {"model": ErrorBody, "description": "API key without the crm scope"},
        422: {
            "model": ErrorBody,
            "description": "a row breaks the data contract; `rejected` lists each row and why; "
            "nothing was written",
        },
        503: {"model": ErrorBody, "description": "the event log could not be written"},
    },
    summary="Record purchases, feedback and item updates (one or many)",
)
async def post_events(body: EventsRequest, services: CrmDep) -> Response:
    """Validate every row with the data contract's rules; if any row breaks them, answer 422
    listing each rejected row and write nothing. Otherwise append all rows to the event log,
    fsync, and answer 201. Purchases leave the customer's recommendations at once; an item
    posted with `available: false` leaves every recommendation answer at once."""
    settings = services.settings
    total = len(body.purchases) + len(body.feedback) + len(body.items)
    if total == 0:
        raise ApiError(
            422, "no_events", "send at least one row in `purchases`, `feedback` or `items`"
        )
    if total > settings.max_events_per_request:
        raise ApiError(
            422,
            "too_many_events",
            f"send at most {settings.max_events_per_request} rows per request",
        )
    received_at = datetime.now(UTC)
    purchases, rejected = validate_event_rows(
        PURCHASES,
        [p.model_dump() for p in body.purchases],
        received_at,
        settings.future_tolerance_seconds,
    )
    feedback, rejected_feedback = validate_event_rows(
        FEEDBACK,
        [f.model_dump() for f in body.feedback],
        received_at,
        settings.future_tolerance_seconds,
    )
    items, rejected_items = validate_event_rows(
        ITEMS,
        [i.model_dump() for i in body.items],
        received_at,
        settings.future_tolerance_seconds,
    )
    rejected += rejected_feedback + rejected_items
    if not rejected:
        # The contract's own validation, as `patronage validate` runs it, has the last word.
        latest = received_at + timedelta(seconds=settings.future_tolerance_seconds)
        rejected = await run_in_threadpool(
            contract_rejects,
            [p.model_dump() for p in body.purchases],
            [f.model_dump() for f in body.feedback],
            latest,
            [i.model_dump() for i in body.items],
        )
    if rejected:
        raise ApiError(
            422,
            "events_rejected",
            f"{len(rejected)} of {total} rows break the data contract; fix them and resend "
            "the request (nothing was written): "
            + "; ".join(f"{r.table}[{r.row}]: {r.reason}" for r in rejected[:5]),
            rejected=[r.to_json() for r in rejected],
        )
    try:
        path = await run_in_threadpool(
            services.event_log.append, purchases, feedback, received_at, items
        )
    except OSError as error:
        raise ApiError(
            503, "event_log_unavailable", f"could not write the event log: {error.strerror}"
        ) from None
    services.overlay.add_purchases(purchases)
    services.overlay.add_items(items, received_at)
    services.metrics.events.labels("purchase").inc(len(purchases))
    services.metrics.events.labels("feedback").inc(len(feedback))
    services.metrics.events.labels("item").inc(len(items))
    return json_response(
        {
            "accepted_purchases": len(purchases),
            "accepted_feedback": len(feedback),
            "accepted_items": len(items),
            "received_at": received_at.isoformat(),
            "log_file": path.name,
        },
        status=201,
    )
