"""`NoticeHub.durable`: what the processor waits on before it commits raw offsets on Kafka. A ticket completes
once every batch published before it was handed to every sink, in publish order; a failing sink holds it; a
dropped batch never does; a stop cancels what was never handed on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from notices.hub import NoticeHub
from notices.wiring import Notifications
from schemas.verdicts import Verdict
from tests.notice_samples import stored_hit
from tests.notice_sinks import GatedSink, running


async def settles(future: asyncio.Future[None], timeout_s: float = 30.0) -> None:
    await asyncio.wait_for(asyncio.shield(future), timeout_s)


async def eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_ticket_completes_once_its_batches_reached_every_sink_and_not_before() -> None:
    first, second = GatedSink(), GatedSink()
    hub = NoticeHub(sinks=[first, second], retry_s=(0.01, 0.01))
    nothing_yet = hub.durable()
    assert nothing_yet.done()  # nothing published: nothing to wait for
    second.gate.clear()
    async with running(hub):
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


async def test_a_failing_sink_holds_the_ticket_until_it_takes_the_notices() -> None:
    sink = GatedSink()
    sink.failing = True
    hub = NoticeHub(sinks=[sink], retry_s=(0.01, 0.02))
    async with running(hub):
        hub.publish([stored_hit("h1")])
        ticket = hub.durable()
        await eventually(lambda: sink.failures >= 3)  # retried, with backoff
        assert not ticket.done()
        sink.failing = False
        await settles(ticket)
        assert sink.took == [["h1"]]


async def test_batches_that_make_no_notice_settle_too() -> None:
    sink = GatedSink()
    hub = NoticeHub(sinks=[sink])
    async with running(hub):
        hub.publish([stored_hit("b1", Verdict.BOT), stored_hit("i1", Verdict.INVALID)])
        await settles(hub.durable())
        assert sink.took == []


async def test_a_dropped_batch_is_counted_and_never_holds_a_ticket() -> None:
    sink = GatedSink()
    sink.gate.clear()
    hub = NoticeHub(sinks=[sink], max_queued=3)
    async with running(hub):
        hub.publish([stored_hit("h1"), stored_hit("h2")])  # taken by the hub's task, which waits at the sink
        await eventually(lambda: sink.entered == 1)
        hub.publish([stored_hit("h3"), stored_hit("h4")])  # queued: the hub is behind
        hub.publish([stored_hit("h5"), stored_hit("h6")])  # 2 + 2 > 3 with h3, h4 waiting: dropped
        assert hub.dropped == 2
        ticket = hub.durable()
        sink.gate.set()
        await settles(ticket)
        assert sink.took == [["h1", "h2"], ["h3", "h4"]]


async def test_one_batch_larger_than_the_bound_is_taken_when_nothing_else_waits() -> None:
    sink = GatedSink()
    hub = NoticeHub(sinks=[sink], max_queued=2)
    hub.publish([stored_hit("h1"), stored_hit("h2"), stored_hit("h3")])
    assert hub.dropped == 0
    ticket = hub.durable()
    async with running(hub):
        await settles(ticket)
        assert sink.took == [["h1", "h2", "h3"]]


async def test_a_stop_cancels_the_tickets_of_notices_never_handed_on() -> None:
    sink = GatedSink()
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
