"""Read notices (issue 18): which stored read records make one and how each is named, the exact JSON, naming
one whose open the processor did not judge, the webhook filter, the wire (old records still decode), and the
hub: a read handed on after its open, under the same ticket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from notices.deliveries import plan_deliveries, webhook_body
from notices.hub import NoticeHub
from notices.making import notices_of
from notices.read_making import named, named_all, read_notice_id, read_notices_of, unnamed
from notices.wiring import Notifications
from schemas.notices import (
    NOTICE_TYPES,
    WEBHOOK_EVENTS,
    MalformedNotice,
    decode_notice,
    decode_notice_batch,
    encode_notice,
    encode_notice_batch,
    notice_data,
)
from schemas.reads import ReadEnd
from schemas.verdicts import Verdict
from tests.notice_samples import stored_hit, webhook
from tests.notice_sinks import GatedSink, running
from tests.read_notice_samples import read_record, stored_read

CREATED_MS = 1_700_000_200_000  # 2023-11-14T22:16:40Z


def test_only_the_reads_of_counted_human_opens_make_notices() -> None:
    reads = [
        stored_read(read_record("h1", 6_200)),
        stored_read(read_record("h2", 9_000), Verdict.MACHINE),  # Apple's prefetch: unknown, told nothing
        stored_read(read_record("h3", 1_000), Verdict.BOT),
        stored_read(read_record("h4", 1_000), Verdict.INVALID),
        stored_read(read_record("h5", 1_000), Verdict.BOT, "replay_flood"),
        stored_read(read_record("h6", 12_000), None),  # not judged by this processor
        stored_read(read_record("h7", 25_000, ReadEnd.CAP)),
    ]
    notices = read_notices_of(reads, CREATED_MS)
    assert [(n.id, n.type, n.read_of, n.verdict, n.read_category) for n in notices] == [
        ("h1:read", "read", "h1", "human", "skimmed"),
        ("h6:read", "read", "h6", "", ""),  # named once the store says what its open was
        ("h7:read", "read", "h7", "human", "read"),
    ]
    assert [unnamed(n) for n in notices] == [False, True, False]
    assert read_notices_of([], CREATED_MS) == []
    assert read_notice_id("h1") == "h1:read"


@pytest.mark.parametrize(
    ("read_ms", "end", "category", "seconds"),
    [
        (8_000, ReadEnd.CLOSED, "read", 8.0),
        (7_999, ReadEnd.CLOSED, "skimmed", 7.999),
        (2_000, ReadEnd.CLOSED, "skimmed", 2.0),
        (1_999, ReadEnd.CLOSED, "glanced", 1.999),
        (0, ReadEnd.CLOSED, "glanced", 0.0),
        (25_000, ReadEnd.CAP, "read", 25.0),
        (9_500, ReadEnd.STOPPED, "read", 9.5),  # a lower bound that already reaches 8 s
        (5_000, ReadEnd.STOPPED, "unknown", 5.0),  # a lower bound under 8 s says nothing
        (0, ReadEnd.BUSY, "unknown", None),  # the GIF went whole: nothing measured
        (0, ReadEnd.PROXY, "unknown", None),
    ],
)
def test_each_measurement_is_named_as_the_api_names_it(
    read_ms: int, end: ReadEnd, category: str, seconds: float | None
) -> None:
    [n] = read_notices_of([stored_read(read_record("h1", read_ms, end))], CREATED_MS)
    data = notice_data(n)
    assert (data["read_category"], data["read_seconds"], data["end"]) == (category, seconds, end.value)
    # named from the store, a notice says the same
    [pending] = read_notices_of([stored_read(read_record("h1", read_ms, end), None)], CREATED_MS)
    assert named(pending, "human") == n


def test_the_read_notice_has_its_exact_webhook_body() -> None:
    [n] = read_notices_of([stored_read(read_record("h1", 6_200))], CREATED_MS)
    assert webhook_body(n) == (
        b'{"id":"h1:read","type":"read","created_at":"2023-11-14T22:16:40.000Z","data":{"id":"h1:read",'
        b'"type":"read","account":"acme","campaign_id":"spring","message_id":"m1","recipient":null,'
        b'"at":"2023-11-14T22:13:26.203Z","read_of":"h1","opened_at":"2023-11-14T22:13:20.000Z",'
        b'"read_seconds":6.2,"end":"closed","read_category":"skimmed"}}'
    )
    # what an erasure or do-not-track finds it by, never shown
    assert n.recipient_tag == "ab" * 16
    assert "recipient_tag" not in notice_data(n)
    [busy] = read_notices_of([stored_read(read_record("h2", 0, ReadEnd.BUSY))], CREATED_MS)
    assert notice_data(busy)["read_seconds"] is None


def test_a_read_whose_open_was_not_judged_here_is_named_by_its_verdict_in_events() -> None:
    pending = read_notices_of(
        [
            stored_read(read_record("h1", 3_000), None),
            stored_read(read_record("h2", 3_000), None),
            stored_read(read_record("h3", 3_000), None),
            stored_read(read_record("h4", 0, ReadEnd.PROXY), None),
        ],
        CREATED_MS,
    )
    [open_] = notices_of([stored_hit("h0")], CREATED_MS)
    done = named_all([open_, *pending], {"h1": "human", "h2": "machine", "h4": "human"})  # h3: not in events
    assert [(n.id, n.verdict, n.read_category) for n in done] == [
        ("h0", "human", ""),
        ("h1:read", "human", "skimmed"),
        ("h4:read", "human", "unknown"),
    ]
    assert named(open_, None) is open_  # only an unnamed read notice is named


def test_webhooks_subscribe_to_read_by_name_and_it_waits_on_the_messages_lane() -> None:
    assert "read" in WEBHOOK_EVENTS
    assert "read" in NOTICE_TYPES
    [open_] = notices_of([stored_hit("h1")], CREATED_MS)
    [read] = read_notices_of([stored_read(read_record("h1", 6_200))], CREATED_MS)
    hooks = {
        "acme": [
            webhook("wh_read", "read"),
            webhook("wh_opens", "open", "first_open"),
            webhook("wh_both", "open", "read"),
        ]
    }
    planned = plan_deliveries([open_, read], lambda account: hooks.get(account, []))
    assert [(d.webhook_id, d.type, d.notice_id) for d in planned] == [
        ("wh_opens", "open", "h1"),
        ("wh_both", "open", "h1"),
        ("wh_read", "read", "h1:read"),
        ("wh_both", "read", "h1:read"),
    ]
    both = [d for d in planned if d.webhook_id == "wh_both"]
    assert both[0].lane == both[1].lane == "wh_both\x1facme\x1fm1"  # one at a time: the read after its open
    assert planned[-1].recipient_tag == "ab" * 16


def test_a_read_notice_travels_the_enriched_topic_and_old_records_still_decode() -> None:
    notices = read_notices_of(
        [stored_read(read_record("h1", 6_200)), stored_read(read_record("h2", 0, ReadEnd.BUSY), None)],
        CREATED_MS,
    )
    for n in notices:
        assert decode_notice(encode_notice(n)) == n
    assert decode_notice_batch(encode_notice_batch(notices)) == (notices, [])
    # a notice written before the read fields existed: defaults for them
    [open_] = notices_of([stored_hit("h1")], 5)
    old = {k: v for k, v in orjson.loads(encode_notice(open_)).items() if k not in _READ_FIELDS}
    assert list(old)[-1] == "v"
    assert decode_notice(orjson.dumps(old)) == open_
    good = orjson.loads(encode_notice(notices[0]))
    for bad in ({**good, "read_ms": "6200"}, {**good, "read_ms": 6.2}, {**good, "read_of": None}):
        with pytest.raises(MalformedNotice):
            decode_notice(orjson.dumps(bad))


_READ_FIELDS = frozenset({"read_of", "opened_at_ms", "read_ms", "read_end", "read_category"})


async def test_the_hub_hands_a_read_on_after_its_open_under_one_ticket() -> None:
    sink = GatedSink()
    hub = NoticeHub(sinks=[sink], retry_s=(0.01, 0.01))
    n = Notifications(hub=hub)
    [publish] = n.listeners()
    [publish_reads] = n.read_listeners()
    async with running(hub):
        sink.gate.clear()
        publish([stored_hit("h0")])
        await _eventually(lambda: sink.entered == 1)
        # a flush: its hits, then its read records (as the runner hands them on)
        publish([stored_hit("h1"), stored_hit("b1", Verdict.BOT)])
        publish_reads(
            [stored_read(read_record("h0", 9_000)), stored_read(read_record("b1", 1_000), Verdict.BOT)]
        )
        publish([stored_hit("h2")])
        publish_reads([stored_read(read_record("h1", 1_500))])
        ticket = n.durable()
        assert hub.unsettled == 5
        await asyncio.sleep(0.05)
        assert not ticket.done()
        sink.gate.set()
        await asyncio.wait_for(asyncio.shield(ticket), 30)
        assert sink.took == [["h0"], ["h1", "h0:read", "h2", "h1:read"]]
        # a batch of reads that make no notice settles too
        publish_reads([stored_read(read_record("h9", 1_000), Verdict.MACHINE)])
        await asyncio.wait_for(n.durable(), 30)
        assert len(sink.took) == 2
    # without a hub there is nothing to call
    assert Notifications().read_listeners() == []


async def _eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)
