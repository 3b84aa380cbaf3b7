"""The edge's HTTP protocol (ingest.http_protocol) over a real socket, on uvloop as the edge runs it: a
response complete at once is one write; a head whose body is not ready goes out alone within the loop
iteration; nothing is reordered or lost (keep-alive, pipelining, HEAD, Connection: close)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.http_protocol import EdgeHttpProtocol
from tests.serving import CountingTransport, serving

BODY = b"GIF89a-43-bytes-of-pixel-0123456789abcdefgh"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"image/gif"), (b"content-length", b"43")],
}


class _App:
    """``/pixel``: head and body at once. ``/stream``: the head, then the body once the test has seen the
    head arrive (so a head held until the body would hang the test)."""

    def __init__(self) -> None:
        self.head_seen = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(START)
        if scope["path"] == "/stream":
            await asyncio.to_thread(self.head_seen.wait, 5)
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else BODY})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int, _App, list[bytes]]]:
    writes: list[bytes] = []

    class Counting(EdgeHttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CountingTransport(transport, writes))  # type: ignore[arg-type]

    app = _App()
    with serving(app, http=Counting, loop="uvloop") as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port), app, writes


def _connect(server: tuple[str, int, _App, list[bytes]]) -> socket.socket:
    conn = socket.create_connection(server[:2], timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _head(conn: socket.socket) -> bytes:
    """One response head (uvicorn adds date and server headers: only the ends are asserted)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 43\r\n" in data
    return data


def test_a_complete_response_is_one_write_and_keep_alive_goes_on(server: Any) -> None:
    writes: list[bytes] = server[3]
    with _connect(server) as conn:
        for _ in range(3):
            writes.clear()
            conn.sendall(b"GET /pixel HTTP/1.1\r\nHost: x\r\n\r\n")
            head = _head(conn)
            assert _read(conn, len(BODY)) == BODY
            assert writes == [head + BODY]


def test_a_head_whose_body_is_not_ready_goes_out_alone(server: Any) -> None:
    app: _App = server[2]
    writes: list[bytes] = server[3]
    app.head_seen.clear()
    writes.clear()
    with _connect(server) as conn:
        conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _head(conn)  # while the app still waits to send the body
        app.head_seen.set()
        assert _read(conn, len(BODY)) == BODY
    assert writes == [head, BODY]


def test_head_answers_with_the_head_alone(server: Any) -> None:
    with _connect(server) as conn:
        conn.sendall(b"HEAD /pixel HTTP/1.1\r\nHost: x\r\n\r\n")
        _head(conn)
        conn.sendall(b"GET /pixel HTTP/1.1\r\nHost: x\r\n\r\n")  # and the connection still serves
        _head(conn)
        assert _read(conn, len(BODY)) == BODY


def test_pipelined_requests_are_answered_in_order(server: Any) -> None:
    with _connect(server) as conn:
        conn.sendall(
            b"HEAD /pixel HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /pixel HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /pixel HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        _head(conn)
        _head(conn)
        assert _read(conn, len(BODY)) == BODY
        _head(conn)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_connection_close_sends_everything_then_closes(server: Any, method: str) -> None:
    with _connect(server) as conn:
        conn.sendall(f"{method} /pixel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert b"\r\nconnection: close\r\n" in _head(conn)
        expected = BODY if method == "GET" else b""
        assert _read(conn, len(expected) + 1) == expected  # + 1: then the end of the stream
