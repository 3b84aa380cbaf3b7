"""The edge's side of its read-time holders: processes of their own that write held pixels' frames (issue 18).

A held read-time answer costs a write a second until its cap; at 20,000 held that is 20,000 writes a second,
about 20 % of a core on this machine (BENCHMARKS section 9), taken from the plain pixels served by the same
core. So the edge can hand held answers to holder processes (``PIXELPIPE_READ_TIME_HOLDERS``), which the
operator (or the kernel's scheduler) puts on other cores: the edge's work per held pixel is then its head and
one hand-over, and the frames cost the holder's core.

**The hand-over.** Once the head is written and nothing else is in flight on the connection (no pipelined
request, no byte unsent, no partial request read: `ingest.http_protocol`), the edge sends the connection's
descriptor to a holder over a Unix ``SOCK_SEQPACKET`` pair (``SCM_RIGHTS``) with the timed open, and closes
its own descriptor; the socket lives on in the holder (`ingest.read_holder`), which writes the frames and
the trailer with `ingest.read_time.HeldPixels`' own timer and reports how the measurement ended. The edge
keeps the answer counted as held (`HeldPixels.release`) and publishes its record (`HeldPixels.end` with the
holder's ``read_ms``), so the records, the metrics and the cap on held pixels are where they were. At the
cap, a kept-alive connection comes back with what the client sent meanwhile, and the edge serves on with it
(``adopt``); otherwise the holder closes it.

**Never lost, never twice.** A hand-over the holder has not read yet waits in the edge's queue (in order,
with a copy of the descriptor and the head's time: the holder writes the frames owed since); beyond
`MAX_QUEUED` waiting, or with no holder running, the edge holds the pixel itself, as with no holders. A
holder that dies ends its answers ``stopped`` (the kernel closed their connections with it) and is started
again at a later hand-over, a second after its last start, the wait doubling with each loss (up to a
minute) until a holder reports again. A graceful stop asks each holder to end its answers
(``stopped``, closed) and waits for their reports, at most `STOP_WAIT_S`; what is still missing then is
ended ``stopped`` here.

**Messages** (orjson objects, one per packet): edge to holder ``{"hold": [timed open], "keep_alive": b,
"head_at": monotonic seconds}`` with the connection's descriptor, ``{"stop": true}``; holder to edge
``{"end": hit_id, "as": end, "read_ms": n}`` (with the descriptor and ``"pending"`` when a kept-alive
connection comes back), then ``{"stopped": true}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any, Final

import orjson

from ingest import metrics
from ingest.read_time import Adopt, Held, HeldPixels, TimedOpen
from schemas.reads import ReadEnd

log = logging.getLogger(__name__)

STOP_WAIT_S: Final = 5.0
# Hand-overs queued for a holder that has not read them yet (each keeps its connection's descriptor open
# here); beyond, the edge holds the pixel itself.
MAX_QUEUED: Final = 10_000
_RESTART_EVERY_S: Final = 1.0
_RESTART_MAX_S: Final = 60.0
_MAX_PACKET: Final = 1 << 18  # a message's most: a hand-back carries at most MAX_PENDING bytes, JSON-escaped
_MAX_FDS: Final = 4
_THIS_PACKET: Final = frozenset({errno.EMSGSIZE, errno.ENOBUFS})  # errors of one packet, not of the pair


def encode_timed_open(opened: TimedOpen) -> list[Any]:
    return [
        opened.hit_id,
        opened.account,
        opened.campaign_id,
        opened.message_id,
        opened.recipient_tag,
        opened.opened_at_ms,
    ]


def decode_timed_open(fields: list[Any]) -> TimedOpen:
    hit_id, account, campaign_id, message_id, recipient_tag, opened_at_ms = fields
    return TimedOpen(
        str(hit_id), str(account), str(campaign_id), str(message_id), str(recipient_tag), int(opened_at_ms)
    )


class Channel:
    """One end of a ``SOCK_SEQPACKET`` pair, non-blocking: packets with descriptors, in order."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        # Packets that could not leave at once, with descriptors this channel owns (closed once sent).
        self._outbox: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self._writing = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any], owned_fds: tuple[int, ...] = ()) -> None:
        """Send now or, the buffer full, as soon as it drains, in order. ``owned_fds`` become the channel's:
        each is closed once sent (or when the channel closes)."""
        self._outbox.append((orjson.dumps(message), list(owned_fds)))
        self.flush()

    def flush(self) -> None:
        while self._outbox:
            data, fds = self._outbox[0]
            try:
                socket.send_fds(self.sock, [data], fds)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    asyncio.get_running_loop().add_writer(self.sock.fileno(), self.flush)
                    self._writing = True
                return
            except OSError as exc:
                if exc.errno not in _THIS_PACKET:  # the other end is gone: what waits is dropped with it
                    self._drop_outbox()
                    return
                log.warning("a message to a read-time holder could not be sent (%s); dropped", exc.strerror)
            self._outbox.popleft()
            for fd in fds:
                os.close(fd)
        if self._writing:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
            self._writing = False

    @property
    def flushed(self) -> bool:
        return not self._outbox

    @property
    def backlog(self) -> int:
        """Packets waiting to be sent."""
        return len(self._outbox)

    def receive(self) -> tuple[list[tuple[dict[str, Any], list[int]]], bool]:
        """What has arrived (each message with its descriptors, now the caller's), and whether the other end
        has closed."""
        received: list[tuple[dict[str, Any], list[int]]] = []
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, _MAX_PACKET, _MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return received, False
            except OSError:
                return received, True
            if not data:
                for fd in fds:
                    os.close(fd)
                return received, True
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                log.error("a read-time holder's message was cut short; dropped")
                for fd in fds:
                    os.close(fd)
                continue
            try:
                received.append((orjson.loads(data), fds))
            except orjson.JSONDecodeError:
                log.exception("a read-time holder's message was not JSON; dropped")
                for fd in fds:
                    os.close(fd)

    def close(self) -> None:
        if self._writing:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_writer(self.sock.fileno())
            self._writing = False
        self._drop_outbox()
        self.sock.close()

    def _drop_outbox(self) -> None:
        for _, fds in self._outbox:
            for fd in fds:
                os.close(fd)
        self._outbox.clear()


