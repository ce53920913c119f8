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


@router.api_route(
    "/health/live",
    methods=["GET", "HEAD"],
    response_model=HealthAnswer,
    summary="The process answers",
)
async def live() -> Response:
    """Always 200 while the process serves HTTP (also before models are loaded)."""
    return Response(LIVE_BODY, media_type="application/json")


@router.api_route(
    "/health/ready",
    methods=["GET", "HEAD"],
    response_model=HealthAnswer,
    responses={503: {"model": ErrorBody, "description": "models not loaded yet"}},
    summary="Models are loaded and requests can be answered",
)
async def ready(services: ServicesDep) -> Response:
    """200 once the shop's champion models are loaded, else 503 saying what is wrong in a few
    words: this route is open, so paths, queries and error texts stay in `/v1/models` (admin)
    and the log."""
    if services.store.current is None:
        last = services.store.last_reload
        if last is None:
            detail = "models are loading"
        else:
            kind = last.detail.split(":", 1)[0] if ":" in last.detail else "error"
            detail = (
                f"not ready: the last model load failed ({kind}); the full reason is in "
                "GET /v1/models (admin key) and the server log"
            )
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
