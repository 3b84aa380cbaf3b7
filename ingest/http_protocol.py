"""The HTTP/1.1 protocol the edge role serves with: uvicorn's httptools protocol, with two changes.

**Pixels and clicks below ASGI.** A request for ``/o/…`` or ``/c/…`` on an idle connection is answered from
the parser's callbacks: `ingest.edge.Edge.serve` decides the answer, and its bytes (uvicorn's status line and
default headers, then the answer's) go to the socket in one ``write``. No ASGI scope, no task, no
``RequestResponseCycle``: that machinery cost about as much as everything else a pixel does. The request
takes uvicorn's usual ASGI path instead (and reaches the same `Edge` as an ASGI app) when it is not
alone: a pipelined request behind one still running, a connection whose peer is not reading (write
buffer over its high-water mark: the ASGI path waits for it), an upgrade, a URL that is not ASCII.
Keep-alive follows uvicorn: HTTP/1.0 or ``Connection: close`` gets ``connection: close`` and a close.

**Read-time pixels held below ASGI.** A timed open answered here (`ingest.edge.TimedAnswer`) gets the
read-time GIF's head at once, and `ingest.read_time.HeldPixels` writes the rest a frame a second. Until its
trailer the response is in progress, as an ASGI response would be (`_HeldCycle` stands in for uvicorn's
cycle): a request pipelined behind it waits in uvicorn's queue and starts once the trailer is written
(uvicorn's ``on_response_complete``), no keep-alive or idle timer runs, and the cap never evicts it. The
client's close ends the measurement (``closed``); a graceful shutdown ends it (``stopped``) and closes the
connection at once instead of waiting for the cap.

**One write per response on the ASGI path too.** Each response's head is held back until what follows it,
so a response that is complete at once leaves in one ``write`` system call instead of two. A held head
waits for at most the rest of the current event-loop iteration: the response's next write takes it along,
and otherwise a callback scheduled when it was held writes it alone (the answer to a HEAD, a stream whose
first chunk is not ready yet). This must never reorder bytes, never hold anything but a response's first
write, and never close a connection with a held head unsent.

**Bounded connections** (`BoundedHttpProtocol`, under the edge's protocol and every other role's): the
`ingest.connection_bounds` a server is given. A head that takes longer than the header timeout closes the
connection; a kept-alive connection idle for the idle timeout closes; a head longer than the head limit is
answered ``431`` and the connection closed, having kept at most the limit (plus one read) of it; a request's
body must arrive within the header timeout of its head, or the connection closes (an API route waiting for a
trickling body, or a ``GET`` with a huge ``Content-Length`` whose body is read and dropped after its answer:
with a request in progress, such a connection is never the one evicted); beyond
the connection cap the longest-waiting connection is closed. Each such close is counted in
``pixelpipe_http_connections_closed_total`` by reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar, cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from ingest import metrics
from ingest.client_ip import client_ip, forwarded_for_counts
from ingest.connection_bounds import DEFAULT_BOUNDS, ConnectionBounds, ConnectionTable, connection_table
from ingest.edge import BAD_LINK, METHOD_NOT_ALLOWED, PIXEL, PIXEL_HEAD, Answer, Edge, TimedAnswer
from ingest.native import PixelPath
from ingest.read_time import Adopt, Held

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


class _Discarded:
    """Where the body of a request whose answer is held goes: nowhere (a pixel reads no body)."""

    def __iadd__(self, data: bytes) -> _Discarded:
        return self

    def __len__(self) -> int:
        return 0


_DISCARDED: Final = _Discarded()


class _HeldCycle:
    """Stands in for uvicorn's ``RequestResponseCycle`` of a timed open held below ASGI: in progress until
    its trailer (see the module's docstring). It is the held answer's connection for
    `ingest.read_time.HeldPixels` (`ingest.read_time.HeldConnection`)."""

    __slots__ = ("_protocol", "body", "disconnected", "held", "keep_alive", "more_body", "response_complete")
    message_event: Final = _Answered.message_event

    def __init__(self, protocol: EdgeHttpProtocol, keep_alive: bool) -> None:
        self._protocol = protocol
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.more_body = True
        self.body = _DISCARDED  # uvicorn adds a request's body to it (``cycle.body += …``): dropped
        self.held: Held | None = None

    def write(self, data: bytes) -> None:
        transport = self._protocol.transport
        if not transport.is_closing():
            transport.write(data)

    def complete(self) -> None:
        self.response_complete = True
        self._protocol.held_complete(self)

    def close(self) -> None:
        self._protocol.close_held()


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


_HEAD_TOO_LARGE: Final = b"Request header fields too large.\n"
# After a 431, what the client is still sending is read and dropped for at most this long before the
# close: closing a socket with unread data resets the connection, and the reset can overtake the answer.
_LINGER_S: Final = 2.0
_CLOSED = {
    reason: metrics.CONNECTIONS_CLOSED.labels(reason)
    for reason in ("header_timeout", "body_timeout", "idle_timeout", "head_too_large", "evicted", "refused")
}


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` held to `bounds` (see the module's docstring); `bounded` makes a
    subclass with other bounds."""

    bounds: ClassVar[ConnectionBounds] = DEFAULT_BOUNDS
    _table: ConnectionTable
    _head_timer: asyncio.TimerHandle | None  # the header timeout, while a head is awaited
    _head_used: int  # bytes read towards the current head (at most `bounds.max_head_bytes`)
    _heads_read: int  # heads completed on this connection (did one complete inside a read?)
    _reading_head: bool  # between messages or inside a head: what arrives counts towards a head
    _lingering: bool  # answered 431: what arrives is dropped until the close

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.bounds.idle_timeout_s  # type: ignore[assignment]  # uvicorn says int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.CONNECTIONS_OPEN.inc()
        self._head_timer = None
        self._head_used = 0
        self._heads_read = 0
        self._reading_head = True
        self._lingering = False
        table = self._table = connection_table(self.server_state)
        if not table.admit(self, self.bounds.max_connections):
            _CLOSED["refused"].inc()  # at the cap, and every connection has a request in progress
            transport.close()
            return
        self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.CONNECTIONS_OPEN.dec()
        self._table.gone(self)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # The connection passes to uvicorn's WebSocket protocol, whose close this one never sees.
        metrics.CONNECTIONS_OPEN.dec()
        self._table.gone(self)
        super().handle_websocket_upgrade()

    def evict(self) -> None:
        _CLOSED["evicted"].inc()
        self._close_connection()

    def _close_connection(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        timer = self._head_timer
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            _CLOSED["header_timeout" if self._reading_head else "body_timeout"].inc()
            self._close_connection()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            _CLOSED["idle_timeout"].inc()
        self._close_connection()

    # -- reading: the head limit

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._reading_head:
            room = self.bounds.max_head_bytes - self._head_used
            if len(data) > room:
                # Feed what fits: if a head completes inside it (pipelined requests complete many), go on
                # with the rest, the next head counted afresh; if none does, the head is too large.
                heads = self._heads_read
                if room > 0:
                    self._head_used += room
                    self._feed(data[:room])
                if self.transport.is_closing():
                    return
                if self._reading_head and self._heads_read == heads:
                    self._refuse_head()
                else:
                    self.data_received(data[room:])
                return
            self._head_used += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        super().data_received(data)
        # Waiting for a head with no timer running (a request begun after an idle spell, or bytes that
        # begin none, such as blank lines): the header timeout runs from here.
        if (
            self._reading_head
            and self._head_timer is None
            and self.timeout_keep_alive_task is None
            and (self.cycle is None or self.cycle.response_complete)
            and not self.transport.is_closing()
        ):
            self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timed_out)

    def _refuse_head(self) -> None:
        """431 and close, after reading (and dropping) what the client still sends for a moment."""
        _CLOSED["head_too_large"].inc()
        self._lingering = True
        self._cancel_head_timer()
        self._table.busy(self)
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        content += (
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(_HEAD_TOO_LARGE)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            _HEAD_TOO_LARGE,
        )
        transport = self.transport
        transport.write(b"".join(content))
        try:
            transport.write_eof()  # the answer, then FIN; the client's close ends the connection
        except (NotImplementedError, OSError, RuntimeError):
            transport.close()
            return
        self.loop.call_later(min(_LINGER_S, self.bounds.header_timeout_s), self._close_connection)

    # -- parser callbacks

    def _head_complete(self) -> None:
        """The request's head is in: no head limit, not waiting, until its message ends; its body, if it
        declares one, must arrive within the header timeout (an app waiting for a body that trickles in
        would otherwise hold the connection for ever, and a connection with a request in progress is never
        evicted)."""
        self._reading_head = False
        self._head_used = 0
        self._heads_read += 1
        self._cancel_head_timer()
        self._table.busy(self)
        if self._declares_body():
            self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timed_out)

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
                return True
        return False

    def on_headers_complete(self) -> None:
        self._head_complete()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._head_used = 0
        if self._head_timer is not None:  # a body deadline (`on_response_complete`): the body is in
            self._cancel_head_timer()
            cycle = self.cycle
            if (
                self.timeout_keep_alive_task is None
                and (cycle is None or cycle.response_complete)
                and not self.pipeline
                and not self.transport.is_closing()
            ):
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
                self._table.wait(self)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if not self._reading_head:
            # The response is complete and the request's body still to come (the app did not read it: a
            # GET with a huge Content-Length, an answer before the body): the rest of it must arrive within
            # the header timeout, or the connection closes.
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timed_out)
        elif self.timeout_keep_alive_task is not None:  # idle: the longest waiting is evicted first
            self._table.wait(self)