class HolderLink:
    """One holder process and what it holds for this edge (started at its first hand-over)."""

    def __init__(self, pixels: HeldPixels, cap_s: int, name: str, cpus: frozenset[int] = frozenset()) -> None:
        self._pixels = pixels
        self._cap_s = cap_s
        self._name = name
        self._cpus = ",".join(str(cpu) for cpu in sorted(cpus))
        self._channel: Channel | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._gone: list[subprocess.Popen[bytes]] = []  # holders that exited, not reaped yet
        self._away: dict[str, tuple[Held, Adopt]] = {}
        self._started_at = -_RESTART_EVERY_S
        # Doubled at each loss of a holder (one that dies as it starts must not take a second's pixels with it
        # every second), back to a second once one reports.
        self._restart_after = _RESTART_EVERY_S
        self._stopped: asyncio.Event | None = None
        self.stopping = False  # no more hand-overs; a connection handed back is closed

    @property
    def held(self) -> int:
        return len(self._away)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def hand_over(self, held: Held, fd: int, keep_alive: bool, adopt: Adopt) -> bool:
        channel = self._channel if not self.stopping and self._running() else None
        if channel is None:
            return False
        if channel.backlog >= MAX_QUEUED:
            return False
        # Sent now or, the holder busy (the pair's buffer full), as soon as it reads: the head's time goes
        # with it, so the holder's frames and measurement count from the head, not from when it read.
        message = {"hold": encode_timed_open(held.opened), "keep_alive": keep_alive, "head_at": held.started}
        try:
            copy = os.dup(fd)
        except OSError:  # out of descriptors: held here
            return False
        channel.send(message, (copy,))
        self._pixels.release(held)
        self._away[held.opened.hit_id] = (held, adopt)
        metrics.READ_TIME_HANDED.inc()
        return True

    def _running(self) -> bool:
        if self._channel is not None:
            return True
        now = time.monotonic()
        if now - self._started_at < self._restart_after:
            return False
        self._started_at = now
        try:
            self._start()
        except OSError:
            log.exception("could not start the read-time holder %s; held pixels stay in the edge", self._name)
            return False
        return True

    def _start(self) -> None:
        self._reap()
        name = self._name
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            command = [sys.executable, "-m", "ingest.read_holder", str(theirs.fileno()), str(self._cap_s)]
            self._process = subprocess.Popen(  # noqa: S603  # our own interpreter and module
                [*command, name, self._cpus],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        channel = self._channel = Channel(ours)
        asyncio.get_running_loop().add_reader(channel.fileno(), self._on_readable)
        log.info("read-time holder %s started (pid %d)", self._name, self._process.pid)

    def _on_readable(self) -> None:
        channel = self._channel
        if channel is None:
            return
        messages, closed = channel.receive()
        if messages:
            self._restart_after = _RESTART_EVERY_S
        for message, fds in messages:
            try:
                self._on_message(message, fds)
            except Exception:
                log.exception("a read-time holder's message could not be handled")
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        if closed:
            self._lost()

    def _on_message(self, message: dict[str, Any], fds: list[int]) -> None:
        if "end" in message:
            end, read_ms = ReadEnd(message["as"]), int(message["read_ms"])
            pending = str(message.get("pending", "")).encode("latin-1")
            entry = self._away.pop(str(message["end"]), None)
            if entry is not None:
                held = entry[0]
                metrics.READ_TIME_HANDED.dec()
                self._pixels.end(held, end, read_ms)
            for fd in fds[1:]:
                os.close(fd)
            if fds:
                if entry is None or self.stopping:
                    os.close(fds[0])
                else:
                    entry[1](socket.socket(fileno=fds[0]), pending)
        elif "stopped" in message and self._stopped is not None:
            self._stopped.set()

    def _lost(self) -> None:
        """The holder is gone (or stopped): its answers end ``stopped``, as the kernel closed them with it."""
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(channel.fileno())
            channel.close()
            if not self.stopping:
                metrics.READ_TIME_HOLDERS_LOST.inc()
                self._restart_after = min(_RESTART_MAX_S, self._restart_after * 2)
                log.error("read-time holder %s gone: its %d held pixels end stopped", self._name, self.held)
        away, self._away = self._away, {}
        metrics.READ_TIME_HANDED.dec(len(away))
        for held, _ in away.values():
            self._pixels.end(held, ReadEnd.STOPPED)
        if self._stopped is not None:
            self._stopped.set()
        if not self.stopping and self._process is not None:
            # Gone, or going (its end of the pair closed): made sure of, and reaped once it has exited.
            if self._process.poll() is None:
                self._process.kill()
            self._gone.append(self._process)
            self._process = None

    def _reap(self) -> None:
        self._gone = [process for process in self._gone if process.poll() is None]

    async def stop(self) -> None:
        self.stopping = True
        channel = self._channel
        if channel is not None:
            self._stopped = asyncio.Event()
            channel.send({"stop": True})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), STOP_WAIT_S)
            self._lost()
        process, self._process = self._process, None
        if process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 1.0)
            except TimeoutError:
                process.kill()
                await asyncio.to_thread(process.wait)
        for gone in self._gone:
            await asyncio.to_thread(gone.wait)
        self._gone.clear()


