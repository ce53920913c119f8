"""uvicorn's HTTP protocol with two guards a public server needs: a header size limit and a read
timeout, both applied before any ASGI code runs.

uvicorn (0.55, httptools parser) has neither: a 50 MB header is buffered whole before the app
sees the request, and a client that opens a connection and sends nothing, or drips a request a
byte at a time, keeps it open as long as it likes (slowloris). Both are properties of the HTTP
parser's connection, not of a request the app can see, so they live here in a subclass of
`HttpToolsProtocol` rather than in a middleware; a reverse proxy in front (nginx
`large_client_header_buffers`, `client_header_timeout`, `client_body_timeout`) does the same job
and may be used as well.

- **Header size**: when more than `max_header_bytes` have arrived and the request line and
  headers are still not complete, the answer is `431 Request Header Fields Too Large` and the
  connection closes; at most one read (64 KiB) beyond the limit is ever buffered.
- **Read timeout**: from the moment a connection opens (or a request's first byte arrives) to
  the moment the whole request, headers and body, has arrived, at most `read_timeout_seconds`;
  a late request answers `408 Request Timeout` and the connection closes. Time the app spends
  answering does not count, and idle keep-alive connections keep uvicorn's own
  `timeout_keep_alive` (5 s).

The limits come from `PATRONAGE_MAX_HEADER_BYTES` (64 KiB: several times what a browser or API
client sends) and `PATRONAGE_REQUEST_READ_TIMEOUT_SECONDS` (15 s: enough to send a full 16 MiB
post at about 9 Mbit/s), see `serving.config.Settings`, read once per worker process.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@functools.cache
def _limits_from_env() -> tuple[int, float]:
    """`(max_header_bytes, read_timeout_seconds)` from the server settings (environment)."""
    from serving.config import Settings

    settings = Settings.from_env()
    return settings.max_header_bytes, settings.request_read_timeout_seconds


class GuardedHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a header size limit (431) and a request read timeout (408).

    Limits are class attributes; `None` means "read them from the environment" (what
    `patronage serve` does in every worker). `with_limits` makes a class with fixed limits
    (tests, embedding)."""

    max_header_bytes: ClassVar[int | None] = None
    read_timeout_seconds: ClassVar[float | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_header_bytes is None or self.read_timeout_seconds is None:
            header_limit, timeout = _limits_from_env()
        else:
            header_limit, timeout = self.max_header_bytes, self.read_timeout_seconds
        self._header_limit = header_limit
        self._read_timeout = timeout
        self._awaiting_headers = True
        self._header_bytes = 0
        self._read_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_limits(
        cls, max_header_bytes: int, read_timeout_seconds: float
    ) -> type[GuardedHttpProtocol]:
        """A subclass with these limits instead of the environment's."""
        return type(
            "GuardedHttpProtocolWithLimits",
            (cls,),
            {"max_header_bytes": max_header_bytes, "read_timeout_seconds": read_timeout_seconds},
        )

    # -- the read timeout -------------------------------------------------------------------
    def _arm_read_deadline(self) -> None:
        if self._read_deadline is None and self._read_timeout > 0:
            self._read_deadline = self.loop.call_later(self._read_timeout, self._read_too_slow)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_too_slow(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's next receive() says the client went away
            cycle.message_event.set()
            if getattr(cycle, "response_started", False):
                self.transport.close()
                return
        self._refuse(408, "Request Timeout", "the request did not arrive in time")

    # -- the header limit -------------------------------------------------------------------
    def _refuse(self, status: int, phrase: str, message: str) -> None:
        """Write a plain-text error and close the connection (nothing reaches the app)."""
        body = message.encode("ascii")
        head = [f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: text/plain; charset=utf-8\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    # -- protocol callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._awaiting_headers
            and self._header_bytes > self._header_limit
            and not self.transport.is_closing()
        ):
            self._disarm_read_deadline()
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers are over the {self._header_limit:,}-byte limit "
                "(PATRONAGE_MAX_HEADER_BYTES)",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._arm_read_deadline()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_read_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._awaiting_headers = True  # the next request's bytes count from zero
        super().on_response_complete()
