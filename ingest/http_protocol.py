"""The HTTP/1.1 protocol the edge role serves with: uvicorn's httptools protocol, with two changes.

**Pixels and clicks below ASGI.** A request for ``/o/…`` or ``/c/…`` on an idle connection is answered from
the parser's callbacks: `ingest.edge.Edge.serve` decides the answer, and its bytes (uvicorn's status line and
default headers, then the answer's) go to the socket in one ``write``. No ASGI scope, no task, no
``RequestResponseCycle``: that machinery cost about as much as everything else a pixel does. The request
takes uvicorn's usual ASGI path instead (and reaches the same `Edge` as an ASGI app) when it is not
alone: a pipelined request behind one still running, a connection whose peer is not reading (write
buffer over its high-water mark: the ASGI path waits for it), an upgrade, a URL that is not ASCII.
Keep-alive follows uvicorn: HTTP/1.0 or ``Connection: close`` gets ``connection: close`` and a close.

**One write per response on the ASGI path too.** Each response's head is held back until what follows it,
so a response that is complete at once leaves in one ``write`` system call instead of two. A held head
waits for at most the rest of the current event-loop iteration: the response's next write takes it along,
and otherwise a callback scheduled when it was held writes it alone (the answer to a HEAD, a stream whose
first chunk is not ready yet). This must never reorder bytes, never hold anything but a response's first
write, and never close a connection with a held head unsent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
from typing import Any, Final, cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from ingest.client_ip import client_ip, forwarded_for_counts
from ingest.edge import BAD_LINK, METHOD_NOT_ALLOWED, PIXEL, PIXEL_HEAD, Answer, Edge
from ingest.native import PixelPath

log = logging.getLogger(__name__)

_HOT_PREFIXES: Final = (b"/o/", b"/c/")
# Answers that never change: their bytes are built once per set of default headers (uvicorn renews the
# date header every second).
_CONSTANT_ANSWERS: Final = {id(a): a for a in (PIXEL, PIXEL_HEAD, METHOD_NOT_ALLOWED, BAD_LINK)}


def encode_answer(
    answer: Answer, default_headers: list[tuple[bytes, bytes]], keep_alive: bool, with_body: bool = True
) -> bytes:
    """The response's bytes as uvicorn would write them: status line, its default headers, the answer's
    (and its body unless ``with_body`` is false: the answer to a HEAD)."""
    parts = [STATUS_LINE[answer.status]]
    for name, value in default_headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in answer.headers:
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", answer.body if with_body else b"")
    return b"".join(parts)


class _EncodedAnswers:
    """`encode_answer` of the constant answers, rebuilt whenever uvicorn swaps its default headers."""

    def __init__(self) -> None:
        self._for: list[tuple[bytes, bytes]] | None = None
        self._bytes: dict[tuple[int, bool, bool], bytes] = {}

    def get(
        self, answer: Answer, default_headers: list[tuple[bytes, bytes]], keep_alive: bool, with_body: bool
    ) -> bytes:
        if _CONSTANT_ANSWERS.get(id(answer)) is not answer:
            return encode_answer(answer, default_headers, keep_alive, with_body)
        if default_headers is not self._for:
            self._for = default_headers
            self._bytes = {}
        key = (id(answer), keep_alive, with_body)
        encoded = self._bytes.get(key)
        if encoded is None:
            encoded = self._bytes[key] = encode_answer(answer, default_headers, keep_alive, with_body)
        return encoded


_ENCODED: Final = _EncodedAnswers()


class _Answered:
    """Stands in for uvicorn's ``RequestResponseCycle`` of a request answered below ASGI: complete, so the
    parser's body callbacks, a graceful shutdown and the next request treat it as done."""

    __slots__ = ("disconnected", "keep_alive")
    response_complete: Final = True

    def __init__(self) -> None:
        self.disconnected = False
        self.keep_alive = True

    class message_event:  # noqa: N801  # uvicorn calls cycle.message_event.set() when the peer goes
        @staticmethod
        def set() -> None:
            return None


_ANSWERED: Final = _Answered()


