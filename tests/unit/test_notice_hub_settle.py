"""`NoticeHub.durable`: what the processor waits on before it commits raw offsets on Kafka. A ticket completes
once every batch published before it was handed to every sink, in publish order; a failing sink holds it; a
dropped batch never does; a stop cancels what was never handed on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from notices.hub import NoticeHub
from notices.wiring import Notifications
from schemas.notices import Notice
from schemas.verdicts import Verdict
from tests.notice_samples import stored_hit


class Sink:
    """A sink that fails while ``failing`` and waits while ``gate`` is clear; records what it took, and how
    many calls reached it (``entered``: the hub's task is at this sink)."""

    def __init__(self) -> None:
        self.entered = 0
        self.failing = False
        self.failures = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.took: list[list[str]] = []

    async def __call__(self, notices: Sequence[Notice]) -> None:
        self.entered += 1
        await self.gate.wait()
        if self.failing:
            self.failures += 1
            raise ConnectionError("enriched topic unreachable")
        self.took.append([n.id for n in notices])


async def settles(future: asyncio.Future[None], timeout_s: float = 30.0) -> None:
    await asyncio.wait_for(asyncio.shield(future), timeout_s)


async def eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_ticket_completes_once_its_batches_reached_every_sink_and_not_before() -> None:
    first, second = Sink(), Sink()
    hub = NoticeHub(sinks=[first, second], retry_s=(0.01, 0.01))
    nothing_yet = hub.durable()
    assert nothing_yet.done()  # nothing published: nothing to wait for
    second.gate.clear()
    await hub.start()
    try:
        hub.publish([stored_hit("h1"), stored_hit("h2")])
        await eventually(lambda: second.entered == 1)  # the first sink has them, the second waits
        ticket = hub.durable()
        hub.publish([stored_hit("h3")])
        later = hub.durable()
        assert hub.queued == 1  # h3 waits behind the batch held at the second sink
        assert first.took == [["h1", "h2"]]
        assert not ticket.done()
        assert not later.done()
        assert hub.unsettled == 2
        second.gate.set()
        await settles(ticket)
        await settles(later)
        assert first.took == second.took == [["h1", "h2"], ["h3"]]
        assert hub.unsettled == 0
        assert hub.durable().done()
    finally:
        await hub.stop()


async def test_a_failing_sink_holds_the_ticket_until_it_takes_the_notices() -> None:
    sink = Sink()
    sink.failing = True
    hub = NoticeHub(sinks=[sink], retry_s=(0.01, 0.02))
    await hub.start()
    try:
        hub.publish([stored_hit("h1")])
        ticket = hub.durable()
        await eventually(lambda: sink.failures >= 3)  # retried, with backoff
        assert not ticket.done()
        sink.failing = False
        await settles(ticket)
        assert sink.took == [["h1"]]
    finally:
        await hub.stop()


async def test_batches_that_make_no_notice_settle_too() -> None:
    sink = Sink()
    hub = NoticeHub(sinks=[sink])
    await hub.start()
    try:
        hub.publish([stored_hit("b1", Verdict.BOT), stored_hit("i1", Verdict.INVALID)])
        await settles(hub.durable())
        assert sink.took == []
    finally:
        await hub.stop()


async def test_a_dropped_batch_is_counted_and_never_holds_a_ticket() -> None:
    sink = Sink()
    sink.gate.clear()
    hub = NoticeHub(sinks=[sink], max_queued=3)
    await hub.start()
    try:
        hub.publish([stored_hit("h1"), stored_hit("h2")])  # taken by the hub's task, which waits at the sink
        await eventually(lambda: sink.entered == 1)
        hub.publish([stored_hit("h3"), stored_hit("h4")])  # queued: the hub is behind
        hub.publish([stored_hit("h5"), stored_hit("h6")])  # 2 + 2 > 3 with h3, h4 waiting: dropped
        assert hub.dropped == 2
        ticket = hub.durable()
        sink.gate.set()
        await settles(ticket)
        assert sink.took == [["h1", "h2"], ["h3", "h4"]]
    finally:
        await hub.stop()


async def test_one_batch_larger_than_the_bound_is_taken_when_nothing_else_waits() -> None:
    sink = Sink()
    hub = NoticeHub(sinks=[sink], max_queued=2)
    hub.publish([stored_hit("h1"), stored_hit("h2"), stored_hit("h3")])
    assert hub.dropped == 0
    ticket = hub.durable()
    await hub.start()
    try:
        await settles(ticket)
        assert sink.took == [["h1", "h2", "h3"]]
    finally:
        await hub.stop()


async def test_a_stop_cancels_the_tickets_of_notices_never_handed_on() -> None:
    sink = Sink()
    sink.failing = True
    hub = NoticeHub(sinks=[sink], retry_s=(0.01, 0.01))
    await hub.start()
    hub.publish([stored_hit("h1")])
    ticket = hub.durable()
    await hub.stop(deadline_s=0.2)
    assert ticket.cancelled()
    assert sink.took == []


async def test_without_a_hub_the_ticket_is_done_at_once() -> None:
    assert Notifications().durable().done()


async def test_the_hub_never_blocks_and_drops_past_its_bound() -> None:
    got: list[list[str]] = []

    async def sink(notices: object) -> None:
        got.append([n.id for n in notices])  # type: ignore[attr-defined]

    hub = NoticeHub(sinks=[sink], max_queued=3)
    hub.publish([stored_hit("h1", Verdict.HUMAN), stored_hit("h2", Verdict.HUMAN)])
    hub.publish([stored_hit("h3", Verdict.HUMAN), stored_hit("h4", Verdict.HUMAN)])  # over the bound
    hub.publish([stored_hit("h5", Verdict.BOT)])
    assert hub.dropped == 2
    assert hub.queued == 3
    await hub.start()
    await hub.stop()
    assert got == [["h1", "h2"]]  # the bot's batch made no notice
