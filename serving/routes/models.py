"""Admin routes: what is being served, and a reload on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from serving.challenger import challenger_models
from serving.deps import AdminDep, json_response
from serving.errors import ErrorBody
from serving.model_store import ServingModels
from serving.routes.responses import error_responses
from serving.schemas import ModelsAnswer, ReloadAnswer

router = APIRouter(tags=["admin"])

ADMIN_ERRORS = error_responses("admin", needs_models=False)


@router.get(
    "/v1/models",
    response_model=ModelsAnswer,
    responses=ADMIN_ERRORS,
    summary="Loaded model versions, their metrics, and the last reload",
)
async def list_models(services: AdminDep) -> Response:
    """The versions serving now (with their logged metrics), how the last reload went, the
    challenger served to a share of shoppers, and the online metrics from the event log."""
    store = services.store
    models = store.current
    last = store.last_reload
    challenger = challenger_models(services.challenger)
    online = None if services.online is None else await run_in_threadpool(services.online.report)
    return json_response(
        {
            "ready": models is not None,
            "shop": "" if models is None else models.shop,
            "models": [] if models is None else [m.to_json() for m in models.versions.values()],
            "unavailable": {} if models is None else dict(models.unavailable),
            "alias": services.settings.model_alias,
            "poll_seconds": store.poll_seconds,
            "last_reload": None if last is None else last.to_json(),
            "reload_failures": store.reload_failures,
            "recommender_status": _recommender_status(models),
            "challenger_share": services.settings.challenger_share,
            "challenger": None
            if challenger is None
            else challenger.versions["recommender"].to_json(),
            "online": None if online is None else online.to_json(),
        }
    )


def _recommender_status(models: ServingModels | None) -> dict[str, Any] | None:
    status = getattr(models.recommender, "status", None) if models is not None else None
    return status() if status is not None else None


@router.post(
    "/v1/admin/reload",
    response_model=ReloadAnswer,
    responses={
        **ADMIN_ERRORS,
        503: {"model": ErrorBody, "description": "the load failed; previous models still serve"},
    },
    summary="Check the registry now and swap in changed champions",
)
async def reload_models(
    services: AdminDep,
    force: bool = Query(False, description="reload even if the versions did not change"),
) -> Response:
    """Runs the same reload as the poller (of the `@challenger` recommender too, when a
    challenger share is set); requests keep being answered during the load. 503 with the
    reason when the champions' load failed (the previous models keep serving)."""
    outcome = await run_in_threadpool(services.store.reload, force)
    if services.challenger is not None:
        await run_in_threadpool(services.challenger.reload, force)
    if outcome.outcome == "failed":
        return json_response(
            {"error": "reload_failed", "detail": outcome.detail, **outcome.to_json()}, 503
        )
    return json_response(outcome.to_json())