class _HeadCoalescer:
    """What the request-response cycles of one connection write to, in front of its transport: the first
    write after `arm` (a response's head) is held, and goes out with the next write, at `close`, or from
    the callback scheduled when it was held, whichever comes first."""

    __slots__ = ("_armed", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._armed = False
        self._held: bytes | None = None

    def arm(self) -> None:
        """A response begins: hold its first write."""
        self._armed = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._armed:
            self._armed = False
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # else the peer is gone: nobody to write to
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` answering pixels and clicks itself when the app is an `Edge`, with
    `_HeadCoalescer` between the ASGI path's responses and the socket.

    Every place where the connection itself (not a response) closes the transport flushes a held head
    first: a graceful shutdown, the keep-alive timeout, a 400 for a malformed request."""

    _coalescer: _HeadCoalescer
    _edge: Edge | None
    _peer: str | None
    _keep_alive: bool
    _with_body: bool
    _pixel_path: PixelPath | None
    _client_ip: str  # the peer's address: the client's, unless X-Forwarded-For counts
    _forwarded_for_counts: bool
    _between_messages: bool  # the parser holds no part of a request
    # When the native path last answered (loop time). It leaves a keep-alive timer running rather than
    # cancelling and re-arming one per request, as uvicorn does: the timer, when it fires, waits on for what
    # remains of the timeout since this answer.
    _answered_at: float

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._coalescer = _HeadCoalescer(transport, self.loop)
        edge = self._edge = self.app if isinstance(self.app, Edge) else None
        self._peer = self.client[0] if self.client else None
        self._keep_alive = True
        self._with_body = True
        self._pixel_path = edge.pixel_path if edge is not None else None
        proxies = edge.trusted_proxies if edge is not None else ()
        self._client_ip = client_ip(self._peer, None, proxies)
        self._forwarded_for_counts = forwarded_for_counts(self._peer, proxies)
        self._between_messages = True
        self._answered_at = -math.inf

    # -- the native fast path

    def data_received(self, data: bytes) -> None:
        pixel_path = self._pixel_path
        if pixel_path is not None and self._between_messages and self._answers_alone():
            edge = cast(Edge, self._edge)
            try:
                found = pixel_path.answer(
                    data, self._client_ip, self._forwarded_for_counts, int(edge.clock() * 1000)
                )
            except Exception:  # nothing is answered yet: the Python path serves it
                log.exception("the native fast path failed on a request")
                found = None
            if found is not None:
                keep_alive, recipient_tag, key, line = found
                self.cycle = cast(RequestResponseCycle, _ANSWERED)
                transport = self.transport
                transport.write(_ENCODED.get(PIXEL, self.server_state.default_headers, keep_alive, True))
                self.server_state.total_requests += 1
                if keep_alive:
                    self._answered_at = self.loop.time()
                    if self.timeout_keep_alive_task is None:
                        self.timeout_keep_alive_task = self.loop.call_later(
                            self.timeout_keep_alive, self.timeout_keep_alive_handler
                        )
                else:
                    transport.close()
                edge.record_pixel_line(recipient_tag, key, line)
                return
        super().data_received(data)

    # -- below ASGI

    def on_message_begin(self) -> None:
        # The ASGI scope is built in `on_headers_complete`, and only for requests that take the ASGI path.
        self._between_messages = False
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_message_complete(self) -> None:
        self._between_messages = True
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        edge = self._edge
        if edge is not None and self.url[:3] in _HOT_PREFIXES and self._answers_alone() and self._serve(edge):
            return
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()  # the ASGI scope, as uvicorn builds it
        self.url, self.expect_100_continue = url, expect_100_continue
        self.headers = self.scope["headers"] = headers
        super().on_headers_complete()

    def _answers_alone(self) -> bool:
        """Nothing else is in progress on this connection, and the peer reads what it is sent."""
        cycle = self.cycle
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and not self.parser.should_upgrade()
            and not self.transport.is_closing()
        )

    def _serve(self, edge: Edge) -> bool:
        path_bytes = self.url.partition(b"?")[0]
        try:
            path = path_bytes.decode("ascii")
        except UnicodeDecodeError:
            return False  # uvicorn's path answers it as it answers any such request
        if "%" in path:
            path = urllib.parse.unquote(path)
        parser = self.parser
        self._keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        method = parser.get_method().decode("ascii", "replace")
        self._with_body = method != "HEAD"
        self.cycle = cast(RequestResponseCycle, _ANSWERED)
        return edge.serve(method, path, self._peer, self.headers, self._respond)

    def _respond(self, answer: Answer) -> None:
        keep_alive = self._keep_alive
        default_headers = self.server_state.default_headers
        self.transport.write(_ENCODED.get(answer, default_headers, keep_alive, self._with_body))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts the request; pipelining and the keep-alive timer as uvicorn does

    # -- the ASGI path

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # A request answered below ASGI armed the keep-alive timer, and one pipelined behind it in the same
        # read was never preceded by the `data_received` that would cancel it: no timer while a request runs.
        self._unset_keepalive_if_required()
        self._coalescer.arm()
        cycle.transport = cast(asyncio.Transport, self._coalescer)
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        self._coalescer.flush()
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        idle_s = self.loop.time() - self._answered_at
        if idle_s < self.timeout_keep_alive:  # a native answer since the timer was armed: wait on
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle_s, self.timeout_keep_alive_handler
            )
            return
        self._coalescer.flush()
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        self._coalescer.flush()
        super().send_400_response(msg)
