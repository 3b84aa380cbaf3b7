"""Pixels and clicks answered below ASGI (ingest.http_protocol) by a real `Edge`, on uvloop, over a socket.

What it proves: a pixel or click on an idle connection is answered from the parser's callbacks, in one
write, with no ASGI task, and with exactly the bytes and the hit the edge's logic decides (GIF, HEAD, 405,
forged and valid tokens, redirects, query strings, percent-encoding); keep-alive and ``Connection: close``
behave as in uvicorn; requests that must not be answered alone (pipelined behind a running one) or that are
not pixels or clicks take the ASGI path, in order; a malformed request gets uvicorn's 400 and a close, and
nothing is published for anything that is not a hit (HEAD, 405, garbage); the keep-alive timer a pixel's
answer arms never closes the connection under a request pipelined behind it.

Every test runs twice: on the Python path alone, and with the native fast path (`ingest.native`) in front of
it, where the same bytes and hits must come out and the run checks which requests the native path answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, cast

import pytest

from ingest.connection_bounds import DEFAULT_BOUNDS, ConnectionBounds
from ingest.edge import PIXEL_GIF, Edge, Receive, Scope, Send
from ingest.http_protocol import EdgeHttpProtocol, bounded
from ingest.native import NativeEdge, PixelPath
from schemas.events import HitKind, RawHit, decode_hit
from schemas.tokens import Claim, Keyring, TokenKind, sign, token_shape
from tests.native import require_native
from tests.serving import CountingTransport, serving

KEYS = Keyring(((1, b"k" * 32),))
NOW = 1_700_000_123.456  # the edge's clock: every hit's received_at_ms is exact
NOW_MS = 1_700_000_123_456
OPEN_CLAIM = Claim(TokenKind.OPEN, "acme", "spring-sale", "msg-123", 1_700_000_000)
OPEN = sign(OPEN_CLAIM, KEYS)
DESTINATION = "https://shop.example.com/caf\u00e9?utm_source=mail&x=1"
LOCATION = "https://shop.example.com/caf%C3%A9?utm_source=mail&x=1"  # what safe_location makes of it
CLICK_CLAIM = Claim(TokenKind.CLICK, "acme", "spring-sale", "msg-123", 1_700_000_000, 2, DESTINATION)
CLICK = sign(CLICK_CLAIM, KEYS)
UA = "Mozilla/5.0 (below-asgi test)"
NO_STORE = "no-store, no-cache, must-revalidate, private"
BAD_LINK = b"This link is invalid or has been altered.\n"
FALLBACK = b"fallback"


def _forged(token: str) -> str:
    """``token`` with one character (inside the signed body, past the version byte) changed."""
    flipped = "B" if token[12] != "B" else "C"
    return token[:12] + flipped + token[13:]


def _expected_hit(kind: HitKind, claim: Claim) -> RawHit:
    """The hit the edge publishes for a valid token, with an empty hit_id (compared apart)."""
    return RawHit(
        hit_id="",
        kind=kind,
        received_at_ms=NOW_MS,
        ip="127.0.0.1",
        user_agent=UA,
        token_ok=True,
        account=claim.account,
        campaign_id=claim.campaign_id,
        message_id=claim.message_id,
        sent_at=claim.sent_at,
        link_index=claim.link_index,
        url=claim.url,
        recipient_tag=claim.recipient_tag.hex(),
    )


class _ListPublisher:
    """A `HitPublisher` that keeps what it is given (published on the server's thread, read on the test's)."""

    def __init__(self) -> None:
        self.hits: list[RawHit] = []
        self._lock = threading.Lock()

    async def start(self) -> None:
        return None

    def publish(self, hit: RawHit) -> None:
        with self._lock:
            self.hits.append(hit)

    def publish_encoded(self, key: bytes | None, value: bytes) -> None:
        """From the native fast path: the line must decode to a hit keyed as the Python path keys it."""
        hit = decode_hit(value)
        assert key == hit.partition_key
        self.publish(hit)

    def ready(self) -> bool:
        return True

    async def stop(self) -> None:
        return None

    def wait(self, count: int, timeout_s: float = 30.0) -> list[RawHit]:
        """The hits once there are at least ``count`` (a pixel's GIF leaves before its hit is recorded)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                hits = list(self.hits)
            if len(hits) >= count or time.monotonic() > deadline:
                return hits
            time.sleep(0.005)


class _Fallback:
    """The app behind the edge: runs the lifespan; answers every request 200 ``fallback`` (``/slow``: after
    ``slow_s`` seconds; ``/upload``: once it has read the whole body, as an API route does)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.slow_s = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.paths.append(scope["path"])
        if scope["path"] == "/slow":
            await asyncio.sleep(self.slow_s)
        if scope["path"] == "/upload":
            while (message := await receive())["type"] == "http.request" and message.get("more_body"):
                pass
            if message["type"] == "http.disconnect":
                return
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(FALLBACK)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else FALLBACK})


class _CountingEdge(Edge):
    """The real edge, with every request that reaches it as an ASGI app recorded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls.append(scope["path"])
        await super().__call__(scope, receive, send)


class _CountingPixelPath:
    """The edge's native fast path, counting the requests it answered."""

    def __init__(self, path: PixelPath) -> None:
        self._path = path
        self.answered = 0

    def answer(
        self, data: bytes, ip: str, forwarded_for_matters: bool, now_ms: int
    ) -> tuple[bool, bytes, bytes, bytes] | None:
        found = self._path.answer(data, ip, forwarded_for_matters, now_ms)
        self.answered += found is not None
        return found


@dataclass
class _Server:
    host: str
    port: int
    edge: _CountingEdge
    publisher: _ListPublisher
    fallback: _Fallback
    writes: list[bytes]  # every write to a connection's transport
    asgi_tasks: list[str]  # the path of every request that took the ASGI path
    native: _CountingPixelPath | None  # None: the Python path serves every request

    def published_before_a_later_pixel(self) -> list[RawHit]:
        """What was published before a pixel sent now, on a new connection, once that pixel's hit is in:
        the edge handles requests in order on one loop, so anything earlier that was going to be published
        has been."""
        marker = sign(dataclasses.replace(OPEN_CLAIM, message_id="later"), KEYS)
        with self.connect() as conn:
            conn.send(_get(f"/o/{marker}.gif"))
            assert conn.response().body == PIXEL_GIF
        deadline = time.monotonic() + 30
        hits = self.publisher.wait(1)
        while not hits or hits[-1].message_id != "later":  # the marker's hit is the last one published
            assert time.monotonic() < deadline, f"the later pixel's hit is not the last published: {hits}"
            hits = self.publisher.wait(len(hits) + 1)
        return hits[:-1]

    def natively_answered(self, count: int) -> None:
        """With the native fast path on, it answered ``count`` requests since `reset`."""
        if self.native is not None:
            assert self.native.answered == count

    def reset(self) -> None:
        if self.native is not None:
            self.native.answered = 0
        self.publisher.hits.clear()
        self.fallback.paths.clear()
        self.edge.calls.clear()
        self.writes.clear()
        self.asgi_tasks.clear()

    def connect(self) -> _Conn:
        return _Conn(socket.create_connection((self.host, self.port), timeout=5))

    def exchange(self, request: bytes, hits: int = 1) -> tuple[_Response, list[RawHit]]:
        """``request`` sent on a new connection: its response, and the first ``hits`` hits published, waited
        for while the connection is still open."""
        with self.connect() as conn:
            conn.send(request)
            response = conn.response()
            return response, self.publisher.wait(hits)

    def closing_answer(self, request: bytes) -> _Response:
        """The response to ``request`` on a new connection, which the server then closes: nothing else is
        answered on it."""
        with self.connect() as conn:
            conn.send(request)
            response = conn.response()
            assert conn.rest() == b""
        return response


@dataclass
class _Response:
    status: str  # the status line, as sent
    headers: list[tuple[str, str]]  # in order, as sent
    body: bytes
    raw: bytes  # every byte of the response

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"{name} more than once: {self.headers}"
        return values[0] if values else None


class _Conn:
    """A client connection that reads responses by their content-length."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        assert chunk, f"the connection closed after {self._buf!r}"
        self._buf += chunk

    def response(self, *, head: bool = False) -> _Response:
        """The next response (``head``: the answer to a HEAD, which has no body whatever its length)."""
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        raw_head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        status, *lines = raw_head.decode("latin-1").split("\r\n")
        headers = [(key, value) for key, _, value in (line.partition(": ") for line in lines)]
        length = 0 if head else int(dict(headers).get("content-length", "0"))
        while len(self._buf) < length:
            self._fill()
        body, self._buf = self._buf[:length], self._buf[length:]
        return _Response(status, headers, body, raw_head + b"\r\n\r\n" + body)

    def rest(self) -> bytes:
        """Whatever else the server sends until it closes the connection (times out if it does not)."""
        data, self._buf = self._buf, b""
        while chunk := self._sock.recv(65536):
            data += chunk
        return data


def _get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: mail.example.com", f"User-Agent: {UA}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextmanager
def _serving(
    keep_alive_s: float | None = None,
    native: NativeEdge = "auto",
    connection_bounds: ConnectionBounds = DEFAULT_BOUNDS,
) -> Iterator[_Server]:
    """A real `Edge` (the list publisher, no trusted proxies, `_Fallback` behind it) served by
    `EdgeHttpProtocol` on uvloop, held to ``connection_bounds``, each connection's writes and ASGI tasks
    recorded; ``native``: whether its native fast path answers the pixels it can."""
    writes: list[bytes] = []
    asgi_tasks: list[str] = []

    class Counting(bounded(EdgeHttpProtocol, connection_bounds)):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if keep_alive_s is not None:
                self.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]
            super().connection_made(CountingTransport(transport, writes))  # type: ignore[arg-type]

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            asgi_tasks.append(cycle.scope["path"])
            super()._start_asgi_task(cycle, app)

    publisher = _ListPublisher()
    fallback = _Fallback()
    edge = _CountingEdge(
        keyring=KEYS,
        publisher=publisher,
        trusted_proxies=(),
        fallback=fallback,
        clock=lambda: NOW,
        native=native,
    )
    if native != "auto":
        assert (edge.pixel_path is not None) == (native == "on")
    counting = None if edge.pixel_path is None else _CountingPixelPath(edge.pixel_path)
    edge.pixel_path = cast(PixelPath, counting)
    with serving(edge, http=Counting, loop="uvloop") as base:
        host, port = base.removeprefix("http://").split(":")
        yield _Server(host, int(port), edge, publisher, fallback, writes, asgi_tasks, counting)


@pytest.fixture(scope="module", params=["off", "on"], ids=["python", "native"])
def _module_server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    """Every test runs against both paths: the Python one, and the native fast path in front of it."""
    if request.param == "on":
        require_native()
    with _serving(native=request.param) as server:
        yield server


@pytest.fixture
def server(_module_server: _Server) -> _Server:
    _module_server.reset()
    return _module_server


def _assert_pixel(response: _Response, *, close: bool = False) -> None:
    """The GIF's response, exactly: uvicorn's date and server headers, then the edge's."""
    assert response.status == "HTTP/1.1 200 OK"
    names = [name for name, _ in response.headers]
    assert names == [
        "date",
        "server",
        "content-type",
        "content-length",
        "cache-control",
        "pragma",
        "expires",
        *(["connection"] if close else []),
    ]
    assert parsedate_to_datetime(response.header("date") or "").tzinfo is not None
    assert response.headers[1:] == [
        ("server", "uvicorn"),
        ("content-type", "image/gif"),
        ("content-length", "43"),
        ("cache-control", NO_STORE),
        ("pragma", "no-cache"),
        ("expires", "0"),
        *([("connection", "close")] if close else []),
    ]


def _without_id(hit: RawHit) -> RawHit:
    assert len(hit.hit_id) == 28
    assert hit.hit_id.startswith(f"{NOW_MS:012x}")
    return dataclasses.replace(hit, hit_id="")


# -- pixels


def test_a_pixel_is_one_write_from_the_parser_and_one_hit(server: _Server) -> None:
    response, hits = server.exchange(_get(f"/o/{OPEN}.gif"))
    _assert_pixel(response)
    assert response.body == PIXEL_GIF
    assert server.writes == [response.raw]
    assert [_without_id(hit) for hit in hits] == [_expected_hit("open", OPEN_CLAIM)]
    server.natively_answered(1)
    assert server.asgi_tasks == []
    assert server.edge.calls == []
    assert server.fallback.paths == []


def test_keep_alive_serves_pixel_after_pixel(server: _Server) -> None:
    claims = [dataclasses.replace(OPEN_CLAIM, message_id=f"msg-{i}") for i in range(3)]
    with server.connect() as conn:
        for claim in claims:
            conn.send(_get(f"/o/{sign(claim, KEYS)}.gif"))
            response = conn.response()
            _assert_pixel(response)
            assert response.body == PIXEL_GIF
        hits = server.publisher.wait(3)
    assert [_without_id(hit) for hit in hits] == [_expected_hit("open", claim) for claim in claims]
    assert len(server.writes) == 3
    server.natively_answered(3)
    assert server.asgi_tasks == []


def test_head_on_a_pixel_is_the_head_alone_and_no_hit(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{OPEN}.gif", method="HEAD"))
        head = conn.response(head=True)
        _assert_pixel(head)
        assert head.body == b""
        # The next response starts right after the head: no stray body bytes came with it.
        conn.send(_get(f"/o/{OPEN}.gif"))
        response = conn.response()
        _assert_pixel(response)
        assert response.body == PIXEL_GIF
        hits = server.publisher.wait(1)
    assert server.writes == [head.raw, response.raw]
    assert len(hits) == 1  # the GET's: hits are published in order, so the HEAD published none
    server.natively_answered(1)  # the GET; a HEAD is the Python path's
    assert server.asgi_tasks == []


@pytest.mark.parametrize("path", ["/o/x.gif", f"/o/{OPEN}.gif"])
def test_a_pixel_answers_other_methods_with_405_and_no_hit(server: _Server, path: str) -> None:
    with server.connect() as conn:
        conn.send(_get(path, "Content-Length: 5", method="POST") + b"hello")
        response = conn.response()
        assert response.status == "HTTP/1.1 405 Method Not Allowed"
        assert response.header("allow") == "GET, HEAD"
        assert response.header("content-length") == str(len(b"Method Not Allowed\n"))
        assert response.body == b"Method Not Allowed\n"
        # The request's body was read and dropped: the connection serves on.
        conn.send(_get(f"/o/{OPEN}.gif"))
        assert conn.response().body == PIXEL_GIF
        hits = server.publisher.wait(1)
    assert [hit.token_ok for hit in hits] == [True]
    server.natively_answered(1)  # the GET; a request with a body is the Python path's
    assert server.asgi_tasks == []


def test_a_forged_pixel_is_still_the_gif_and_an_invalid_hit(server: _Server) -> None:
    forged = _forged(OPEN)
    response, hits = server.exchange(_get(f"/o/{forged}.gif"))
    _assert_pixel(response)
    assert response.body == PIXEL_GIF
    assert [_without_id(hit) for hit in hits] == [
        RawHit(
            hit_id="",
            kind="open",
            received_at_ms=NOW_MS,
            ip="127.0.0.1",
            user_agent=UA,
            token_ok=False,
            token_error="bad signature",
            token_head=token_shape(forged),
        )
    ]
    server.natively_answered(0)  # a token that does not verify is the Python path's: it names the error
    assert server.asgi_tasks == []


@pytest.mark.parametrize(
    "path",
    [
        f"/o/{OPEN}.gif?utm=1&x=%20",  # a query string is not part of the token
        f"/o/%{ord(OPEN[0]):02X}{OPEN[1:]}.gif",  # a percent-encoded token is decoded before it is verified
    ],
    ids=["query-string", "percent-encoded-token"],
)
def test_the_token_is_the_decoded_path_without_its_query(server: _Server, path: str) -> None:
    with server.connect() as conn:
        conn.send(_get(path))
        assert conn.response().body == PIXEL_GIF
        hits = server.publisher.wait(1)
    assert [_without_id(hit) for hit in hits] == [_expected_hit("open", OPEN_CLAIM)]
    assert server.asgi_tasks == []


def test_a_percent_encoded_prefix_takes_the_asgi_path_to_the_same_answer(server: _Server) -> None:
    response, hits = server.exchange(_get(f"/%6F/{OPEN}.gif"))
    assert response.status == "HTTP/1.1 200 OK"
    assert response.header("content-type") == "image/gif"
    assert response.body == PIXEL_GIF
    assert [_without_id(hit) for hit in hits] == [_expected_hit("open", OPEN_CLAIM)]
    assert server.asgi_tasks == [f"/o/{OPEN}.gif"]
    assert server.edge.calls == [f"/o/{OPEN}.gif"]
    assert server.fallback.paths == []


# -- clicks


def test_a_valid_click_redirects_to_the_signed_location(server: _Server) -> None:
    response, hits = server.exchange(_get(f"/c/{CLICK}"))
    assert response.status == "HTTP/1.1 302 Found"
    assert response.headers[1:] == [
        ("server", "uvicorn"),
        ("location", LOCATION),
        ("cache-control", NO_STORE),
        ("content-length", "0"),
        ("referrer-policy", "no-referrer"),
    ]
    assert response.body == b""
    assert server.writes == [response.raw]
    assert [_without_id(hit) for hit in hits] == [_expected_hit("click", CLICK_CLAIM)]
    assert hits[0].link_index == 2
    assert hits[0].url == DESTINATION
    assert server.asgi_tasks == []


def test_a_forged_click_is_a_400_and_an_invalid_hit(server: _Server) -> None:
    forged = _forged(CLICK)
    response, hits = server.exchange(_get(f"/c/{forged}"))
    assert response.status == "HTTP/1.1 400 Bad Request"
    assert response.headers[1:] == [
        ("server", "uvicorn"),
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(BAD_LINK))),
        ("cache-control", NO_STORE),
    ]
    assert response.body == BAD_LINK
    assert [(hit.kind, hit.token_ok, hit.token_error, hit.token_head) for hit in hits] == [
        ("click", False, "bad signature", token_shape(forged))
    ]
    assert server.asgi_tasks == []


