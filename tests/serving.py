"""Run an ASGI app on a real socket (uvicorn in a thread) so tests speak real HTTP to it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, port: int | None = None, *, http: Any = "h11", loop: str = "auto") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1; yield its base URL; shut it down (running its lifespan) on exit.
    ``http``, ``loop``: uvicorn's HTTP protocol (a name or a class) and event loop."""
    with serving_server(app, port, http=http, loop=loop) as (base, _):
        yield base


@contextmanager
def serving_server(
    app: Any, port: int | None = None, *, http: Any = "h11", loop: str = "auto"
) -> Iterator[tuple[str, uvicorn.Server]]:
    """`serving`, yielding the uvicorn server too: a test may begin its graceful shutdown
    (``server.should_exit = True``) while it still holds connections."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        http=http,
        loop=loop,
        proxy_headers=False,  # as pixelpipe.cli runs it: the edge alone decides whom to believe
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class CountingTransport:
    """The real transport, with every write recorded: how the edge protocol's tests count system calls."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
