"""Limits that protect the server from what a client sends before any route or key check runs.

`BodyLimitMiddleware` refuses a request body over `PATRONAGE_MAX_BODY_BYTES` with `413
body_too_large`: at once from its `Content-Length` (nothing is read, so a 100 MB body sent
without a key costs no memory), or, for a body sent without a length (chunked), as soon as the
bytes read pass the limit (such a body is read here, then handed to the app).
`redact_access_log` keeps API keys sent in a query string (`?api_key=`) out of uvicorn's
access log.
"""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_response

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""16 MiB: a full post of 10,000 event rows with texts of a few hundred characters fits."""


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes` (pure ASGI, in front of the app)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"the request body is over the {self.max_bytes:,}-byte limit "
            "(PATRONAGE_MAX_BODY_BYTES): send fewer rows per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # Refused before reading; the connection closes so the unread body goes nowhere.
            response = error_response(413, "body_too_large", self._too_large())
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        if declared is None and _may_have_body(scope):
            # No length given (chunked): read up to the limit here, then hand the app the body.
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_bytes:
                    response = error_response(413, "body_too_large", self._too_large())
                    response.headers["Connection"] = "close"
                    await response(scope, receive, send)
                    return
                more = bool(message.get("more_body"))
            receive = _replay(b"".join(chunks), receive)
        await self.app(scope, receive, send)


def _may_have_body(scope: Scope) -> bool:
    return scope.get("method") in ("POST", "PUT", "PATCH")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then whatever the connection says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


_SECRET_QUERY = re.compile(r"(?i)((?:^|[?&])[^=&]*(?:key|token|secret|password)[^=&]*=)[^&\s]*")


class _RedactSecrets(logging.Filter):
    """Replaces the value of any query parameter named like a key or token with `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def redact_access_log() -> None:
    """Install the redaction on uvicorn's access logger (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactSecrets) for f in access.filters):
        access.addFilter(_RedactSecrets())
