"""The models page (`/crm/models`): what is served, every registered version per shop with
aliases, decisions and backtest metrics, and each run's training report
(`/crm/models/report?run_id=...`).

Online metrics (how recommendations fare in the live shop) are shown when the live loop
provides them; today no part of the service records them, and the page says so.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving.crm.console import ConsoleDep, SignedInDep
from serving.crm.pages import render, secure
from serving.crm.registry_view import ModelView, ReportMissing, training_report

logger = logging.getLogger("patronage.serving")

router = APIRouter(include_in_schema=False)

REPORT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""The training report is our own self-contained HTML (figures as data: URLs); it runs no
script and is sandboxed anyway."""


@router.get("/crm/models")
async def models_page(request: Request, console: ConsoleDep, session: SignedInDep) -> Response:
    """Served versions, registered versions per shop, metrics and links to the reports."""
    models = console.models()
    registry_problem = None
    views: list[ModelView] = []
    assert console.registry is not None
    try:
        views = await run_in_threadpool(console.registry.models)
    except Exception as error:  # the registry being down must not take the page down
        logger.error("CRM console: cannot read the registry: %s", error)
        registry_problem = f"The model registry could not be read ({type(error).__name__})."
    store = console.services.store
    context = {
        "session": session,
        "shop": (models.shop if models is not None else "") or "this shop",
        "title": "Models",
        "served": [] if models is None else list(models.versions.values()),
        "unavailable": {} if models is None else dict(models.unavailable),
        "alias": console.services.settings.model_alias,
        "last_reload": store.last_reload,
        "views": views,
        "registry_problem": registry_problem,
    }
    return render(request, "models.html", context)


@router.get("/crm/models/report")
async def report_page(request: Request, console: ConsoleDep, session: SignedInDep) -> Response:
    """A run's training report (ROC, calibration, lift, metric@K, segments), as logged."""
    run_id = request.query_params.get("run_id", "")
    tracking_uri = console.services.settings.tracking_uri
    try:
        body = await run_in_threadpool(training_report, tracking_uri, run_id)
    except ReportMissing as error:
        return render(
            request,
            "refused.html",
            {"title": "No report", "message": f"{error}.", "session": session},
            status=404,
        )
    response = secure(Response(body, media_type="text/html; charset=utf-8"))
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    return response
