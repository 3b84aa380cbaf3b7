"""The held pixels of one edge process: read time measured at the edge (issue 18).

A timed open (`schemas.tokens.TokenKind.TIMED_OPEN`) is published as an open at once by `ingest.edge`; its
answer is the read-time GIF (`ingest.read_gif.ReadGif`). Its head (the header and the first frame) goes out
at once, and from then on this module owns the connection's answer: one `FRAME` a second, then `TRAILER`,
then the response is complete and the connection serves on (keep-alive, pipelining). The measurement ends
exactly once, with exactly one `schemas.reads.ReadRecord` published through the edge's publisher (same topic
and partition as its open):

- ``closed``: the client closed the connection (`Held.lost`): the time the email stayed on screen;
- ``cap``: the trailer was written (the whole animation: the cap): on screen at least that long;
- ``stopped``: the edge stopped first (`Held.stop`, `HeldPixels.stop`): the connection is closed, and the
  time so far is a lower bound.

``read_ms`` is monotonic time from the head's write to the end. A timed open that is not held gets the
whole GIF at once and a record with ``read_ms`` 0 (`HeldPixels.unheld`): ``proxy`` for a client known to
fetch whole images (`schemas.image_proxies`), ``busy`` beyond ``max_held`` held at once (and for a request
the server could not hold: see `ingest.edge`). Both are counted by reason.

**One timer for every held answer.** While anything is held, one loop timer ticks `TICKS_PER_SECOND` times a
second; each held answer belongs to the tick of the moment its head left (a wheel of slots), and is written to
at that tick once a second. So each answer's frames are a second apart and its cap is reached at the cap (to a
tick), and the writes of many held answers are spread over the second instead of one burst per second that
would stall the pixels served meanwhile: at 20,000 held, 20 small writes per millisecond's tick, not 20,000 at
once. A write to a connection costs ~14 us on this machine's loopback (a third of it Python, the rest the
kernel's TCP, both ends of it), so a tick of 10 ms (200 writes) held the loop ~2-3 ms at a time and put the
plain pixels' p99 at 9-11 ms with 19,000 held (BENCHMARKS section 9); a tick of 1 ms holds it a fraction of a
millisecond. Idle, nothing ticks. **A late write carries every frame owed**: when the loop comes late to a
tick (a busy process), the answer gets all the frames due since its last write in one write, and keeps its
tick; so the animation keeps its timeline (the trailer at the cap), and a process short of CPU makes fewer,
larger writes instead of falling behind.

**Held elsewhere** (`HeldPixels.holders`, `ingest.holder_link`): with read-time holders configured, the edge's
HTTP protocol hands a held answer's connection, once its head is written, to a holder process
(`ingest.read_holder`), which runs this same timer over it; the answer stays counted here (`release`) until
the holder reports its end, and its record is published here (`end` with the holder's ``read_ms``). The
frames' writes then cost the holder, which runs below the edge's priority: where they share a core, the
plain pixels come first and the held ones' frames come late, several to a write.

Never: block (writes are a frame of 18 bytes to a transport's buffer; a publish never blocks, `bus.port`),
publish a record twice for one held answer, or hold an answer past the cap.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from bus.port import EncodedHitPublisher, HitPublisher
from ingest import metrics
from ingest.read_gif import FRAME, TRAILER, ReadGif
from schemas.events import RawHit
from schemas.image_proxies import fetches_whole_images
from schemas.reads import ReadEnd, ReadRecord, encode_read

log = logging.getLogger(__name__)

TICKS_PER_SECOND: Final = 1000
# At most about this many writes per turn of the loop (whole ticks: a tick's answers are written together).
WRITES_PER_TURN: Final = 64
_TICK_S: Final = 1.0 / TICKS_PER_SECOND

_RECORDS: Final = {end: metrics.READ_TIME_RECORDS.labels(end.value) for end in ReadEnd}
_UNHELD: Final = {reason: metrics.READ_TIME_UNHELD.labels(reason) for reason in ("busy", "proxy", "asgi")}


@dataclass(frozen=True, slots=True)
class TimedOpen:
    """What a read record repeats of its open (a published `RawHit` of a verified timed open)."""

    hit_id: str
    account: str
    campaign_id: str
    message_id: str
    recipient_tag: str  # hex, as the open's
    opened_at_ms: int

    @classmethod
    def of(cls, hit: RawHit) -> TimedOpen:
        return cls(
            hit.hit_id, hit.account, hit.campaign_id, hit.message_id, hit.recipient_tag, hit.received_at_ms
        )

    def record(self, end: ReadEnd, read_ms: int, ended_at_ms: int) -> ReadRecord:
        return ReadRecord(
            read_of=self.hit_id,
            account=self.account,
            campaign_id=self.campaign_id,
            message_id=self.message_id,
            recipient_tag=self.recipient_tag,
            opened_at_ms=self.opened_at_ms,
            ended_at_ms=ended_at_ms,
            read_ms=read_ms,
            end=end,
        )


class HeldConnection(Protocol):
    """The server's side of one held answer (the edge's HTTP protocol)."""

    def write(self, data: bytes) -> None:
        """Write ``data`` (a frame, the trailer) to the connection."""

    def complete(self) -> None:
        """The trailer is written: the response is complete (the connection serves on, or closes)."""

    def close(self) -> None:
        """Close the connection now (the edge stops)."""


class _Elsewhere:
    """The connection of an answer written to elsewhere (`HeldPixels.release`): nothing to do here."""

    def write(self, data: bytes) -> None:
        return None

    def complete(self) -> None:
        return None

    def close(self) -> None:
        return None


_ELSEWHERE: Final = _Elsewhere()


class Held:
    """One held answer: its open, its connection, what it has sent, and the tick it is due at."""

    __slots__ = ("_pixels", "connection", "due", "ended", "first", "opened", "sent", "started")

    def __init__(
        self, pixels: HeldPixels, opened: TimedOpen, connection: HeldConnection, started: float, first: int
    ) -> None:
        self._pixels = pixels
        self.opened = opened
        self.connection = connection
        self.started = started  # monotonic seconds, when the head was written
        self.sent = 1  # frames sent: the head carries the first
        self.first = first  # the tick its head left: its writes are due a whole number of seconds after
        self.due = first + TICKS_PER_SECOND  # the tick of its next write
        self.ended = False

    def lost(self) -> None:
        """The client closed the connection: the measurement ends ``closed`` (nothing if it had ended)."""
        self._pixels.end(self, ReadEnd.CLOSED)

    def stop(self) -> None:
        """End it ``stopped`` and close the connection (the server shuts the connection down)."""
        if not self.ended:
            self._pixels.end(self, ReadEnd.STOPPED)
            self.connection.close()


# A connection handed back by a holder at its answer's end (keep-alive): the socket and what the client sent
# meanwhile; the edge serves on with it.
Adopt = Callable[[socket.socket, bytes], None]


class Holders(Protocol):
    """Where held answers may go instead of this process's timer (`ingest.holder_link.ReadHolders`)."""

    def hand_over(self, held: Held, fd: int, keep_alive: bool, adopt: Adopt) -> bool:
        """Hand ``held``'s connection (``fd``, its head written, nothing else in flight) to a holder: True if
        taken (the caller then closes its own descriptor; the holder has its own), False to hold it here."""

    def stop_soon(self) -> None:
        """Begin `stop` now (from a signal handler: the server's graceful stop begins)."""

    async def stop(self) -> None:
        """End every held answer handed over (``stopped``, records published) and stop the holders."""