class ReadHolders:
    """This edge's holder processes (`ingest.read_time.Holders`): each hand-over goes to the one holding
    fewest."""

    def __init__(
        self, pixels: HeldPixels, count: int, cap_s: int, cpus: frozenset[int] = frozenset()
    ) -> None:
        self.links: Final = [
            HolderLink(pixels, cap_s, f"{os.getpid()}-{index}", cpus) for index in range(count)
        ]
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_task: asyncio.Future[Any] | None = None

    def hand_over(self, held: Held, fd: int, keep_alive: bool, adopt: Adopt) -> bool:
        if self._stopping:
            return False
        self._loop = asyncio.get_running_loop()
        return any(
            link.hand_over(held, fd, keep_alive, adopt)
            for link in sorted(self.links, key=lambda candidate: candidate.held)
        )

    def stop_soon(self) -> None:
        """`stop`, begun now from a signal handler (the server's graceful stop begins): the answers held by
        holders end when those the edge holds do (at the server's shutdown of its connections), and none
        comes back to the edge meanwhile."""
        self._stopping = True
        for link in self.links:
            link.stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._begin_stop)

    async def stop(self) -> None:
        self._stopping = True
        await self._begin_stop()

    def _begin_stop(self) -> asyncio.Future[Any]:
        if self._stop_task is None:
            self._stop_task = asyncio.gather(*(link.stop() for link in self.links))
        return self._stop_task
