"""Errors at the HTTP edge: every error body is `{"error": code, "detail": text}`.

`detail` always says what to fix. FastAPI's own validation errors (422) and Starlette's 404/405
are rewritten into the same shape, so a client needs one error parser.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("patronage.serving")


class ErrorBody(BaseModel):
    """The JSON body of every error response."""

    error: str
    detail: str
    rejected: list[dict[str, Any]] | None = None


class ApiError(Exception):
    """An error with its HTTP status, a short machine code and a sentence saying what to fix."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        rejected: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.rejected = list(rejected) if rejected is not None else None


def error_response(
    status: int,
    code: str,
    detail: str,
    rejected: Sequence[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response in the house shape."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if rejected is not None:
        body["rejected"] = list(rejected)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "X-API-Key"
    return Response(
        json.dumps(body, default=str), status, headers=headers, media_type="application/json"
    )


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One line per problem, `where: what`, e.g. `query.k: Input should be less than or equal
    to 100`."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()))
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "the request is not valid"


def rejected_rows(errors: Sequence[Any]) -> list[dict[str, Any]] | None:
    """For errors inside a list of posted rows (`body.purchases.3.quantity`), one entry per row
    `{"table", "row", "reason"}`; None when no error points into such a list."""
    reasons: dict[tuple[str, int], list[str]] = {}
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) >= 3 and loc[0] == "body" and isinstance(loc[2], int):
            field = ".".join(str(p) for p in loc[3:]) or "row"
            reasons.setdefault((str(loc[1]), loc[2]), []).append(
                f"{field}: {error.get('msg', 'invalid value')}"
            )
    if not reasons:
        return None
    return [
        {"table": table, "row": row, "reason": "; ".join(messages)}
        for (table, row), messages in sorted(reasons.items())
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into `{"error", "detail"}`."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.detail, exc.rejected)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        return error_response(
            422, "invalid_request", describe_validation_errors(errors), rejected_rows(errors)
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # e.g. a body that is not UTF-8 JSON
            return error_response(
                422, "invalid_request", f"the request body cannot be parsed: {exc.detail}"
            )
        if exc.status_code == 404:
            return error_response(
                404, "not_found", f"no route {request.url.path}; see /docs for the API"
            )
        if exc.status_code == 405:
            return error_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}",
                headers=exc.headers,  # keeps `Allow` (RFC 9110)
            )
        return error_response(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Logged with the route, never with headers (they may hold an API key).
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "unexpected server error; see the logs")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
