"""The overview page (`/crm/`) and its charts (`/crm/charts/{name}.svg`).

The page shows the headline numbers and, for each chart, the image (alt text from the chart)
and the same numbers as a table. Charts are drawn once per served snapshot and sent as
`image/svg+xml` with the console's headers; the ones that need the shop's history (heatmap,
cohorts, satisfaction) say why when it cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from serving.crm import charts, overview
from serving.crm.charts import Chart
from serving.crm.console import Console, ConsoleDep, ServedModelsDep, SignedInDep, page_context
from serving.crm.customer_frame import CustomerFrame
from serving.crm.pages import render, secure
from serving.crm.shop_history import HistoryUnavailable, ShopHistory
from serving.model_store import ServingModels

router = APIRouter(include_in_schema=False)

FRAME_CHARTS = ("segments", "risk", "clv")
HISTORY_CHARTS = ("heatmap", "cohorts", "satisfaction")
CHARTS = FRAME_CHARTS + HISTORY_CHARTS
CHART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def _drawer(name: str, frame: CustomerFrame, history: ShopHistory | None) -> Callable[[], Chart]:
    """The function drawing chart `name` (history charts need `history`)."""
    if name == "segments":
        return lambda: charts.segments_chart(overview.segment_rows(frame))
    if name == "risk":
        return lambda: charts.risk_chart(overview.risk_rows(frame))
    if name == "clv":
        return lambda: charts.clv_chart(overview.clv_values(frame))
    assert history is not None
    if name == "heatmap":
        return lambda: charts.heatmap_chart(overview.frequency_recency_grid(frame, history))
    if name == "cohorts":
        return lambda: charts.cohort_chart(overview.cohort_retention(history))
    return lambda: charts.satisfaction_chart(overview.satisfaction_by_month(history))


async def _chart(
    console: Console, models: ServingModels, name: str
) -> tuple[Chart | None, str | None]:
    """A chart, or None and why it cannot be drawn."""
    frame = await console.frame(models)
    history = None
    if name in HISTORY_CHARTS:
        try:
            history = await console.history(models)
        except HistoryUnavailable as error:
            return None, str(error)
    return await console.cached(models, f"chart:{name}", _drawer(name, frame, history)), None


@router.get("/crm")
async def overview_without_slash() -> Response:
    """The overview lives at `/crm/`."""
    return secure(RedirectResponse("/crm/", status_code=308))


@router.get("/crm/")
async def overview_page(
    request: Request, console: ConsoleDep, session: SignedInDep, models: ServedModelsDep
) -> Response:
    """Headline numbers, segments, risk tiers and the charts with their tables."""
    frame = await console.frame(models)
    drawn = {name: await _chart(console, models, name) for name in CHARTS}
    history_problem = next((why for _, why in drawn.values() if why), None)
    grid = cohorts = satisfaction = None
    if history_problem is None:
        history = await console.history(models)
        grid = await console.cached(
            models, "grid", lambda: overview.frequency_recency_grid(frame, history)
        )
        cohorts = await console.cached(
            models, "cohorts", lambda: overview.cohort_retention(history)
        )
        satisfaction = await console.cached(
            models, "satisfaction", lambda: overview.satisfaction_by_month(history)
        )
    context = page_context(
        session,
        models,
        title="Overview",
        as_of=frame.as_of,
        headline=await console.cached(models, "headline", lambda: overview.headline(frame)),
        segments=await console.cached(models, "segments", lambda: overview.segment_rows(frame)),
        risks=await console.cached(models, "risks", lambda: overview.risk_rows(frame)),
        charts={name: chart for name, (chart, _) in drawn.items()},
        history_problem=history_problem,
        grid=grid,
        cohorts=cohorts,
        satisfaction=satisfaction,
    )
    return render(request, "overview.html", context)


@router.get("/crm/charts/{name}.svg")
async def chart_image(
    request: Request, name: str, console: ConsoleDep, session: SignedInDep
) -> Response:
    """One overview chart as SVG (404 for an unknown name, 503 when it cannot be drawn)."""
    models = console.models()
    if name not in CHARTS or models is None:
        status = 404 if name not in CHARTS else 503
        return secure(Response(f"no chart {name!r}", status, media_type="text/plain"))
    chart, why = await _chart(console, models, name)
    if chart is None:
        return secure(Response(why or "", 503, media_type="text/plain"))
    response = secure(Response(chart.svg, media_type="image/svg+xml"))
    # matplotlib styles its SVG with style attributes; the image runs no script
    response.headers["Content-Security-Policy"] = CHART_POLICY
    return response