# What a holder reports when a measurement ends (`HeldPixels` given ``on_end``): the answer, how, the ms read.
OnEnd = Callable[[Held, ReadEnd, int], None]


class HeldPixels:
    """The held read-time answers of one edge process (or of one holder process: ``on_end``), and the one
    timer that writes their frames."""

    def __init__(
        self,
        publisher: HitPublisher | None,
        *,
        cap_s: int,
        max_held: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_end: OnEnd | None = None,
    ) -> None:
        self.gif: Final = ReadGif(frames=cap_s)
        self.max_held = max_held
        # Read records go out as lines (`bus.port.EncodedHitPublisher`: the memory bus and Kafka's both take
        # them); without, nothing can be published, and the edge answers timed opens as plain opens. A holder
        # process publishes nothing: it reports each end (``on_end``) to its edge.
        self._lines: EncodedHitPublisher | None = None
        if isinstance(publisher, EncodedHitPublisher):
            self._lines = publisher
        self._on_end = on_end
        self.measures: Final = self._lines is not None or on_end is not None
        self.holders: Holders | None = None  # set by whoever starts holder processes (`pixelpipe.app`)
        self._clock = clock
        self._monotonic = monotonic
        self._slots: list[dict[Held, None]] = [{} for _ in range(TICKS_PER_SECOND)]
        self._count = 0
        self._elsewhere = 0  # of them, those written to elsewhere (`release`): the timer has nothing for them
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._origin = 0.0  # loop time of tick 0
        self._tick = 0  # the last tick done

    @property
    def held(self) -> int:
        return self._count

    # -- admission

    def unheld_reason(self, user_agent: str) -> ReadEnd | None:
        """Why this answer may not be held (`ReadEnd.PROXY`, `ReadEnd.BUSY`), or None: it may."""
        if fetches_whole_images(user_agent):
            return ReadEnd.PROXY
        if self._count >= self.max_held:
            return ReadEnd.BUSY
        return None

    def unheld(self, opened: TimedOpen, end: ReadEnd, reason: str | None = None) -> None:
        """A timed open answered with the whole GIF (``end`` busy or proxy): its record (nothing measured),
        counted by ``reason`` (the end's name unless given)."""
        _UNHELD[reason or end.value].inc()
        self._publish(opened.record(end, 0, int(self._clock() * 1000)))

    def hold(self, opened: TimedOpen, connection: HeldConnection, head_at: float | None = None) -> Held:
        """Hold ``connection``'s answer, whose head was just written (call `unheld_reason` first), or was
        written at ``head_at`` (monotonic seconds: a holder process given it by its edge; the clock is the
        machine's, the same in both), so its frames and its read time count from then."""
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._loop, self._origin, self._tick = loop, loop.time(), 0
            self._timer = loop.call_later(_TICK_S, self._on_timer)
        now = self._monotonic()
        if head_at is None:
            first_tick = max(self._tick, int((loop.time() - self._origin) / _TICK_S))
        else:  # its due ticks may have passed: its slot's next visit writes what it is owed
            head_at = min(head_at, now)
            first_tick = int((loop.time() - (now - head_at) - self._origin) // _TICK_S)
        held = Held(self, opened, connection, now if head_at is None else head_at, first_tick)
        self._slots[held.due % TICKS_PER_SECOND][held] = None
        self._count += 1
        if self._on_end is None:
            metrics.READ_TIME_HELD.inc()
        return held

    def release(self, held: Held) -> None:
        """``held`` is written to elsewhere from now (a holder process): off this timer, still counted as held
        until `end` reports what was measured there. Its connection here is let go (with the protocol, the
        parser and the transport behind it: nothing of them is needed again)."""
        self._slots[held.due % TICKS_PER_SECOND].pop(held, None)
        held.connection = _ELSEWHERE
        self._elsewhere += 1

    # -- the end of a held answer

    def end(self, held: Held, end: ReadEnd, read_ms: int | None = None) -> None:
        """End ``held``'s measurement (once: later calls do nothing) and publish its record (or report it:
        ``on_end``). ``read_ms``: measured elsewhere (a holder's); by default, from its head until now."""
        if held.ended:
            return
        held.ended = True
        self._slots[held.due % TICKS_PER_SECOND].pop(held, None)
        self._count -= 1
        if held.connection is _ELSEWHERE:
            self._elsewhere -= 1
        if read_ms is None:
            read_ms = max(0, round((self._monotonic() - held.started) * 1000))
        if self._on_end is not None:
            self._on_end(held, end, read_ms)
            return
        metrics.READ_TIME_HELD.dec()
        self._publish(held.opened.record(end, read_ms, int(self._clock() * 1000)))

    def stop_soon(self) -> None:
        """The server's graceful stop begins (a signal handler): the holders end what they hold now, as the
        server ends the answers held here when it shuts its connections down."""
        if self.holders is not None:
            self.holders.stop_soon()

    async def stop(self) -> None:
        """End every held answer ``stopped`` (each closed, each record published) and stop the timer: the
        edge's graceful stop, before its publisher stops. Those handed to holders first."""
        if self.holders is not None:
            try:
                await self.holders.stop()
            except Exception:
                log.exception("could not stop the read-time holders")
        for slot in self._slots:
            for held in list(slot):
                try:
                    held.stop()
                except Exception:
                    log.exception("could not stop a held read-time pixel")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _publish(self, record: ReadRecord) -> None:
        _RECORDS[record.end].inc()
        lines = self._lines
        if lines is None:
            return
        try:
            lines.publish_encoded(record.partition_key, encode_read(record))
        except Exception:  # never raises by contract; a bug must not end the edge's callbacks
            log.exception("could not publish a read record")

    # -- the timer

    def _on_timer(self) -> None:
        loop = self._loop
        if loop is None:  # stopped meanwhile
            return
        target = int((loop.time() - self._origin) / _TICK_S)
        # Every tick since the last, once each at most (a loop late by more than a second visits each slot
        # once: an answer due long ago gets one write now, with every frame it is owed).
        first = max(self._tick + 1, target - TICKS_PER_SECOND + 1)
        writes = 0
        for tick in range(first, target + 1):
            slot = self._slots[tick % TICKS_PER_SECOND]
            if slot:
                for held in list(slot):
                    if held.due <= tick and not held.ended:
                        self._advance(held, target)
                        writes += 1
                if writes >= WRITES_PER_TURN and tick < target:
                    # The rest on the loop's next turn: what the loop has to read meanwhile (a client's close,
                    # a pixel) waits for one turn's writes at most, however late this timer is.
                    self._tick = tick
                    self._timer = loop.call_later(0, self._on_timer)
                    return
        self._tick = max(self._tick, target)
        if self._count > self._elsewhere:  # nothing to write for those held elsewhere
            # A tick from now, not at the next tick's exact time: uvloop rounds a timer's delay to whole
            # milliseconds, so a call at the next tick's time came back early, found no new tick, and asked
            # again, spinning through most of each millisecond (98,000 calls a second; measured). Each call
            # visits every tick passed since the last, so a late call loses nothing.
            self._timer = loop.call_later(_TICK_S, self._on_timer)
        else:
            self._timer = None

    def _advance(self, held: Held, now: int) -> None:
        """``held``'s write at tick ``now`` (the tick it was due at, or later if the loop was late): every
        frame owed by now, one a second since its head, in one write (so a late write carries the frames it
        missed and the animation keeps its timeline; a busy process makes fewer, larger writes); from the
        cap on, what is left of the animation with the trailer, and the end. It keeps its tick: its next
        write is due a whole number of seconds after its head."""
        try:
            frames = self.gif.frames
            seconds = (now - held.first) // TICKS_PER_SECOND
            if seconds >= frames:
                rest = frames - held.sent
                held.connection.write(FRAME * rest + TRAILER if rest > 0 else TRAILER)
                held.sent = frames
                self.end(held, ReadEnd.CAP)
                held.connection.complete()
                return
            owed = seconds + 1 - held.sent
            if owed > 0:
                held.connection.write(FRAME if owed == 1 else FRAME * owed)
                held.sent += owed
            held.due = held.first + (seconds + 1) * TICKS_PER_SECOND
        except Exception:
            log.exception("could not write a held read-time pixel")
            if not held.ended:
                self.end(held, ReadEnd.CLOSED)
                held.connection.close()
