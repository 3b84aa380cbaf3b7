"""The edge under hostile clients (issue 14), over real sockets, on both paths (Python alone, and the native
fast path in front of it): a head that never completes (slowloris), a connection that never speaks, an
idle kept-alive connection, a head over the limit, HTTP/0.9, a GET with a huge ``Content-Length``, and
connections beyond the cap. Each close by a bound is counted by reason in
``pixelpipe_http_connections_closed_total``; the counts asserted are exact.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.connection_bounds import ConnectionBounds
from ingest.edge import PIXEL_GIF
from ingest.native import NativeEdge
from tests.integration.test_edge_below_asgi import OPEN, _assert_pixel, _get, _Server, _serving
from tests.native import require_native

HEADER_TIMEOUT_S = 0.5
IDLE_TIMEOUT_S = 1.0
MAX_HEAD = 8 * 1024
CAP = 40
BOUNDS = ConnectionBounds(
    header_timeout_s=HEADER_TIMEOUT_S,
    idle_timeout_s=IDLE_TIMEOUT_S,
    max_head_bytes=MAX_HEAD,
    max_connections=CAP,
)
REASONS = ("header_timeout", "body_timeout", "idle_timeout", "head_too_large", "evicted", "refused")


@pytest.fixture(scope="module", params=["off", "on"], ids=["python", "native"])
def _module_server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    native: NativeEdge = request.param
    if native == "on":
        require_native()
    with _serving(native=native, connection_bounds=BOUNDS) as server:
        yield server


@pytest.fixture
def server(_module_server: _Server) -> Iterator[_Server]:
    _module_server.reset()
    yield _module_server
    # Every connection a test opened is closed before the next test counts.
    time.sleep(0.05)


def _closed() -> dict[str, float]:
    name = "pixelpipe_http_connections_closed_total"
    return {reason: REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0 for reason in REASONS}


def _delta(before: dict[str, float]) -> dict[str, float]:
    after = _closed()
    return {reason: after[reason] - before[reason] for reason in REASONS if after[reason] != before[reason]}


def _closed_by_server(sock: socket.socket, within_s: float = 10.0) -> float:
    """Seconds until the server closes ``sock`` (everything it sends meanwhile is dropped); fails if it
    does not within ``within_s``."""
    start = time.monotonic()
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {within_s} s")
    return time.monotonic() - start


def _raw(server: _Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- timeouts


def test_a_slowloris_head_is_closed_after_the_header_timeout(server: _Server) -> None:
    before = _closed()
    stop = threading.Event()
    with _raw(server) as sock:

        def trickle() -> None:  # one byte of a head every 100 ms, for ever
            for byte in _get(f"/o/{OPEN}.gif", *(f"X-Pad-{i}: {'a' * 40}" for i in range(100))):
                if stop.wait(0.1):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            waited = _closed_by_server(sock)
        finally:
            stop.set()
            sender.join()
    assert waited >= HEADER_TIMEOUT_S - 0.05  # the bytes kept coming: only the header timeout closed it
    assert _delta(before) == {"header_timeout": 1}
    assert server.publisher.hits == []
    assert server.asgi_tasks == []


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: _Server) -> None:
    before = _closed()
    with _raw(server) as sock:
        _closed_by_server(sock)
    assert _delta(before) == {"header_timeout": 1}


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(server: _Server) -> None:
    before = _closed()
    with server.connect() as conn:
        for _ in range(2):
            conn.send(_get(f"/o/{OPEN}.gif"))
            response = conn.response()
            _assert_pixel(response)
            assert response.body == PIXEL_GIF
        assert conn.rest() == b""  # then nothing: the server closes it
    assert _delta(before) == {"idle_timeout": 1}
    assert len(server.publisher.wait(2)) == 2
    server.natively_answered(2)


def test_a_head_begun_after_an_idle_spell_must_complete_within_the_header_timeout(server: _Server) -> None:
    before = _closed()
    with server.connect() as conn:
        conn.send(_get(f"/o/{OPEN}.gif"))
        assert conn.response().body == PIXEL_GIF
        conn.send(b"GET /o/")  # and never the rest, nor anything else
        assert conn.rest() == b""
    assert _delta(before) == {"header_timeout": 1}


def test_blank_lines_do_not_hold_a_connection(server: _Server) -> None:
    before = _closed()
    stop = threading.Event()
    with _raw(server) as sock:

        def blank_lines() -> None:  # CRLF between requests is allowed, and begins no request
            while not stop.wait(0.1):
                try:
                    sock.send(b"\r\n")
                except OSError:
                    return

        sender = threading.Thread(target=blank_lines)
        sender.start()
        try:
            _closed_by_server(sock)
        finally:
            stop.set()
            sender.join()
    assert _delta(before) == {"header_timeout": 1}


def test_an_unfinished_http_0_9_request_line_is_closed_after_the_header_timeout(server: _Server) -> None:
    before = _closed()
    with _raw(server) as sock:
        sock.sendall(f"GET /o/{OPEN}.gif\r\n".encode())
        assert _closed_by_server(sock) >= HEADER_TIMEOUT_S - 0.05
    assert _delta(before) == {"header_timeout": 1}
    assert server.publisher.hits == []


@pytest.mark.parametrize("path", [f"/o/{OPEN}.gif", "/other"], ids=["pixel", "asgi"])
def test_a_complete_http_0_9_request_is_answered_then_closed(server: _Server, path: str) -> None:
    with _raw(server) as sock:
        sock.sendall(f"GET {path}\r\n\r\n".encode())
        data = b""
        sock.settimeout(5)
        while chunk := sock.recv(65536):
            data += chunk
    # Answered as any request whose version does not keep the connection alive, and closed.
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\nconnection: close")
    assert body == (PIXEL_GIF if path.startswith("/o/") else b"fallback")


@pytest.mark.parametrize("path", [f"/o/{OPEN}.gif", "/other"], ids=["pixel", "asgi"])
def test_a_get_with_a_huge_content_length_is_answered_then_closed(server: _Server, path: str) -> None:
    before = _closed()
    with server.connect() as conn:
        conn.send(_get(path, "Content-Length: 1000000000000"))
        response = conn.response()
        assert response.status == "HTTP/1.1 200 OK"
        conn.send(b"x" * 1000)  # some of the body, never all of it
        assert conn.rest() == b""
    assert _delta(before) == {"body_timeout": 1}
    if path == "/other":
        assert server.fallback.paths == ["/other"]
    else:
        assert response.body == PIXEL_GIF
        assert len(server.publisher.wait(1)) == 1


def test_a_body_that_never_completes_is_closed_after_the_header_timeout(server: _Server) -> None:
    # An API route waits for the whole body: a client that sends its head, then a trickle of the body
    # (slowloris on the body), must not hold the connection (never evictable: a request is in progress).
    before = _closed()
    sock = _raw(server)
    try:
        sock.sendall(_get("/upload", "Content-Length: 100", method="POST") + b"x" * 10)
        elapsed = _closed_by_server(sock, within_s=5)
    finally:
        sock.close()
    assert elapsed >= HEADER_TIMEOUT_S * 0.8
    assert _delta(before) == {"body_timeout": 1}
    assert server.fallback.paths == ["/upload"]


def test_a_body_that_completes_in_time_is_answered_and_the_connection_serves_on(server: _Server) -> None:
    before = _closed()
    with server.connect() as conn:
        conn.send(_get("/upload", "Content-Length: 10", method="POST") + b"hello")
        time.sleep(HEADER_TIMEOUT_S / 2)
        conn.send(b"world")
        assert conn.response().body == b"fallback"
        time.sleep(HEADER_TIMEOUT_S + 0.2)  # past the body deadline (before the idle timeout): none runs
        conn.send(_get(f"/o/{OPEN}.gif"))
        assert conn.response().body == PIXEL_GIF
    assert _delta(before) == {}


def test_a_small_body_is_read_and_the_connection_serves_on(server: _Server) -> None:
    before = _closed()
    with server.connect() as conn:
        conn.send(_get(f"/o/{OPEN}.gif", "Content-Length: 5") + b"hello")
        assert conn.response().body == PIXEL_GIF
        time.sleep(HEADER_TIMEOUT_S + 0.2)  # past the body deadline (before the idle timeout): none runs
        conn.send(_get(f"/o/{OPEN}.gif"))
        assert conn.response().body == PIXEL_GIF
    assert _delta(before) == {}


# -- the head limit


def test_a_head_at_the_limit_is_served(server: _Server) -> None:
    request = _get(f"/o/{OPEN}.gif", "X-Pad: ")
    request = request[:-4] + b"a" * (MAX_HEAD - len(request)) + b"\r\n\r\n"
    assert len(request) == MAX_HEAD
    with server.connect() as conn:
        conn.send(request)
        response = conn.response()
    _assert_pixel(response)
    assert response.body == PIXEL_GIF


def test_pipelined_requests_past_the_head_limit_in_one_read_are_each_served(server: _Server) -> None:
    """The limit is per head: 200 pipelined pixels (4 times the limit in all) sent in one write are
    answered 200 times, with nothing refused."""
    before = _closed()
    request = _get(f"/o/{OPEN}.gif")
    assert len(request) * 200 > 4 * MAX_HEAD
    with _raw(server) as sock:
        sock.sendall(request * 200)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 200:
            chunk = sock.recv(1 << 16)
            assert chunk, f"closed after {answers.count(b'HTTP/1.1 200 OK')} answers"
            answers += chunk
    assert answers.count(b"HTTP/1.1 ") == 200
    assert len(server.publisher.wait(200)) == 200
    assert _delta(before) == {}


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "unfinished"])
def test_a_head_over_the_limit_is_a_431_and_a_close(server: _Server, complete: bool) -> None:
    before = _closed()
    end = b"\r\n\r\n" if complete else b""
    start = _get(f"/o/{OPEN}.gif", "X-Pad: ")[:-4]
    request = start + b"a" * (MAX_HEAD + 1 - len(start) - len(end)) + end
    assert len(request) == MAX_HEAD + 1
    response = server.closing_answer(request)
    assert response.status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert response.header("connection") == "close"
    assert response.body == b"Request header fields too large.\n"
    assert _delta(before) == {"head_too_large": 1}
    server.natively_answered(0)
    assert server.publisher.hits == []
    assert server.asgi_tasks == []


def _rss_bytes() -> int:
    # The server runs in this process (a thread): its memory is ours.
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def test_unfinished_huge_heads_are_refused_with_bounded_memory(server: _Server) -> None:
    """Twenty connections each sending a 4 MB head that never ends: each is answered 431 once it passes
    the limit, and the server keeps no more than the limit of each."""
    before = _closed()
    rss_before = _rss_bytes()
    chunk = b"X-Pad: " + b"a" * 65_536
    socks = [_raw(server) for _ in range(20)]
    try:
        for sock in socks:
            sock.settimeout(0.5)
            sock.sendall(b"GET /o/x.gif HTTP/1.1\r\nHost: x\r\n")
        for _ in range(64):  # 4 MB each, interleaved
            for sock in socks:
                # The server may have answered and closed (or stopped reading): go on.
                with contextlib.suppress(OSError):
                    sock.sendall(chunk)
        grown = _rss_bytes() - rss_before
        answers = []
        for sock in socks:
            sock.settimeout(5)
            data = b""
            try:
                while chunk_in := sock.recv(65536):
                    data += chunk_in
            except ConnectionResetError:
                pass
            answers.append(data.partition(b"\r\n")[0])
    finally:
        for sock in socks:
            sock.close()
    assert grown < 16 * 1024 * 1024, f"RSS grew by {grown} bytes for 20 unfinished heads"
    assert answers == [b"HTTP/1.1 431 Request Header Fields Too Large"] * 20
    assert _delta(before) == {"head_too_large": 20}


# -- the connection cap


def test_beyond_the_cap_the_longest_waiting_connection_makes_room_for_a_real_pixel(server: _Server) -> None:
    before = _closed()
    slow = []
    try:
        for _ in range(CAP + 10):  # each sends one byte of a head, and nothing more
            sock = _raw(server)
            sock.sendall(b"G")
            slow.append(sock)
            time.sleep(0.002)  # accepted in this order
        with server.connect() as conn:
            conn.send(_get(f"/o/{OPEN}.gif"))
            response = conn.response()
        _assert_pixel(response)
        assert response.body == PIXEL_GIF
        # The eleven that waited longest were closed, one for each connection beyond the cap.
        for sock in slow[:11]:
            _closed_by_server(sock, within_s=5)
        assert _delta(before) == {"evicted": 11}
    finally:
        for sock in slow:
            sock.close()
    assert len(server.publisher.wait(1)) == 1


def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(server: _Server) -> None:
    server.fallback.slow_s = 1.5
    before = _closed()
    busy = []
    try:
        for _ in range(CAP):  # every slot holds a request in progress
            sock = _raw(server)
            sock.sendall(_get("/slow"))
            busy.append(sock)
        deadline = time.monotonic() + 10
        while server.fallback.paths.count("/slow") < CAP:
            assert time.monotonic() < deadline, "the slow requests did not all start"
            time.sleep(0.01)
        with _raw(server) as extra:
            _closed_by_server(extra, within_s=1.0)
        assert _delta(before) == {"refused": 1}
        for sock in busy:  # and the requests in progress were answered
            assert sock.recv(12) == b"HTTP/1.1 200"
    finally:
        server.fallback.slow_s = 0.0
        for sock in busy:
            sock.close()