def test_an_open_token_is_not_a_click(server: _Server) -> None:
    response, hits = server.exchange(_get(f"/c/{OPEN}"))
    assert response.status == "HTTP/1.1 400 Bad Request"
    assert response.body == BAD_LINK
    assert [(hit.kind, hit.token_ok, hit.token_error) for hit in hits] == [
        ("click", False, "expected a click token")
    ]


def test_head_on_a_click_redirects_and_records_nothing(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/c/{CLICK}", method="HEAD"))
        head = conn.response(head=True)
        assert head.status == "HTTP/1.1 302 Found"
        assert head.header("location") == LOCATION
        assert head.header("content-length") == "0"
        assert head.header("referrer-policy") == "no-referrer"
        conn.send(_get(f"/o/{OPEN}.gif"))  # hits are published in order: this one comes first
        assert conn.response().body == PIXEL_GIF
        hits = server.publisher.wait(1)
    assert [hit.kind for hit in hits] == ["open"]
    assert server.writes[0] == head.raw
    assert server.asgi_tasks == []


def test_a_click_answers_other_methods_with_405(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/c/{CLICK}", "Content-Length: 0", method="DELETE"))
        response = conn.response()
        conn.send(_get(f"/o/{OPEN}.gif"))
        assert conn.response().body == PIXEL_GIF
        hits = server.publisher.wait(1)
    assert response.status == "HTTP/1.1 405 Method Not Allowed"
    assert response.header("allow") == "GET, HEAD"
    assert [hit.kind for hit in hits] == ["open"]


# -- the connection


@pytest.mark.parametrize(
    ("version", "extra"), [("1.0", ()), ("1.1", ("Connection: close",))], ids=["http-1.0", "connection-close"]
)
def test_no_keep_alive_answers_with_connection_close_then_closes(
    server: _Server, version: str, extra: tuple[str, ...]
) -> None:
    response = server.closing_answer(_get(f"/o/{OPEN}.gif", *extra, version=version))
    _assert_pixel(response, close=True)
    assert response.body == PIXEL_GIF
    hits = server.publisher.wait(1)
    assert server.writes == [response.raw]
    assert [_without_id(hit) for hit in hits] == [_expected_hit("open", OPEN_CLAIM)]
    server.natively_answered(1)
    assert server.asgi_tasks == []


def test_other_paths_go_to_the_fallback(server: _Server) -> None:
    with server.connect() as conn:
        for path in ("/other", "/healthz", "/o", "/click/x"):
            conn.send(_get(path))
            response = conn.response()
            assert response.status == "HTTP/1.1 200 OK"
            assert response.body == FALLBACK
    assert server.fallback.paths == ["/other", "/healthz", "/o", "/click/x"]
    assert server.edge.calls == server.fallback.paths
    assert server.asgi_tasks == server.fallback.paths
    assert server.published_before_a_later_pixel() == []


def test_pipelined_requests_are_answered_in_order(server: _Server) -> None:
    second = sign(dataclasses.replace(OPEN_CLAIM, message_id="msg-2"), KEYS)
    with server.connect() as conn:
        conn.send(_get(f"/o/{OPEN}.gif") + _get("/other") + _get(f"/o/{second}.gif"))
        first, middle, last = conn.response(), conn.response(), conn.response()
        hits = server.publisher.wait(2)
    _assert_pixel(first)
    assert first.body == PIXEL_GIF
    assert middle.status == "HTTP/1.1 200 OK"
    assert middle.body == FALLBACK
    assert last.status == "HTTP/1.1 200 OK"
    assert last.header("content-type") == "image/gif"
    assert last.body == PIXEL_GIF
    assert [hit.message_id for hit in hits] == ["msg-123", "msg-2"]
    assert all(hit.token_ok for hit in hits)
    # The first below ASGI; the others behind a running request, on the ASGI path.
    assert server.asgi_tasks == ["/other", f"/o/{second}.gif"]
    assert server.edge.calls == ["/other", f"/o/{second}.gif"]
    assert server.fallback.paths == ["/other"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT A REQUEST\r\n\r\n",
        f"GET /o/{OPEN}.gif HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n".encode(),
        f"GET /o/{OPEN}.gif HTTP/9.9\r\nHost: x\r\n\r\n".encode(),
    ],
    ids=["request-line", "header", "version"],
)
def test_a_malformed_request_is_a_400_and_a_close(server: _Server, request_bytes: bytes) -> None:
    response = server.closing_answer(request_bytes)
    assert response.status == "HTTP/1.1 400 Bad Request"
    assert response.header("connection") == "close"
    assert response.body == b"Invalid HTTP request received."
    assert server.published_before_a_later_pixel() == []
    assert server.asgi_tasks == []


def test_a_request_pipelined_after_connection_close_is_not_served(server: _Server) -> None:
    """As uvicorn: nothing after a request that closes the connection is answered, or recorded."""
    second = sign(dataclasses.replace(OPEN_CLAIM, message_id="msg-2"), KEYS)
    response = server.closing_answer(_get(f"/o/{OPEN}.gif", "Connection: close") + _get(f"/o/{second}.gif"))
    _assert_pixel(response, close=True)
    assert [hit.message_id for hit in server.published_before_a_later_pixel()] == ["msg-123"]
    assert server.edge.calls == []


def test_the_keep_alive_timeout_spares_a_request_pipelined_behind_a_pixel() -> None:
    """The keep-alive timer the pixel's answer arms must not close the connection under the request
    pipelined behind it while that request runs (uvicorn arms it only once nothing runs)."""
    with _serving(keep_alive_s=0.3) as server, server.connect() as conn:
        server.fallback.slow_s = 1.0
        conn.send(_get(f"/o/{OPEN}.gif") + _get("/slow"))
        assert conn.response().body == PIXEL_GIF
        response = conn.response()
        assert response.status == "HTTP/1.1 200 OK"
        assert response.body == FALLBACK


@pytest.mark.parametrize("native", ["off", "on"], ids=["python", "native"])
def test_keep_alive_times_out_from_the_last_answer(native: NativeEdge) -> None:
    """Answers 0.1 s apart keep a connection open past the 1 s keep-alive timeout (the native path leaves
    its timer running and checks it when it fires); 1 s of silence after the last one closes it. The margin
    is wide on purpose: a gap must stay under 1 s even on a loaded machine, and the close must come after
    half of it at least."""
    if native == "on":
        require_native()
    with _serving(keep_alive_s=1.0, native=native) as server, server.connect() as conn:
        started = time.monotonic()
        for _ in range(16):
            conn.send(_get(f"/o/{OPEN}.gif"))
            assert conn.response().body == PIXEL_GIF
            time.sleep(0.1)
        last = time.monotonic()
        assert last - started > 1.5  # past the keep-alive timeout since the first answer
        assert conn.rest() == b""  # closed by the server, not at once: after the timeout
        assert time.monotonic() - last >= 0.5
        server.natively_answered(16 if native == "on" else 0)
