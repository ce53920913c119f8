"""Typed dependencies: the app's services, and one dependency per API-key scope.

`StorefrontDep`, `CrmDep` and `AdminDep` check the `X-API-Key` (401/403) and hand the route the
`Services`; `loaded_models()` gives the current snapshot or answers 503 before the first load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError

from features.contract import MAX_ID_LENGTH
from features.event_store import EventStore
from serving.auth import API_KEY_HEADER, KeyRing, api_key_header
from serving.config import Settings
from serving.errors import ApiError, describe_validation_errors
from serving.metrics import ServingMetrics
from serving.model_store import ModelStore, ServingModels
from serving.online_view import OnlineMetricsView
from serving.overlay import EventOverlay

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Services:
    """Everything a route may use; one per app, on `app.state.services`."""

    settings: Settings
    keys: KeyRing
    store: ModelStore
    overlay: EventOverlay
    event_store: EventStore
    """Where posted events go: the file log or PostgreSQL (`features.event_store`)."""
    metrics: ServingMetrics
    challenger: ModelStore | None = None
    """The `@challenger` recommender's store when `challenger_share` > 0 (`serving.challenger`)."""
    online: OnlineMetricsView | None = None
    """The online metrics from the event log (`/v1/models`, `/metrics`)."""


def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _known_query_names(route: Any) -> frozenset[str]:
    """The query parameters a route takes: FastAPI's and those a hand-checked route declares
    in its `openapi_extra`."""
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        declared = (getattr(route, "openapi_extra", None) or {}).get("parameters", ())
        names = frozenset(_query_aliases(getattr(route, "dependant", None))) | frozenset(
            p["name"] for p in declared if p.get("in") == "query"
        )
        _QUERY_NAMES[id(route)] = names
    return names


def _query_aliases(dependant: Any) -> list[str]:
    if dependant is None:
        return []
    names = [f.alias for f in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_aliases(sub)
    return names


def reject_unknown_query_params(request: Request) -> None:
    """422 for a query parameter the route does not take (a typo like `?K=5` must not be
    silently ignored) or one given twice."""
    if not request.scope.get("query_string"):
        return
    known = _known_query_names(request.scope.get("route"))
    given = request.query_params
    unknown = sorted(set(given) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise ApiError(
            422,
            "unknown_query_parameter",
            f"unknown query parameter(s) {', '.join(map(repr, unknown))}; this route takes {takes}",
        )
    repeated = sorted({name for name in given if len(given.getlist(name)) > 1})
    if repeated:  # every parameter here is a single value; which one was meant is a guess
        raise ApiError(
            422,
            "repeated_query_parameter",
            f"give query parameter(s) {', '.join(map(repr, repeated))} once",
        )


class ScopedApiKey(APIKeyHeader):
    """The `X-API-Key` security scheme of one scope, checked in the scheme itself: one
    dependency per request instead of two (this runs on every storefront call)."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            name=API_KEY_HEADER,
            scheme_name="ApiKey",
            description=api_key_header.model.description,
            auto_error=False,
        )
        self.scope = scope

    async def __call__(self, request: Request) -> Services:  # type: ignore[override]
        """Check the key (401/403) and the query parameters (422); the app's services."""
        services: Services = request.app.state.services
        services.keys.check(request.headers.get(API_KEY_HEADER), self.scope)
        reject_unknown_query_params(request)
        return services


STOREFRONT_KEY = ScopedApiKey("storefront")
CRM_KEY = ScopedApiKey("crm")
StorefrontDep = Annotated[Services, Security(STOREFRONT_KEY)]
CrmDep = Annotated[Services, Security(CRM_KEY)]
AdminDep = Annotated[Services, Security(ScopedApiKey("admin"))]
ServicesDep = Annotated[Services, Depends(get_services)]

CUSTOMER_ID_MAX_LENGTH = MAX_ID_LENGTH
CUSTOMER_ID_PARAMETER: dict[str, Any] = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "description": "the shop's id",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": CUSTOMER_ID_MAX_LENGTH,
        "title": "Customer Id",
        "description": "the shop's id",
    },
}


def hand_checked_openapi(query: type[BaseModel] | None = None) -> dict[str, Any]:
    """`openapi_extra` of a route checked by `customer_request` (and `checked_query`): what it
    checks (API key, `customer_id`, the fields of `query` as query parameters), declared for
    the schema and for the unknown-query-parameter check, since FastAPI cannot see it."""
    parameters = [CUSTOMER_ID_PARAMETER]
    if query is not None:
        schema = query.model_json_schema()
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": name in schema.get("required", ()),
                "description": field.get("description"),
                "schema": field,
            }
            for name, field in schema["properties"].items()
        ]
    return {"security": [{"ApiKey": []}], "parameters": parameters}


def checked_query(query: type[Model], request: Request) -> Model:
    """The request's query parameters validated by `query` (a pydantic model: the rules
    FastAPI would apply), or 422 saying what to fix, as FastAPI's own validation errors do."""
    try:
        return query.model_validate(dict(request.query_params))
    except ValidationError as error:
        problems = [{**e, "loc": ("query", *e["loc"])} for e in error.errors()]
        raise ApiError(422, "invalid_request", describe_validation_errors(problems)) from None


async def customer_request(request: Request, key: ScopedApiKey) -> tuple[Services, str]:
    """The services and the path's `customer_id` of a one-customer read, checked by hand: the
    key of `key`'s scope (401/403), no query parameter the route does not declare (422) and
    the id's length (422).

    Personal recommendations, churn and loyalty are the hottest routes. FastAPI's dependency
    solving and parameter validation cost about 40 us of their ~140 us in-process request
    (measured against a route that takes only the `Request`), so these routes take the
    `Request` and check the same rules here; `hand_checked_openapi` declares them."""
    services = await key(request)
    customer_id: str = request.path_params["customer_id"]
    if not 0 < len(customer_id) <= CUSTOMER_ID_MAX_LENGTH:
        raise ApiError(
            422,
            "invalid_request",
            f"path.customer_id: give an id of 1 to {CUSTOMER_ID_MAX_LENGTH} characters "
            f"(got {len(customer_id)})",
        )
    return services, customer_id


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


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: about ten times the standard library's speed on the hot
    routes; numpy scalars and arrays as numbers; NaN as null, never the invalid `NaN`)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_bytes_response(body: bytes, status: int = 200) -> Response:
    """A response whose JSON body is already encoded."""
    return Response(body, status, media_type="application/json")


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response built directly (no response-model round trip on hot routes)."""
    return Response(dumps(payload), status, media_type="application/json")
