"""The customers pages: the filtered list (`/crm/customers`), its CSV export
(`/crm/customers.csv`, same query) and one customer's profile (`/crm/customers/{id}`).

Everything is read from the served score tables (`CustomerFrame`, the same numbers as the
`/v1/customers/...` routes), the recommender in memory and the shop's history; nothing is
scored here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from serving.crm.console import Console, ConsoleDep, ServedModelsDep, SignedInDep, page_context
from serving.crm.customer_frame import RISK_TIERS, SORT_KEYS, CustomerFrame
from serving.crm.customer_query import AT_RISK_VIEW, PAGE_SIZES, CustomerQuery, parse_query
from serving.crm.export import stream_csv, winback_items
from serving.crm.pages import render, secure
from serving.crm.shop_history import HistoryUnavailable, ShopHistory
from serving.model_store import RecommendationList, RoleNotTrained, ServingModels

logger = logging.getLogger("patronage.serving")

router = APIRouter(include_in_schema=False)

PROFILE_ITEMS = 5
"""Recommendations and cross-sell items shown on a profile."""


async def _listed(
    request: Request, console: Console, models: ServingModels
) -> tuple[CustomerFrame, CustomerQuery]:
    """The served customer frame and the list's query string read against its segments: the
    list page and its CSV export read the same query."""
    frame = await console.frame(models)
    return frame, parse_query(request.query_params, frame.segments())


@router.get("/crm/customers")
async def customers(
    request: Request, console: ConsoleDep, session: SignedInDep, models: ServedModelsDep
) -> Response:
    """One page of the filtered, sorted customer list."""
    frame, query = await _listed(request, console, models)
    page = frame.page(query.wanted, query.page, query.per_page)
    query = replace(query, page=page.page)
    context = page_context(
        session,
        models,
        title="At risk and valuable" if query.view == AT_RISK_VIEW else "Customers",
        query=query,
        listing=page,
        records=list(frame.records(page.rows)),
        first=(page.page - 1) * page.per_page + 1,
        segments=frame.segments(),
        risk_tiers=RISK_TIERS,
        sort_keys=SORT_KEYS,
        page_sizes=PAGE_SIZES,
        as_of=frame.as_of,
        csv_link=query.link("/crm/customers.csv", page=1),
        previous_link=query.link("/crm/customers", page.page - 1) if page.page > 1 else None,
        next_link=query.link("/crm/customers", page.page + 1) if page.page < page.pages else None,
    )
    return render(request, "customers.html", context)


@router.get("/crm/customers.csv")
async def customers_csv(
    request: Request, console: ConsoleDep, session: SignedInDep, models: ServedModelsDep
) -> Response:
    """The whole filtered, sorted list as CSV, streamed (see `serving.crm.export`)."""
    frame, query = await _listed(request, console, models)
    rows = frame.matching_rows(query.wanted)
    names: Callable[[str], str]
    try:
        names = (await console.history(models)).item_name
    except HistoryUnavailable:
        names = str  # ids stand in for names
    stamp = frame.as_of.strftime("%Y%m%d")
    filename = f"customers-{models.shop or 'shop'}-{stamp}.csv"
    response = StreamingResponse(
        stream_csv(frame, rows, models.recommender, names),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
    return secure(response)


def _named(items: RecommendationList | None, history: ShopHistory | None) -> list[dict[str, Any]]:
    if items is None:
        return []
    return [
        {"item_id": item, "name": history.item_name(item) if history else item, "score": score}
        for item, score in zip(items.item_ids, items.scores, strict=True)
    ]


@router.get("/crm/customers/{customer_id}")
async def profile(
    request: Request,
    customer_id: str,
    console: ConsoleDep,
    session: SignedInDep,
    models: ServedModelsDep,
) -> Response:
    """One customer: scores with reasons, orders, feedback, recommendations and cross-sell."""
    frame = await console.frame(models)
    row = frame.row_of(customer_id)
    if row is None:
        context = page_context(
            session,
            models,
            title="Customer not found",
            message=f"No customer {customer_id!r} was scored by the served model.",
        )
        return render(request, "refused.html", context, status=404)
    record = frame.record(row)
    history: ShopHistory | None
    history_problem = None
    try:
        history = await console.history(models)
    except HistoryUnavailable as error:
        history, history_problem = None, str(error)
    recommended: RecommendationList | None = None
    cross_sell: RecommendationList | None = None
    recommender_problem = None
    try:
        recommended = models.recommender.recommend_for(
            customer_id, PROFILE_ITEMS, None, "non-repeatable", ()
        )
        basket = history.last_order_items(customer_id) if history else []
        if basket:
            cross_sell = models.recommender.cross_sell(basket, customer_id, PROFILE_ITEMS)
    except RoleNotTrained as error:
        recommender_problem = error.reason
    customer_history = history.customer(customer_id) if history else None
    context = page_context(
        session,
        models,
        title=f"Customer {customer_id}",
        customer=record,
        as_of=frame.as_of,
        orders=None if customer_history is None else customer_history.orders(),
        lines=None if customer_history is None else customer_history.order_lines,
        feedback=None if customer_history is None else customer_history.feedback,
        history_problem=history_problem,
        recommended=_named(recommended, history),
        cross_sell=_named(cross_sell, history),
        winback=winback_items(models.recommender, customer_id),
        recommender_problem=recommender_problem,
    )
    return render(request, "profile.html", context)
