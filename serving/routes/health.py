"""Open routes (no API key, by design): liveness, readiness, Prometheus metrics.

Load balancers and Prometheus call these without credentials; they reveal model versions and
request counts, nothing about customers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.deps import ServicesDep, json_response
from serving.errors import ErrorBody
from serving.metrics import CONTENT_TYPE
from serving.schemas import HealthAnswer

router = APIRouter(tags=["health"])

LIVE_BODY = b'{"status":"live"}'


@router.get("/health/live", response_model=HealthAnswer, summary="The process answers")
async def live() -> Response:
    """Always 200 while the process serves HTTP (also before models are loaded)."""
    return Response(LIVE_BODY, media_type="application/json")


@router.get(
    "/health/ready",
    response_model=HealthAnswer,
    responses={503: {"model": ErrorBody, "description": "models not loaded yet"}},
    summary="Models are loaded and requests can be answered",
)
async def ready(services: ServicesDep) -> Response:
    """200 once every champion model is loaded, else 503 with the last load attempt."""
    if services.store.current is None:
        last = services.store.last_reload
        detail = "models are loading" if last is None else f"not ready: {last.detail}"
        return json_response({"error": "not_ready", "detail": detail}, 503)
    return json_response({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Requests and latency by route, loaded model versions, reload counts and failures."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
