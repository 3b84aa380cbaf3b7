"""`ingest.read_time.HeldPixels` on a loop whose clock the test moves: one frame a second for each held
answer at the tick it was held on, the trailer at the cap, one record per answer however it ends, the writes
of answers held at different moments spread over different ticks, a late loop sending the frames owed in one
write (a turn's worth of answers at a time), and who is not held (proxies, beyond the cap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from bus.memory import MemoryBus
from ingest.read_gif import FRAME, TRAILER, ReadGif
from ingest.read_time import TICKS_PER_SECOND, WRITES_PER_TURN, HeldPixels, TimedOpen
from schemas.events import RawHit
from schemas.reads import ReadRecord, decode_read, is_read_line

OPENED = TimedOpen("0190000000001234567890abcdef", "acme", "spring", "msg-1", "00" * 8, 1_700_000_000_000)
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Connection:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.completed = 0
        self.closed = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def complete(self) -> None:
        self.completed += 1

    def close(self) -> None:
        self.closed += 1


class _Bus(MemoryBus):
    def records(self) -> list[ReadRecord]:
        return [decode_read(r.value) for r in self._queue if is_read_line(r.value)]


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def loop(clock: _Clock) -> Iterator[asyncio.AbstractEventLoop]:
    """A loop whose time is the test's clock (its timers are driven by hand: `_tick`)."""
    loop = asyncio.new_event_loop()
    loop.time = clock  # type: ignore[method-assign]
    yield loop
    loop.close()


def _pixels(clock: _Clock, bus: MemoryBus, cap_s: int = 3, max_held: int = 10) -> HeldPixels:
    return HeldPixels(bus, cap_s=cap_s, max_held=max_held, clock=lambda: 1_700_000_000.0, monotonic=clock)


def _in_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> object:
    async def run() -> object:
        return call()

    return loop.run_until_complete(run())


def _advance(pixels: HeldPixels, clock: _Clock, seconds: float, step: float = 1 / TICKS_PER_SECOND) -> None:
    """Move the clock ``seconds`` on, running the timer at every ``step`` as the loop would."""
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        clock.now = min(end, clock.now + step)
        pixels._on_timer()


def test_a_frame_a_second_then_the_trailer_at_the_cap_and_one_cap_record(
    loop: asyncio.AbstractEventLoop, clock: _Clock
) -> None:
    bus = _Bus(100)
    pixels = _pixels(clock, bus)
    conn = _Connection()
    held = _in_loop(loop, lambda: pixels.hold(OPENED, conn))
    assert pixels.held == 1
    _advance(pixels, clock, 0.95)
    assert conn.written == []
    _advance(pixels, clock, 0.1)
    assert conn.written == [FRAME]  # the second frame, a second after the head
    _advance(pixels, clock, 1.0)
    assert conn.written == [FRAME, FRAME]
    assert conn.completed == 0
    _advance(pixels, clock, 1.0)
    assert conn.written == [FRAME, FRAME, TRAILER]  # 3 frames in all: the head carried the first
    assert conn.completed == 1
    assert pixels.held == 0
    records = bus.records()
    assert [(r.end, r.read_of) for r in records] == [("cap", OPENED.hit_id)]
    assert 2990 <= records[0].read_ms <= 3020
    assert records[0].ended_at_ms == 1_700_000_000_000
    assert pixels._timer is None  # nothing held: nothing ticks
    held.lost()  # type: ignore[attr-defined]  # the client's close after the end: nothing more
    _advance(pixels, clock, 2.0)
    assert len(bus.records()) == 1


def test_answers_held_at_different_moments_are_written_at_different_ticks(
    loop: asyncio.AbstractEventLoop, clock: _Clock
) -> None:
    pixels = _pixels(clock, _Bus(100), cap_s=5)
    first, second = _Connection(), _Connection()
    _in_loop(loop, lambda: pixels.hold(OPENED, first))
    _advance(pixels, clock, 0.5)
    _in_loop(loop, lambda: pixels.hold(OPENED, second))
    _advance(pixels, clock, 0.55)  # 1.05 s after the first, 0.55 s after the second
    assert (len(first.written), len(second.written)) == (1, 0)
    _advance(pixels, clock, 0.5)
    assert (len(first.written), len(second.written)) == (1, 1)


def test_a_late_loop_sends_the_frames_owed_in_one_write_and_keeps_the_timeline(
    loop: asyncio.AbstractEventLoop, clock: _Clock
) -> None:
    pixels = _pixels(clock, _Bus(100), cap_s=10)
    conn = _Connection()
    _in_loop(loop, lambda: pixels.hold(OPENED, conn))
    _advance(pixels, clock, 3.5, step=3.5)  # the loop was blocked for 3.5 s: frames 2, 3 and 4 were due
    assert conn.written == [FRAME * 3]
    _advance(pixels, clock, 0.4)  # 3.9 s after the head
    assert conn.written == [FRAME * 3]
    _advance(pixels, clock, 0.2)  # 4.1 s: the fifth frame, on its own second again
    assert conn.written == [FRAME * 3, FRAME]


