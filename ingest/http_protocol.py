"""The HTTP/1.1 protocol the edge role serves with: uvicorn's httptools protocol, except that each response's
head is held back until what follows it, so a response that is complete at once (a pixel: the head, then
43 bytes) leaves in one ``write`` system call instead of two.

A held head waits for at most the rest of the current event-loop iteration: the response's next write
takes it along, and otherwise a callback scheduled when it was held writes it alone (the answer to a HEAD,
a stream whose first chunk is not ready yet). This module must never reorder bytes, never hold anything
but a response's first write, and never close a connection with a held head unsent.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


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
    """uvicorn's ``HttpToolsProtocol`` with `_HeadCoalescer` between its responses and the socket.

    Every place where the connection itself (not a response) closes the transport flushes a held head
    first: a graceful shutdown, the keep-alive timeout, a 400 for a malformed request."""

    _coalescer: _HeadCoalescer

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._coalescer = _HeadCoalescer(transport, self.loop)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._coalescer.arm()
        cycle.transport = cast(asyncio.Transport, self._coalescer)
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        self._coalescer.flush()
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        self._coalescer.flush()
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        self._coalescer.flush()
        super().send_400_response(msg)
