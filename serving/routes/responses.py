"""The error answers a route group documents in OpenAPI, by the scope its API key needs."""

from __future__ import annotations

from typing import Any

from serving.errors import ErrorBody

INVALID_PARAMETERS = "invalid parameters; `detail` says what to fix"


def error_responses(
    scope: str, invalid: str = INVALID_PARAMETERS, *, needs_models: bool = True
) -> dict[int | str, dict[str, Any]]:
    """401, 403 (a key without `scope`), 422 (`invalid` says when) and, for routes that answer
    from the loaded models (`needs_models`), 503 before the first load."""
    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "no or unknown API key"},
        403: {"model": ErrorBody, "description": f"API key without the {scope} scope"},
        422: {"model": ErrorBody, "description": invalid},
    }
    if needs_models:
        responses[503] = {"model": ErrorBody, "description": "models not loaded yet"}
    return responses