def test_a_loop_late_past_the_cap_sends_the_rest_and_the_trailer_in_one_write(
    loop: asyncio.AbstractEventLoop, clock: _Clock
) -> None:
    bus = _Bus(100)
    pixels = _pixels(clock, bus, cap_s=5)
    conn = _Connection()
    _in_loop(loop, lambda: pixels.hold(OPENED, conn))
    _advance(pixels, clock, 1.1)
    _advance(pixels, clock, 6.0, step=6.0)
    assert conn.written == [FRAME, FRAME * 3 + TRAILER]
    assert b"".join(conn.written) == ReadGif(5).whole[len(ReadGif(5).head) :]
    assert [r.end for r in bus.records()] == ["cap"]
    assert pixels.held == 0


def test_the_clients_close_makes_one_closed_record(loop: asyncio.AbstractEventLoop, clock: _Clock) -> None:
    bus = _Bus(100)
    pixels = _pixels(clock, bus)
    held = _in_loop(loop, lambda: pixels.hold(OPENED, _Connection()))
    _advance(pixels, clock, 1.25)
    held.lost()  # type: ignore[attr-defined]
    held.lost()  # type: ignore[attr-defined]
    _advance(pixels, clock, 5)
    assert [(r.end, r.read_ms) for r in bus.records()] == [("closed", 1250)]
    assert pixels.held == 0


def test_stop_ends_every_held_answer_stopped_and_closes_it(
    loop: asyncio.AbstractEventLoop, clock: _Clock
) -> None:
    bus = _Bus(100)
    pixels = _pixels(clock, bus, cap_s=25)
    conns = [_Connection() for _ in range(3)]
    for conn in conns:
        _in_loop(loop, lambda conn=conn: pixels.hold(OPENED, conn))  # type: ignore[misc]
        _advance(pixels, clock, 0.5)
    loop.run_until_complete(pixels.stop())
    assert [c.closed for c in conns] == [1, 1, 1]
    ends = [(r.end, r.read_ms) for r in bus.records()]
    assert ends == [("stopped", 1500), ("stopped", 1000), ("stopped", 500)]
    assert pixels.held == 0
    assert pixels._timer is None


def test_who_is_not_held(loop: asyncio.AbstractEventLoop, clock: _Clock) -> None:
    bus = _Bus(100)
    pixels = _pixels(clock, bus, max_held=2)
    assert pixels.unheld_reason(GMAIL_PROXY) == "proxy"
    assert pixels.unheld_reason("Mozilla/5.0") == "proxy"  # Apple's Mail Privacy Protection prefetch
    assert pixels.unheld_reason("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko)") is None
    for _ in range(2):
        _in_loop(loop, lambda: pixels.hold(OPENED, _Connection()))
    assert pixels.unheld_reason("Thunderbird") == "busy"
    pixels.unheld(OPENED, pixels.unheld_reason("Thunderbird") or "busy")  # type: ignore[arg-type]
    assert [(r.end, r.read_ms) for r in bus.records()] == [("busy", 0)]


def test_a_publisher_of_hits_only_measures_nothing() -> None:
    class HitsOnly:
        async def start(self) -> None: ...

        def publish(self, hit: RawHit) -> None: ...

        def ready(self) -> bool:
            return True

        async def stop(self) -> None: ...

    assert not HeldPixels(HitsOnly(), cap_s=3, max_held=1).measures
    assert HeldPixels(MemoryBus(1), cap_s=3, max_held=1).measures


def test_a_late_timer_writes_a_turn_at_a_time(loop: asyncio.AbstractEventLoop, clock: _Clock) -> None:
    """100 answers held a tick apart, the loop 2 s late: one call of the timer writes whole ticks until it
    has written `WRITES_PER_TURN` or more, and leaves the rest to the loop's next turn (so a close waiting to
    be read waits one turn's writes at most); the next call writes the rest."""
    pixels = _pixels(clock, _Bus(1000), cap_s=10, max_held=1000)
    conns = [_Connection() for _ in range(100)]
    for conn in conns:
        _in_loop(loop, lambda conn=conn: pixels.hold(OPENED, conn))  # type: ignore[misc]
        clock.now += 1 / TICKS_PER_SECOND
    clock.now += 2.0
    pixels._on_timer()
    assert sum(1 for c in conns if c.written) == WRITES_PER_TURN
    assert all(c.written == [FRAME * 2] for c in conns[:WRITES_PER_TURN])  # the frames of 2 s, in one write
    pixels._on_timer()
    assert all(c.written == [FRAME * 2] for c in conns)
