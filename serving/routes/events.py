"""CRM route: post purchases, feedback, item updates, views and carts, impressions and clicks;
stored durably (the event log, or the PostgreSQL event store) before the 201."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from features.contract import CLICKS, FEEDBACK, IMPRESSIONS, INTERACTIONS, ITEMS, PURCHASES, Table
from features.event_log import EVENT_KINDS, EventBatch, event_of
from features.posted_rows import RejectedRow, check_posted_rows
from serving.deps import CrmDep, json_response
from serving.errors import ApiError, ErrorBody, rejected_rows
from serving.schemas import (
    ClickEvent,
    EventsAnswer,
    EventsRequest,
    FeedbackEvent,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    PurchaseEvent,
)

router = APIRouter(tags=["crm"])

ROW_MODELS: tuple[tuple[Table, type[BaseModel]], ...] = (
    (PURCHASES, PurchaseEvent),
    (FEEDBACK, FeedbackEvent),
    (ITEMS, ItemEvent),
    (INTERACTIONS, InteractionEvent),
    (IMPRESSIONS, ImpressionEvent),
    (CLICKS, ClickEvent),
)
"""Each posted table (named as the request's field) and the model of one of its rows."""


def _schema_checked(
    table: str, model: type[BaseModel], rows: Sequence[Any]
) -> tuple[list[dict[str, Any]], list[int], list[RejectedRow]]:
    """The rows that fit `model` (as its dumps) and their positions in the request, and one
    reject per row that does not, worded as FastAPI's own validation errors (`field: what`)."""
    fitting: list[dict[str, Any]] = []
    numbers: list[int] = []
    rejected: list[RejectedRow] = []
    for position, row in enumerate(rows):
        try:
            fitting.append(model.model_validate(row).model_dump())
            numbers.append(position)
        except ValidationError as error:
            problems = [{**e, "loc": ("body", table, position, *e["loc"])} for e in error.errors()]
            rejected += [RejectedRow(**r) for r in rejected_rows(problems) or ()]
    return fitting, numbers, rejected


def _checked_rows(
    body: EventsRequest, received_at: datetime, future_tolerance_seconds: float
) -> tuple[dict[str, list[dict[str, Any]]], list[RejectedRow]]:
    """Every posted row through its row model (shape and JSON types), then the data contract's
    own validation (`features.posted_rows`: the validator of shop files): the rows that pass, by
    table, in canonical values, and one reject per row that fails, from the first check it
    fails; the rejects of both checks come back together."""
    fitting: dict[str, list[dict[str, Any]]] = {}
    positions: dict[str, list[int]] = {}
    rejected: list[RejectedRow] = []
    for table, model in ROW_MODELS:
        fitting[table.name], positions[table.name], failed = _schema_checked(
            table.name, model, getattr(body, table.name)
        )
        rejected += failed
    as_of = received_at + timedelta(seconds=future_tolerance_seconds)
    clean, failed = check_posted_rows(fitting, as_of, positions)
    return clean, rejected + failed


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
    summary="Record purchases, feedback, item updates, views, carts, impressions and clicks",
)
async def post_events(body: EventsRequest, services: CrmDep) -> Response:
    """Validate every row with the data contract's rules; if any row breaks them, answer 422
    listing every rejected row (whichever check each fails) and write nothing. Otherwise
    append all rows to the event log and fsync (or commit them to the PostgreSQL event store),
    and answer 201. Purchases, views and carts join the customer's history for their next
    recommendations at once (bought items leave them); an item posted with `available: false`
    leaves every recommendation answer at once. Impressions and clicks (and a purchase's
    `recommendation_id`) feed the online metrics; one posted again counts once."""
    settings = services.settings
    tables = [table.name for table, _ in ROW_MODELS]
    total = sum(len(getattr(body, name)) for name in tables)
    if total == 0:
        raise ApiError(
            422, "no_events", "send at least one row in " + ", ".join(f"`{t}`" for t in tables)
        )
    if total > settings.max_events_per_request:
        raise ApiError(
            422,
            "too_many_events",
            f"send at most {settings.max_events_per_request} rows per request",
        )
    received_at = datetime.now(UTC)
    # Checking 10,000 rows takes a while: off the event loop, so other requests go on.
    clean, rejected = await run_in_threadpool(
        _checked_rows, body, received_at, settings.future_tolerance_seconds
    )
    if rejected:
        rejected.sort(key=lambda r: (tables.index(r.table), r.row))
        raise ApiError(
            422,
            "events_rejected",
            f"{len(rejected)} of {total} rows break the data contract; fix them and resend "
            "the request (nothing was written): "
            + "; ".join(f"{r.table}[{r.row}]: {r.reason}" for r in rejected[:5]),
            rejected=[r.to_json() for r in rejected],
        )
    batch = EventBatch.from_tables(clean)
    try:
        stored_in = await run_in_threadpool(services.event_store.append, batch, received_at)
    except OSError as error:
        raise ApiError(
            503, "event_log_unavailable", f"could not write the event log: {error.strerror}"
        ) from None
    services.overlay.add_purchases(batch.purchases)
    services.overlay.add_items(batch.items, received_at)
    services.overlay.add_interactions(batch.interactions)
    stored = Counter(event_of(table, row) for table, rows in batch.tables().items() for row in rows)
    for event in EVENT_KINDS:
        services.metrics.events.labels(event).inc(stored[event])
    return json_response(
        {
            "accepted_purchases": len(batch.purchases),
            "accepted_feedback": len(batch.feedback),
            "accepted_items": len(batch.items),
            "accepted_impressions": len(batch.impressions),
            "accepted_clicks": len(batch.clicks),
            "accepted_interactions": len(batch.interactions),
            "received_at": received_at.isoformat(),
            "log_file": stored_in,
        },
        status=201,
    )
