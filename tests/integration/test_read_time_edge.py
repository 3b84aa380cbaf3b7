"""Read time at the edge (issue 18, `ingest.read_time`), over real sockets: a real `Edge` served by
`EdgeHttpProtocol` on uvloop, publishing to a real in-memory bus (`bus.memory.MemoryBus`, tapped so the test
reads every line published), with the read-time settings read from the environment as the edge reads them.

What it proves: a timed open is published as an open at once and answered with the read-time GIF (its head
at once, a frame a second, the trailer at the cap); exactly one read record per timed open, naming the open's
hit id: ``closed`` when the client closes (the time measured), ``cap`` when the whole animation was sent (the
connection serves on: keep-alive and a request pipelined behind it are answered, in order), ``stopped`` when
the server shuts down (the connection closed at once), ``busy`` beyond the cap of held pixels and ``proxy``
for an image proxy (both sent whole at once, counted by reason), ``busy`` counted as ``asgi`` on the ASGI
path; HEAD, do-not-track and forged tokens hold and measure nothing; plain opens are answered exactly as
before. Every test runs on the Python path alone and with the native fast path in front of it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from prometheus_client import REGISTRY

from bus.memory import MemoryBus
from ingest.edge import PIXEL_GIF, Edge
from ingest.holder_link import ReadHolders
from ingest.http_protocol import EdgeHttpProtocol, bounded
from ingest.native import NativeEdge
from ingest.read_gif import FRAME, ReadGif
from ingest.read_time import HeldPixels
from pixelpipe import settings as settings_mod
from schemas.events import RawHit, decode_hit
from schemas.reads import ReadRecord, decode_read, is_read_line
from schemas.suppression import DoNotTrack
from schemas.tokens import Claim, Keyring, TokenKind, recipient_tag, sign
from tests.native import require_native
from tests.serving import serving_server

SECRET = "read-time-secret-0123456789abcdef"
KEYS = Keyring(((1, SECRET.encode()),))
CAP_S = 3
GIF = ReadGif(CAP_S)
TAG = recipient_tag(SECRET.encode(), "acme", "ann@example.com")
TIMED_CLAIM = Claim(TokenKind.TIMED_OPEN, "acme", "spring-sale", "msg-1", 1_700_000_000, recipient_tag=TAG)
TIMED = sign(TIMED_CLAIM, KEYS)
PLAIN = sign(dataclasses.replace(TIMED_CLAIM, kind=TokenKind.OPEN, message_id="msg-plain"), KEYS)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.0"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
NO_STORE = "no-store, no-cache, must-revalidate, private"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _eventually(value: Callable[[], float], within_s: float = 2.0) -> float:
    """``value()`` once it is not 0, or at the deadline."""
    deadline = time.monotonic() + within_s
    while not (found := value()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


class _TappedBus(MemoryBus):
    """The in-memory bus, with every line published also kept for the test (published on the server's
    thread, read on the test's)."""

    def __init__(self) -> None:
        super().__init__(capacity=100_000)
        self.lines: list[tuple[bytes | None, bytes]] = []
        self._lock = threading.Lock()

    def publish_encoded(self, key: bytes | None, value: bytes) -> None:
        with self._lock:
            self.lines.append((key, value))
        super().publish_encoded(key, value)

    def hits(self) -> list[RawHit]:
        with self._lock:
            return [decode_hit(value) for _, value in self.lines if not is_read_line(value)]

    def reads(self) -> list[ReadRecord]:
        with self._lock:
            return [decode_read(value) for _, value in self.lines if is_read_line(value)]

    def wait_reads(self, count: int, timeout_s: float = 30.0) -> list[ReadRecord]:
        deadline = time.monotonic() + timeout_s
        while len(reads := self.reads()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return reads

    def wait_hits(self, count: int, timeout_s: float = 30.0) -> list[RawHit]:
        deadline = time.monotonic() + timeout_s
        while len(hits := self.hits()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return hits


@dataclass
class _Server:
    host: str
    port: int
    bus: _TappedBus
    pixels: HeldPixels
    do_not_track: DoNotTrack
    uvicorn_server: uvicorn.Server
    holders: int

    def connect(self) -> _Conn:
        return _Conn(socket.create_connection((self.host, self.port), timeout=15))


@dataclass
class _Response:
    status: str
    headers: dict[str, str]
    body: bytes


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the connection closed after {self.buf!r}"
        self.buf += chunk

    def head(self) -> tuple[str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, *lines = raw.decode("latin-1").split("\r\n")
        return status, {k: v for k, _, v in (line.partition(": ") for line in lines)}

    def body(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        body, self.buf = self.buf[:size], self.buf[size:]
        return body

    def response(self, *, head_only: bool = False) -> _Response:
        status, headers = self.head()
        size = 0 if head_only else int(headers.get("content-length", "0"))
        return _Response(status, headers, self.body(size))

    def rest(self) -> bytes:
        """What else arrives until the server closes the connection."""
        data, self.buf = self.buf, b""
        while chunk := self.sock.recv(65536):
            data += chunk
        return data


def _get(path: str, *extra: str, method: str = "GET", ua: str = UA) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: mail.example.com", f"User-Agent: {ua}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextmanager
def _serving(native: NativeEdge, holders: int, **env: str) -> Iterator[_Server]:
    """A real edge (`Edge` + `EdgeHttpProtocol` on uvloop) whose read-time settings come from the
    environment (``PIXELPIPE_READ_TIME_CAP_SECONDS=3`` unless ``env`` says otherwise), with ``holders``
    holder processes (`ingest.holder_link`; 0: the edge holds its pixels itself)."""
    settings = settings_mod.load(
        {
            "PIXELPIPE_SECRET": f"1:{SECRET}",
            "PIXELPIPE_API_KEYS": "acme=acme-key-123",
            "PIXELPIPE_READ_TIME_CAP_SECONDS": str(CAP_S),
            "PIXELPIPE_NATIVE_EDGE": native,
            "PIXELPIPE_READ_TIME_HOLDERS": str(holders),
            **env,
        }
    )
    assert settings.keyring == KEYS
    bus = _TappedBus()
    pixels = HeldPixels(bus, cap_s=settings.read_time_cap_s, max_held=settings.read_time_max_held)
    if settings.read_time_holders:  # as `pixelpipe.app` does
        pixels.holders = ReadHolders(pixels, settings.read_time_holders, settings.read_time_cap_s)
    do_not_track = DoNotTrack(settings.keyring)

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await pixels.stop()  # as `pixelpipe.app`'s lifespan does
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b"fallback"
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    edge = Edge(
        keyring=settings.keyring,
        publisher=bus,
        trusted_proxies=(),
        fallback=fallback,
        do_not_track=do_not_track,
        native=settings.native_edge,
        read_time=pixels,
    )
    assert (edge.pixel_path is not None) == (native == "on")
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)  # as `pixelpipe.cli` serves it
    with serving_server(edge, http=protocol, loop="uvloop") as (base, uvicorn_server):
        host, port = base.removeprefix("http://").split(":")
        yield _Server(host, int(port), bus, pixels, do_not_track, uvicorn_server, holders)


@pytest.fixture(scope="module", params=["off", "on"], ids=["python", "native"])
def native(request: pytest.FixtureRequest) -> NativeEdge:
    if request.param == "on":
        require_native()
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=[0, 1], ids=["in-edge", "holder"])
def holders(request: pytest.FixtureRequest) -> int:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def _module_server(native: NativeEdge, holders: int) -> Iterator[_Server]:
    with _serving(native, holders) as server:
        yield server


@pytest.fixture
def server(_module_server: _Server) -> _Server:
    with _module_server.bus._lock:
        _module_server.bus.lines.clear()
    return _module_server


def _assert_read_time_head(status: str, headers: dict[str, str], *, close: bool = False) -> None:
    assert status == "HTTP/1.1 200 OK"
    assert list(headers)[2:] == [
        "content-type",
        "content-length",
        "cache-control",
        "pragma",
        "expires",
        *(["connection"] if close else []),
    ]
    assert headers["content-type"] == "image/gif"
    assert headers["content-length"] == str(GIF.content_length)
    assert headers["cache-control"] == NO_STORE
    assert (headers["pragma"], headers["expires"]) == ("no-cache", "0")


def _assert_names_the_open(record: ReadRecord, open_hit: RawHit) -> None:
    assert open_hit.kind == "open"
    assert open_hit.token_ok
    assert record.read_of == open_hit.hit_id
    assert (record.account, record.campaign_id, record.message_id) == ("acme", "spring-sale", "msg-1")
    assert record.recipient_tag == TAG.hex() == open_hit.recipient_tag
    assert record.opened_at_ms == open_hit.received_at_ms
    assert record.ended_at_ms >= record.opened_at_ms


# -- held: closed, cap


def test_a_client_that_closes_at_1_s_makes_one_closed_record_of_about_1_s(server: _Server) -> None:
    closed_before = _sample("pixelpipe_read_time_records_total", end="closed")
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif"))
        status, headers = conn.head()
        _assert_read_time_head(status, headers)
        assert conn.body(len(GIF.head)) == GIF.head
        hits = server.bus.wait_hits(1)  # the open is published at once, before anything is measured
        assert server.bus.reads() == []
        assert _sample("pixelpipe_read_time_held") >= 1
        # Held by a holder process (its frames written there) when there is one, by the edge otherwise
        # (handed over just after the head was written, in the server's thread).
        handed = _eventually if server.holders else (lambda value: value())
        assert handed(lambda: _sample("pixelpipe_read_time_handed_over")) == server.holders
        time.sleep(1.0)
    reads = server.bus.wait_reads(1)
    assert len(hits) == 1
    assert [r.end for r in reads] == ["closed"]
    assert 700 <= reads[0].read_ms <= 2500
    _assert_names_the_open(reads[0], hits[0])
    assert _sample("pixelpipe_read_time_records_total", end="closed") == closed_before + 1
    # The open, then its record, keyed alike (on Kafka: one partition, in that order).
    assert [is_read_line(line) for _, line in server.bus.lines] == [False, True]
    assert server.bus.lines[1][0] == reads[0].partition_key == hits[0].partition_key
    assert server.pixels.held == 0


def test_reading_to_the_cap_gets_the_whole_animation_and_the_connection_serves_on(server: _Server) -> None:
    with server.connect() as conn:
        started = time.monotonic()
        conn.send(_get(f"/o/{TIMED}.gif"))
        status, headers = conn.head()
        _assert_read_time_head(status, headers)
        assert conn.body(len(GIF.head)) == GIF.head
        assert conn.body(len(FRAME)) == FRAME  # the second frame, about a second later
        assert time.monotonic() - started >= 0.5
        rest = conn.body(GIF.content_length - len(GIF.head) - len(FRAME))
        took = time.monotonic() - started
        assert GIF.head + FRAME + rest == GIF.whole
        assert 2.5 <= took <= 10
        reads = server.bus.wait_reads(1)
        assert [r.end for r in reads] == ["cap"]
        assert 2500 <= reads[0].read_ms <= 4500
        # Keep-alive: the same connection answers the next request, a plain pixel.
        conn.send(_get(f"/o/{PLAIN}.gif"))
        response = conn.response()
        assert response.headers["content-length"] == "43"
        assert response.body == PIXEL_GIF
        hits = server.bus.wait_hits(2)
    assert [h.message_id for h in hits] == ["msg-1", "msg-plain"]
    _assert_names_the_open(reads[0], hits[0])
    assert len(server.bus.reads()) == 1


def test_after_the_cap_an_idle_kept_alive_connection_closes_at_the_idle_timeout(
    native: NativeEdge, holders: int
) -> None:
    """Once the animation is complete, the connection waits for its next request as any kept-alive one:
    closed at the idle timeout (1 s here), counted ``idle_timeout``, not at the header timeout (10 s), even
    when a holder wrote the frames and handed it back."""
    with _serving(native, holders, PIXELPIPE_IDLE_TIMEOUT_MS="1000") as server, server.connect() as conn:
        idle_before = _sample("pixelpipe_http_connections_closed_total", reason="idle_timeout")
        header_before = _sample("pixelpipe_http_connections_closed_total", reason="header_timeout")
        conn.send(_get(f"/o/{TIMED}.gif"))
        conn.head()
        assert conn.body(GIF.content_length) == GIF.whole
        completed = time.monotonic()
        assert conn.rest() == b""  # closed by the edge
        closed_after = time.monotonic() - completed
        assert [r.end for r in server.bus.wait_reads(1)] == ["cap"]
    assert 0.5 <= closed_after < 5
    assert _sample("pixelpipe_http_connections_closed_total", reason="idle_timeout") == idle_before + 1
    assert _sample("pixelpipe_http_connections_closed_total", reason="header_timeout") == header_before


def test_a_pixel_pipelined_behind_a_held_one_is_answered_after_it_in_order(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif") + _get(f"/o/{PLAIN}.gif") + _get("/other"))
        first = conn.response()
        second = conn.response()
        third = conn.response()
        hits = server.bus.wait_hits(2)
        reads = server.bus.wait_reads(1)
    assert first.body == GIF.whole
    assert second.body == PIXEL_GIF
    assert third.body == b"fallback"
    assert [h.message_id for h in hits] == ["msg-1", "msg-plain"]
    assert [r.end for r in reads] == ["cap"]
    _assert_names_the_open(reads[0], hits[0])


def test_a_request_sent_while_held_is_answered_after_the_trailer(server: _Server) -> None:
    """Sent once the head has arrived (so, with a holder, after the hand-over): it waits for the trailer,
    and the connection then serves it (handed back by the holder with what the client sent meanwhile)."""
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif"))
        conn.head()
        assert conn.body(len(GIF.head)) == GIF.head
        conn.send(_get(f"/o/{PLAIN}.gif") + _get("/other"))
        rest = conn.body(GIF.content_length - len(GIF.head))
        second = conn.response()
        third = conn.response()
        hits = server.bus.wait_hits(2)
        reads = server.bus.wait_reads(1)
    assert GIF.head + rest == GIF.whole
    assert second.body == PIXEL_GIF
    assert third.body == b"fallback"
    assert [h.message_id for h in hits] == ["msg-1", "msg-plain"]
    assert [r.end for r in reads] == ["cap"]


def test_connection_close_gets_the_whole_animation_then_a_close(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif", "Connection: close"))
        status, headers = conn.head()
        _assert_read_time_head(status, headers, close=True)
        assert conn.rest() == GIF.whole
    assert [r.end for r in server.bus.wait_reads(1)] == ["cap"]


def test_a_timed_open_with_a_body_is_held_and_its_body_dropped(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif", "Content-Length: 5") + b"hello" + _get(f"/o/{PLAIN}.gif"))
        first = conn.response()
        second = conn.response()
        reads = server.bus.wait_reads(1)
    assert first.body == GIF.whole
    assert second.body == PIXEL_GIF
    assert [r.end for r in reads] == ["cap"]


# -- not held: proxies, the ASGI path, HEAD, do-not-track, forged tokens


def test_an_image_proxy_gets_the_whole_gif_at_once_and_a_proxy_record(server: _Server) -> None:
    proxy_before = _sample("pixelpipe_read_time_unheld_total", reason="proxy")
    with server.connect() as conn:
        started = time.monotonic()
        conn.send(_get(f"/o/{TIMED}.gif", ua=GMAIL_PROXY))
        response = conn.response()
        assert time.monotonic() - started < CAP_S - 1  # at once, not held
        hits = server.bus.wait_hits(1)
        reads = server.bus.wait_reads(1)
    assert response.body == GIF.whole
    _assert_read_time_head(response.status, response.headers)
    assert [(r.end, r.read_ms) for r in reads] == [("proxy", 0)]
    _assert_names_the_open(reads[0], hits[0])
    assert _sample("pixelpipe_read_time_unheld_total", reason="proxy") == proxy_before + 1


def test_a_timed_open_on_the_asgi_path_is_sent_whole_and_counted(server: _Server) -> None:
    """Pipelined behind a request on the ASGI path, a timed open takes that path too: it is not held there
    (a graceful shutdown must not wait for it), so it is sent whole, ``busy``, counted as ``asgi``."""
    asgi_before = _sample("pixelpipe_read_time_unheld_total", reason="asgi")
    with server.connect() as conn:
        conn.send(_get("/other") + _get(f"/o/{TIMED}.gif"))
        assert conn.response().body == b"fallback"
        response = conn.response()
        hits = server.bus.wait_hits(1)
        reads = server.bus.wait_reads(1)
    assert response.body == GIF.whole
    assert response.headers["content-length"] == str(GIF.content_length)
    assert [(r.end, r.read_ms) for r in reads] == [("busy", 0)]
    _assert_names_the_open(reads[0], hits[0])
    assert _sample("pixelpipe_read_time_unheld_total", reason="asgi") == asgi_before + 1


def test_head_on_a_timed_open_is_its_head_alone_and_nothing_is_published(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif", method="HEAD"))
        response = conn.response(head_only=True)
        _assert_read_time_head(response.status, response.headers)
        conn.send(_get(f"/o/{PLAIN}.gif"))  # published in order: had the HEAD published, it would be first
        assert conn.response().body == PIXEL_GIF
        hits = server.bus.wait_hits(1)
    assert [h.message_id for h in hits] == ["msg-plain"]
    assert server.bus.reads() == []


def test_a_recipient_on_do_not_track_gets_the_plain_gif_and_nothing_is_published(server: _Server) -> None:
    server.do_not_track.add("acme", "ann@example.com")
    try:
        with server.connect() as conn:
            conn.send(_get(f"/o/{TIMED}.gif"))
            response = conn.response()
            conn.send(_get(f"/o/{_other_recipient_plain()}.gif"))
            assert conn.response().body == PIXEL_GIF
            hits = server.bus.wait_hits(1)
    finally:
        server.do_not_track.remove("acme", "ann@example.com")
    assert response.body == PIXEL_GIF
    assert response.headers["content-length"] == "43"
    assert [h.message_id for h in hits] == ["msg-other"]
    assert server.bus.reads() == []


def _other_recipient_plain() -> str:
    """A plain open of another recipient's message (not on do-not-track)."""
    tag = recipient_tag(SECRET.encode(), "acme", "bob@example.com")
    claim = dataclasses.replace(TIMED_CLAIM, kind=TokenKind.OPEN, message_id="msg-other", recipient_tag=tag)
    return sign(claim, KEYS)


def test_a_forged_timed_token_gets_the_plain_gif_and_an_invalid_hit(server: _Server) -> None:
    forged = TIMED[:12] + ("B" if TIMED[12] != "B" else "C") + TIMED[13:]
    with server.connect() as conn:
        conn.send(_get(f"/o/{forged}.gif"))
        response = conn.response()
        hits = server.bus.wait_hits(1)
    assert response.body == PIXEL_GIF
    assert [(h.token_ok, h.token_error) for h in hits] == [(False, "bad signature")]
    assert server.bus.reads() == []


def test_a_plain_open_is_answered_as_before(server: _Server) -> None:
    with server.connect() as conn:
        conn.send(_get(f"/o/{PLAIN}.gif"))
        response = conn.response()
        hits = server.bus.wait_hits(1)
    assert response.status == "HTTP/1.1 200 OK"
    names = ["content-type", "content-length", "cache-control", "pragma", "expires"]
    assert list(response.headers)[2:] == names
    assert response.headers["content-length"] == "43"
    assert response.body == PIXEL_GIF
    assert [(h.message_id, h.token_ok) for h in hits] == [("msg-plain", True)]
    assert server.bus.reads() == []


# -- the cap of held pixels; a graceful stop


def test_beyond_max_held_the_gif_goes_whole_busy_and_is_counted(native: NativeEdge, holders: int) -> None:
    with _serving(native, holders, PIXELPIPE_READ_TIME_MAX_HELD="1") as server:
        busy_before = _sample("pixelpipe_read_time_unheld_total", reason="busy")
        with server.connect() as first, server.connect() as second:
            first.send(_get(f"/o/{TIMED}.gif"))
            _assert_read_time_head(*first.head())
            assert first.body(len(GIF.head)) == GIF.head
            assert server.pixels.held == 1
            started = time.monotonic()
            second.send(_get(f"/o/{TIMED}.gif"))
            response = second.response()
            assert time.monotonic() - started < CAP_S - 1  # at once
            assert response.body == GIF.whole
            _assert_read_time_head(response.status, response.headers)
            reads = server.bus.wait_reads(1)
            assert [(r.end, r.read_ms) for r in reads] == [("busy", 0)]
            assert _sample("pixelpipe_read_time_unheld_total", reason="busy") == busy_before + 1
        reads = server.bus.wait_reads(2)
        hits = server.bus.wait_hits(2)
    assert sorted(r.end for r in reads) == ["busy", "closed"]
    assert sorted(r.read_of for r in reads) == sorted(h.hit_id for h in hits)


def test_a_graceful_stop_ends_a_held_pixel_at_once_with_a_stopped_record(
    native: NativeEdge, holders: int
) -> None:
    with _serving(native, holders, PIXELPIPE_READ_TIME_CAP_SECONDS="60") as server, server.connect() as conn:
        conn.send(_get(f"/o/{TIMED}.gif"))
        conn.head()
        assert conn.body(len(ReadGif(60).head)) == ReadGif(60).head
        time.sleep(1.2)
        stop_asked = time.monotonic()
        server.uvicorn_server.should_exit = True  # uvicorn's graceful shutdown, as on SIGTERM
        rest = conn.rest()  # closed by the server, long before the cap
        closed_after = time.monotonic() - stop_asked
        reads = server.bus.wait_reads(1)  # a holder's report reaches the edge just after it closed
        hits = server.bus.hits()
    assert closed_after < 5
    assert set(rest) <= set(FRAME)  # at most a frame or two, never the trailer
    assert [r.end for r in reads] == ["stopped"]
    assert 1000 <= reads[0].read_ms <= 6000
    assert reads[0].read_of == hits[0].hit_id


def test_a_holder_that_dies_ends_its_pixels_stopped_and_another_is_started(native: NativeEdge) -> None:
    with _serving(native, 1, PIXELPIPE_READ_TIME_CAP_SECONDS="60") as server:
        holders = server.pixels.holders
        assert isinstance(holders, ReadHolders)
        lost_before = _sample("pixelpipe_read_time_holders_lost_total")
        with server.connect() as conn:
            conn.send(_get(f"/o/{TIMED}.gif"))
            conn.head()
            assert conn.body(len(ReadGif(60).head)) == ReadGif(60).head
            hits = server.bus.wait_hits(1)
            assert _eventually(lambda: _sample("pixelpipe_read_time_handed_over")) == 1
            pid = holders.links[0].pid
            assert pid is not None
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            assert set(conn.rest()) <= set(FRAME)  # closed with the holder
        reads = server.bus.wait_reads(1)
        assert [(r.end, r.read_of) for r in reads] == [("stopped", hits[0].hit_id)]
        assert 300 <= reads[0].read_ms <= 5000
        assert server.pixels.held == 0
        assert _sample("pixelpipe_read_time_holders_lost_total") == lost_before + 1
        time.sleep(2.1)  # started again 2 s after its last start: the wait doubles with each loss
        with server.connect() as conn:
            conn.send(_get(f"/o/{TIMED}.gif"))
            conn.head()
            assert conn.body(len(ReadGif(60).head)) == ReadGif(60).head
            server.bus.wait_hits(2)
            assert _eventually(lambda: _sample("pixelpipe_read_time_handed_over")) == 1
            assert holders.links[0].pid not in (None, pid)
        reads = server.bus.wait_reads(2)
    assert [r.end for r in reads] == ["stopped", "closed"]