_P = TypeVar("_P", bound=BoundedHttpProtocol)


def bounded(protocol: type[_P], bounds: ConnectionBounds) -> type[_P]:
    """``protocol`` held to ``bounds`` (a subclass: the class uvicorn is given)."""
    return cast(type[_P], type(protocol.__name__, (protocol,), {"bounds": bounds}))


_ADOPTING: Final[set[asyncio.Task[None]]] = set()


def _adopt(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], EdgeHttpProtocol],
    sock: socket.socket,
    pending: bytes,
) -> None:
    protocol = factory()
    protocol.adopted = True
    protocol.adopted_pending = pending  # read in `connection_made`, before anything the socket still holds

    async def adopt() -> None:
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()

    task = loop.create_task(adopt())
    _ADOPTING.add(task)
    task.add_done_callback(_ADOPTING.discard)


class EdgeHttpProtocol(BoundedHttpProtocol):
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
    # The timed open whose answer is held (`ingest.read_time`) until its trailer; ``self.cycle`` is another
    # once a request is pipelined behind it, as with uvicorn's cycles.
    _held: _HeldCycle | None
    _handing: bool  # a held answer may go to a read-time holder once the current read is parsed
    adopted: bool = False  # a kept-alive connection handed back by a read-time holder (`_adopt`)
    adopted_pending: bytes = b""  # what its client sent while the holder held its answer

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
        self._held = None
        self._handing = False
        if not self.adopted:
            return
        # A connection handed back by a read-time holder, its answer complete: what its client sent meanwhile
        # first; with nothing, it is a kept-alive connection between requests (the idle timeout, evicted
        # first at the connection cap), not a new one awaiting its first head.
        pending, self.adopted_pending = self.adopted_pending, b""
        if pending:
            self.data_received(pending)
        elif self._head_timer is not None and not self.transport.is_closing():
            self._cancel_head_timer()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            self._table.wait(self)

    def connection_lost(self, exc: Exception | None) -> None:
        held = self._held
        if held is not None:  # the client closed it: the measurement
            self._held = None
            if held.held is not None:
                held.held.lost()
        super().connection_lost(exc)

    # -- the native fast path

    def data_received(self, data: bytes) -> None:
        pixel_path = self._pixel_path
        if (
            pixel_path is not None
            and self._between_messages
            and len(data) <= self.bounds.max_head_bytes
            and self._answers_alone()
        ):
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
                if self._head_timer is not None:  # the connection's first request
                    self._cancel_head_timer()
                if keep_alive:
                    self._table.wait(self)
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
        if self._handing:  # a timed open was held in what was just read: its holder may take it now
            self._handing = False
            self._hand_over()

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
        self._head_complete()
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

    def _respond(self, answer: Answer | TimedAnswer) -> None:
        if not isinstance(answer, Answer):
            self._hold(answer)
            return
        keep_alive = self._keep_alive
        default_headers = self.server_state.default_headers
        self.transport.write(_ENCODED.get(answer, default_headers, keep_alive, self._with_body))
        if not keep_alive:
            self.transport.close()
        elif not self._declares_body():
            self._reading_head = True  # the message completes as this returns: no body deadline for it
        self.on_response_complete()  # counts the request; pipelining and the keep-alive timer as uvicorn does

    # -- read-time pixels held

    def _hold(self, timed: TimedAnswer) -> None:
        """The read-time GIF's head now, the rest from `ingest.read_time.HeldPixels`; or, when it may not be
        held (a proxy, the cap of held pixels), the whole GIF now."""
        edge = cast(Edge, self._edge)
        pixels = edge.read_time
        end = pixels.unheld_reason(timed.user_agent)
        if end is not None:
            pixels.unheld(timed.opened, end)
            self._respond(edge.read_time_whole)
            return
        keep_alive = self._keep_alive
        default_headers = self.server_state.default_headers
        self.transport.write(encode_answer(edge.read_time_head, default_headers, keep_alive))
        held = self._held = _HeldCycle(self, keep_alive)
        self.cycle = cast(RequestResponseCycle, held)
        if not self._declares_body():
            self._reading_head = True  # the message completes as this returns: no body deadline for it
        held.held = pixels.hold(timed.opened, held)
        self._handing = pixels.holders is not None and self.scheme == "http"

    def _hand_over(self) -> None:
        """Hand the held answer's connection to a read-time holder (`ingest.holder_link`) if nothing else is
        in flight on it: no request pipelined behind it or partly read, no byte of the head unsent. Then this
        protocol is done with the connection (its descriptor closes, the socket lives on in the holder).
        Otherwise it stays held here."""
        held = self._held
        transport = self.transport
        if (
            held is None
            or held.held is None
            or self.cycle is not cast(RequestResponseCycle, held)
            or self.pipeline
            or not self._between_messages
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return
        holders = cast(Edge, self._edge).read_time.holders
        sock = transport.get_extra_info("socket")
        if holders is None or sock is None:
            return
        if not holders.hand_over(held.held, sock.fileno(), held.keep_alive, self._adopter()):
            return
        self._held = None
        self.cycle = cast(RequestResponseCycle, _ANSWERED)
        self.server_state.total_requests += 1
        transport.abort()  # this process's descriptor: no FIN, no RST while the holder has the socket

    def _adopter(self) -> Adopt:
        """How a connection handed back by a holder (its answer complete, kept alive) is served on: by a new
        protocol like this one, fed what its client sent meanwhile."""
        factory = functools.partial(
            type(self), config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        return functools.partial(_adopt, self.loop, factory)

    def held_complete(self, held: _HeldCycle) -> None:
        """``held``'s trailer is written: the response is complete, as uvicorn completes one."""
        if self._held is held:
            self._held = None
        if not held.keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts it; starts a pipelined request, or the keep-alive timer

    def close_held(self) -> None:
        self._held = None
        self._close_connection()

    # -- the ASGI path

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # A request answered below ASGI armed the keep-alive timer, and one pipelined behind it in the same
        # read was never preceded by the `data_received` that would cancel it: no timer while a request runs.
        self._unset_keepalive_if_required()
        self._coalescer.arm()
        cycle.transport = cast(asyncio.Transport, self._coalescer)
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        held = self._held
        if held is not None:  # ends it now (``stopped``, closed): a held pixel never holds up a shutdown
            self._held = None
            if held.held is not None:
                held.held.stop()
            else:
                self._close_connection()
            return
        self._coalescer.flush()
        super().shutdown()

    def _close_connection(self) -> None:
        self._coalescer.flush()
        super()._close_connection()

    def _refuse_head(self) -> None:
        self._pixel_path = None  # what follows is dropped, not answered
        super()._refuse_head()

    def timeout_keep_alive_handler(self) -> None:
        idle_s = self.loop.time() - self._answered_at
        if idle_s < self.timeout_keep_alive:  # a native answer since the timer was armed: wait on
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle_s, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        self._coalescer.flush()
        super().send_400_response(msg)
