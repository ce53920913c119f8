"""The header size limit (431) and the read timeout (408) of `serving.http_protocol`, on a real
uvicorn server on 127.0.0.1 spoken to with raw sockets (a client library would not send what an
attacker sends)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from serving.http_protocol import GuardedHttpProtocol

HEADER_LIMIT = 8 * 1024
READ_TIMEOUT = 1.0


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 with the number of body bytes it read."""
    if scope["type"] != "http":
        return
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        _echo_length,
        host="127.0.0.1",
        port=free,
        http=GuardedHttpProtocol.with_limits(HEADER_LIMIT, READ_TIMEOUT),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(10)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_ordinary_request_with_a_body_is_answered(port: int) -> None:
    body = b"x" * 100_000  # a body larger than the header limit is not a header
    with _connect(port) as connection:
        connection.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = _read_all(connection)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"100000")


def test_an_oversized_header_is_refused_with_431_before_it_is_all_sent(port: int) -> None:
    with _connect(port) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        try:  # the server closes long before 50 MB; a refused send is part of the answer
            while sent < 50 * 1024 * 1024:
                connection.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"PATRONAGE_MAX_HEADER_BYTES" in answer
    assert sent < 10 * 1024 * 1024, f"the server read {sent:,} bytes of header first"


def test_a_silent_connection_is_closed_after_the_read_timeout(port: int) -> None:
    started = time.monotonic()
    with _connect(port) as connection:
        connection.settimeout(READ_TIMEOUT * 10)
        answer = _read_all(connection)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert READ_TIMEOUT * 0.9 <= waited < READ_TIMEOUT * 5


def test_a_drip_fed_header_is_cut_off_at_the_read_timeout(port: int) -> None:
    started = time.monotonic()
    with _connect(port) as connection:
        connection.settimeout(READ_TIMEOUT * 10)
        answer = b""
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 1000:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)
                if time.monotonic() - started > READ_TIMEOUT * 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(connection)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < READ_TIMEOUT * 5


def test_a_half_sent_body_is_cut_off_at_the_read_timeout(port: int) -> None:
    with _connect(port) as connection:
        connection.settimeout(READ_TIMEOUT * 10)
        connection.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
        )
        answer = _read_all(connection)
    assert answer.startswith(b"HTTP/1.1 408")


def test_keep_alive_requests_each_get_their_own_timeout(port: int) -> None:
    """A connection used for several requests over longer than the timeout is not cut off."""
    with _connect(port) as connection:
        for _ in range(3):
            connection.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(READ_TIMEOUT * 0.6)
