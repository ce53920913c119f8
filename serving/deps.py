"""Typed dependencies: the app's services, and one dependency per API-key scope.

`StorefrontDep`, `CrmDep` and `AdminDep` check the `X-API-Key` (401/403) and hand the route the
`Services`; `loaded_models()` gives the current snapshot or answers 503 before the first load.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security

from serving.auth import KeyRing, api_key_header
from serving.config import Settings
from serving.errors import ApiError
from serving.events import EventLog, EventOverlay
from serving.metrics import ServingMetrics
from serving.model_store import ModelStore, ServingModels


@dataclass(frozen=True)
class Services:
    """Everything a route may use; one per app, on `app.state.services`."""

    settings: Settings
    keys: KeyRing
    store: ModelStore
    overlay: EventOverlay
    event_log: EventLog
    metrics: ServingMetrics


def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


def _require(scope: str) -> Callable[..., Awaitable[Services]]:
    async def check_key(
        request: Request, api_key: Annotated[str | None, Security(api_key_header)]
    ) -> Services:
        services: Services = request.app.state.services
        services.keys.check(api_key, scope)
        return services

    check_key.__name__ = f"require_{scope}_key"
    return check_key


StorefrontDep = Annotated[Services, Depends(_require("storefront"))]
CrmDep = Annotated[Services, Depends(_require("crm"))]
AdminDep = Annotated[Services, Depends(_require("admin"))]
ServicesDep = Annotated[Services, Depends(get_services)]


def loaded_models(services: Services) -> ServingModels:
    """The snapshot to answer from; raises 503 `models_not_loaded` before the first load."""
    models = services.store.current
    if models is None:
        last = services.store.last_reload
        why = f" (last attempt: {last.detail})" if last is not None else ""
        raise ApiError(
            503,
            "models_not_loaded",
            f"models are not loaded yet{why}; retry shortly or check GET /health/ready",
        )
    return models


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response built directly (no response-model round trip on hot routes)."""
    return Response(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        status,
        media_type="application/json",
    )
