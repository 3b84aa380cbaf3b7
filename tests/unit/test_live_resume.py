"""Resuming the live feed from a `Last-Event-ID` it never gave: a `gap` event, then what the ring holds, as
for `0-0`; no header (or a blank one) is a fresh stream, from now, without a gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from notices.live import LiveFeed, parse_event_id
from schemas.live import LiveItem
from tests.unit.test_notify import notice


async def _take(stream: AsyncIterator[LiveItem], count: int) -> list[LiveItem]:
    return [await asyncio.wait_for(anext(stream), 2) for _ in range(count)]


@pytest.mark.parametrize(
    "garbage", ["garbage", "0-0", "²-1", "1-²", "-", "1-", "-1", "abc-def", "1-2-3", "\u0661-\u0661"]
)
async def test_an_id_the_feed_never_gave_gets_a_gap_then_what_the_ring_holds(garbage: str) -> None:
    feed = LiveFeed(ring_size=10, heartbeat_s=5)
    feed.accept_now([notice("m1", 1), notice("m1", 2)])
    stream = feed.stream("acme", last_event_id=garbage)
    hello, gap, first, second = await _take(stream, 4)
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
    [item] = await _take(stream, 1)
    assert item.event == "open"
    assert orjson.loads(item.data or b"{}")["id"] == "m1-2"
    await stream.aclose()


def test_non_ascii_digits_are_not_an_id() -> None:
    assert parse_event_id("²-1") is None
    assert parse_event_id("\u0661-\u0661") is None
    assert parse_event_id(" 12-34 ") == (12, 34)
