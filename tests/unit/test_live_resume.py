"""The live feed: resuming after the last event id, keeping accounts apart, a `gap` when a resume cannot be
proven complete (an id it never gave: a `gap` event, then what the ring holds, as for `0-0`), no header (or a
blank one) is a fresh stream, from now, without a gap; heartbeats, and the end at close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from notices.live import LiveFeed, parse_event_id
from schemas.live import LiveItem
from tests.notice_samples import notice


async def take(stream: AsyncIterator[LiveItem], count: int) -> list[LiveItem]:
    return [await asyncio.wait_for(anext(stream), 30) for _ in range(count)]


def ids(items: list[LiveItem]) -> list[str]:
    return [orjson.loads(i.data)["id"] for i in items if i.data is not None and i.event != "gap"]


@pytest.mark.parametrize(
    "garbage", ["garbage", "0-0", "²-1", "1-²", "-", "1-", "-1", "abc-def", "1-2-3", "\u0661-\u0661"]
)
async def test_an_id_the_feed_never_gave_gets_a_gap_then_what_the_ring_holds(garbage: str) -> None:
    feed = LiveFeed(ring_size=10, heartbeat_s=5)
    feed.accept_now([notice("m1", 1), notice("m1", 2)])
    stream = feed.stream("acme", last_event_id=garbage)
    hello, gap, first, second = await take(stream, 4)
    assert hello.comment == "connected"
    assert gap.event == "gap"
    assert gap.data is not None
    assert orjson.loads(gap.data)["reason"] in {
        "Last-Event-ID is not an id of this feed",
        "the stream was served by another process or before a restart",  # 0-0: a well-formed id
    }
    assert [orjson.loads(i.data or b"{}")["id"] for i in (first, second)] == ["m1-1", "m1-2"]
    await stream.aclose()


@pytest.mark.parametrize("blank", [None, "", "  "])
async def test_no_id_is_a_fresh_stream_without_a_gap(blank: str | None) -> None:
    feed = LiveFeed(ring_size=10, heartbeat_s=5)
    feed.accept_now([notice("m1", 1)])
    stream = feed.stream("acme", last_event_id=blank)
    assert (await anext(stream)).comment == "connected"
    feed.accept_now([notice("m1", 2)])
    [item] = await take(stream, 1)
    assert item.event == "open"
    assert orjson.loads(item.data or b"{}")["id"] == "m1-2"
    await stream.aclose()


def test_non_ascii_digits_are_not_an_id() -> None:
    assert parse_event_id("²-1") is None
    assert parse_event_id("\u0661-\u0661") is None
    assert parse_event_id(" 12-34 ") == (12, 34)


async def test_the_live_feed_resumes_after_the_last_event_id_and_keeps_accounts_apart() -> None:
    feed = LiveFeed(ring_size=100, heartbeat_s=5)
    feed.accept_now([notice("m1", 1)])  # before anyone listens: not sent to a fresh stream
    stream = feed.stream("acme")
    hello = await anext(stream)
    assert hello.comment == "connected"
    assert hello.retry_ms == 2000
    feed.accept_now([notice("m1", 2), notice("x", 1, account="globex"), notice("m1", 3, kind="click")])
    feed.accept_now([notice("m1", 4, kind="machine_open")])  # not asked for
    seen = await take(stream, 2)
    assert ids(seen) == ["m1-2", "m1-3"]
    assert [i.event for i in seen] == ["open", "click"]
    await stream.aclose()

    feed.accept_now([notice("m1", 5), notice("x", 2, account="globex"), notice("m1", 6)])
    last = seen[-1].id
    assert last is not None
    assert parse_event_id(last) == (feed.epoch, 4)
    resumed = feed.stream("acme", last_event_id=last)
    assert (await anext(resumed)).comment == "connected"
    assert ids(await take(resumed, 2)) == ["m1-5", "m1-6"]
    await resumed.aclose()
    assert feed.streams == 0


async def test_the_live_feed_says_gap_when_it_cannot_prove_a_resume_complete() -> None:
    feed = LiveFeed(ring_size=2, heartbeat_s=5)
    stream = feed.stream("acme")
    await anext(stream)
    feed.accept_now([notice("m1", 1)])
    first = (await take(stream, 1))[0]
    await stream.aclose()
    feed.accept_now([notice("m1", 2), notice("m1", 3), notice("m1", 4)])  # m1-2 falls out of the ring
    resumed = feed.stream("acme", last_event_id=first.id)
    items = await take(resumed, 4)
    assert items[1].event == "gap"
    assert ids(items) == ["m1-3", "m1-4"]
    await resumed.aclose()
    elsewhere = feed.stream("acme", last_event_id="123-1")  # another process's id
    items = await take(elsewhere, 4)
    assert items[1].event == "gap"
    assert ids(items) == ["m1-3", "m1-4"]
    await elsewhere.aclose()


async def test_the_live_feed_beats_while_quiet_and_ends_at_close() -> None:
    feed = LiveFeed(heartbeat_s=0.05)
    stream = feed.stream("acme")
    await anext(stream)
    assert (await take(stream, 1))[0].comment == "keepalive"
    feed.close_soon()
    rest = [item async for item in stream]  # ends instead of waiting for the next notice
    assert rest == []
    assert feed.streams == 0
