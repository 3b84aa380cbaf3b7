"""A read-time holder: a process that writes the frames of held pixels handed to it by an edge (issue 18).

``python -m ingest.read_holder FD CAP_SECONDS NAME [CPUS]``, started by `ingest.holder_link.HolderLink` with
``FD`` its end of a ``SOCK_SEQPACKET`` pair (the messages are described there) and ``CPUS`` where to run
(``PIXELPIPE_READ_TIME_HOLDER_CPUS``). Each connection handed over has its head written already; this
process adopts it (an asyncio transport on the same socket), holds it on `ingest.read_time.HeldPixels`'
timer, a frame a second, and reports how its measurement ended: ``closed`` when the client closes it,
``cap`` after the trailer (and hands a kept-alive connection back with what the client sent meanwhile, at
most `MAX_PENDING` bytes: beyond, it is closed), ``stopped`` when the edge asks it to stop. It publishes
nothing and opens nothing: the edge builds and publishes the records. Its open-file limit is the edge's,
raised at the edge's start (`pixelpipe.limits`), which a child inherits.

It runs at the lowest priority there is (Linux's ``SCHED_IDLE``; elsewhere niceness `NICENESS`): its work
is a frame a second per connection, which can come late (`ingest.read_time` then writes the frames owed
together, keeping the animation's timeline), while the edge's is answering pixels now, and whatever else
shares its core (an edge, a load generator) preempts it at once. It writes at most
`ingest.read_time.WRITES_PER_TURN` frames between two looks at its connections, so a close is noticed within
one turn even when it is far behind. Priority does not make a core bigger: on the edge's own core, 20,000
held pixels' frames still raised the plain pixels' p99 (BENCHMARKS section 9); holders belong on other cores.

It ignores SIGINT and SIGTERM (a terminal's Ctrl-C and a service manager reach the whole process group): the
edge's graceful stop asks it to end what it holds first, and it exits when the edge's end of the pair
closes, whatever the edge's fate (its held connections close with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Final, cast

from ingest.holder_link import Channel, decode_timed_open
from ingest.read_time import Held, HeldPixels, TimedOpen
from schemas.reads import ReadEnd

log = logging.getLogger("ingest.read_holder")

# What a held connection's client may send while it waits (pipelined requests), kept to hand back; beyond it
# the holder stops reading it and closes it at the cap (a mail client sends nothing while an image loads).
MAX_PENDING: Final = 16_384
NICENESS: Final = 19


class HeldSocket(asyncio.Protocol):
    """One handed-over connection (`ingest.read_time.HeldConnection`)."""

    def __init__(self, holder: Holder, hit_id: str, keep_alive: bool) -> None:
        self._holder = holder
        self.hit_id = hit_id
        self.keep_alive = keep_alive
        self.transport: asyncio.Transport | None = None
        self.held: Held | None = None
        self.pending = bytearray()
        self.cap_ms: int | None = None  # the read time of a ``cap`` end, reported with the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) >= MAX_PENDING and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # the client is done: close (the measurement ends ``closed``)

    def connection_lost(self, exc: Exception | None) -> None:
        held = self.held
        if held is not None:
            self.held = None
            held.lost()

    # -- HeldConnection

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def complete(self) -> None:
        """The trailer is written (the ``cap`` end was reported to `Holder.ended`): hand a kept-alive
        connection back, with what its client sent meanwhile; close any other."""
        self.held = None
        self._holder.completed(self)

    def close(self) -> None:
        self.held = None
        if self.transport is not None:
            self.transport.abort()


class Holder:
    """The held connections of this process and its end of the edge's pair."""

    def __init__(self, channel: Channel, cap_s: int) -> None:
        self._channel = channel
        self.pixels = HeldPixels(None, cap_s=cap_s, max_held=sys.maxsize, on_end=self.ended)
        self._sockets: dict[str, HeldSocket] = {}
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_task: asyncio.Task[None] | None = None

    def on_readable(self) -> None:
        messages, closed = self._channel.receive()
        for message, fds in messages:
            try:
                if "hold" in message and len(fds) == 1:
                    self._adopt(message, fds.pop())
                elif "stop" in message:
                    self._start_stop()
            except Exception:  # the edge ends it ``stopped`` when it stops, or when this holder does
                log.exception("a message from the edge could not be handled")
            for fd in fds:
                socket.close(fd)
        if closed:  # the edge is gone: end what is held (the reports go nowhere) and exit
            self._start_stop()

    def _adopt(self, message: dict[str, object], fd: int) -> None:
        sock = socket.socket(fileno=fd)
        try:
            opened = decode_timed_open(cast(list[Any], message["hold"]))
        except (KeyError, TypeError, ValueError):
            sock.close()
            raise
        if self._stopping:
            sock.close()  # the edge ends it ``stopped`` (no report from here)
            return
        connection = HeldSocket(self, opened.hit_id, bool(message.get("keep_alive")))
        head_at = message.get("head_at")
        head_at = float(head_at) if isinstance(head_at, int | float) else None
        task = asyncio.get_running_loop().create_task(self._hold(opened, sock, connection, head_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hold(
        self, opened: TimedOpen, sock: socket.socket, connection: HeldSocket, head_at: float | None
    ) -> None:
        hit_id = opened.hit_id
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: connection, sock)
        except OSError:
            sock.close()
            self._report(hit_id, ReadEnd.CLOSED, _since(head_at))
            return
        transport = connection.transport
        if self._stopping or transport is None or transport.is_closing():
            if transport is not None:
                transport.abort()
            if not self._stopping:
                self._report(hit_id, ReadEnd.CLOSED, _since(head_at))
            return
        connection.held = self.pixels.hold(opened, connection, head_at)
        self._sockets[hit_id] = connection

    def ended(self, held: Held, end: ReadEnd, read_ms: int) -> None:
        """`HeldPixels`' report of an end: to the edge (a ``cap`` end waits for `completed`, just after)."""
        connection = self._sockets.get(held.opened.hit_id)
        if end is ReadEnd.CAP and connection is not None:
            connection.cap_ms = read_ms
            return
        self._sockets.pop(held.opened.hit_id, None)
        self._report(held.opened.hit_id, end, read_ms)

    def completed(self, connection: HeldSocket) -> None:
        self._sockets.pop(connection.hit_id, None)
        read_ms = connection.cap_ms or 0
        transport = connection.transport
        message: dict[str, object] = {"end": connection.hit_id, "as": ReadEnd.CAP.value, "read_ms": read_ms}
        if (
            connection.keep_alive
            and len(connection.pending) <= MAX_PENDING
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            sock = transport.get_extra_info("socket")
            message["pending"] = bytes(connection.pending).decode("latin-1")
            self._channel.send(message, (socket.dup(sock.fileno()),))
            transport.abort()  # this process's descriptor only: the connection lives on in the edge
            return
        self._channel.send(message)
        if transport is not None:
            transport.close()

    def _report(self, hit_id: str, end: ReadEnd, read_ms: int) -> None:
        self._channel.send({"end": hit_id, "as": end.value, "read_ms": read_ms})

    @property
    def _stopping(self) -> bool:
        return self._stop_task is not None

    def _start_stop(self) -> None:
        if self._stop_task is not None:
            return
        self._stop_task = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        await self.pixels.stop()  # each ``stopped`` (reported), each connection closed
        self._channel.send({"stopped": True})
        for _ in range(100):  # what is queued leaves, if the edge still reads (at most a second)
            if self._channel.flushed:
                break
            await asyncio.sleep(0.01)
        self.done.set()


def _since(head_at: float | None) -> int:
    """Milliseconds since the head was written (0 if unknown)."""
    return 0 if head_at is None else max(0, round((time.monotonic() - head_at) * 1000))


async def _serve(fd: int, cap_s: int) -> None:
    channel = Channel(socket.socket(fileno=fd))
    holder = Holder(channel, cap_s)
    loop = asyncio.get_running_loop()
    loop.add_reader(channel.fileno(), holder.on_readable)
    await holder.done.wait()
    loop.remove_reader(channel.fileno())
    channel.close()


def yield_to_everything() -> None:
    """Below every other process's priority (see the module's docstring): Linux's ``SCHED_IDLE``, which
    any other task waking up preempts at once; elsewhere the highest niceness."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s holder {argv[3]} %(levelname)s %(message)s")
    yield_to_everything()
    if len(argv) > 4 and argv[4]:  # PIXELPIPE_READ_TIME_HOLDER_CPUS
        try:
            os.sched_setaffinity(0, {int(cpu) for cpu in argv[4].split(",")})
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("cannot run on CPUs %s: %s", argv[4], exc)
    try:
        import uvloop  # noqa: PLC0415  # as the edge's server: the same loop writes the frames

        uvloop.run(_serve(int(argv[1]), int(argv[2])))
    except ImportError:
        asyncio.run(_serve(int(argv[1]), int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
