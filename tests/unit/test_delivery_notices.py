"""Delivery notices (issue 16): which stored delivery events make one, the exact JSON of each new type, the
open and click JSON unchanged, the recipient tag an erasure finds them by, the wire; and the hub with hit and
delivery batches mixed: one order, one durable ticket."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from notices.deliveries import plan_deliveries, webhook_body
from notices.delivery_making import delivery_notices_of
from notices.hub import NoticeHub
from notices.making import notices_of
from notices.wiring import Notifications
from schemas.notices import (
    WEBHOOK_EVENTS,
    MalformedNotice,
    decode_notice,
    decode_notice_batch,
    encode_notice,
    encode_notice_batch,
)
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring, recipient_tag
from schemas.verdicts import Verdict
from tests.delivery_notice_samples import delivery_event
from tests.notice_samples import stored_hit, webhook
from tests.notice_sinks import GatedSink, running

KEYRING = Keyring(((2, b"k2-" + b"x" * 29), (1, b"k1-" + b"y" * 29)))
CREATED_MS = 1_700_000_200_000  # 2023-11-14T22:16:40Z


def test_only_matched_delivered_bounce_and_complaint_events_make_notices() -> None:
    events = [
        delivery_event("delivered", "m1"),
        delivery_event("deferred", "m1", 2, smtp_status="4.2.2", smtp_code=452),
        delivery_event("bounce", "m1", 3),
        delivery_event("dropped", "m2"),
        delivery_event("complaint", "m1", 4),
        delivery_event("unsubscribe", "m1", 5),
        delivery_event("bounce", "", 6, campaign_id="", recipient="stranger@example.com"),  # unmatched
    ]
    notices = delivery_notices_of(events, CREATED_MS, KEYRING)
    assert [(n.id, n.type, n.message_id) for n in notices] == [
        (events[0].delivery_id, "delivered", "m1"),
        (events[2].delivery_id, "bounce", "m1"),
        (events[4].delivery_id, "complaint", "m1"),
    ]
    assert delivery_notices_of([], CREATED_MS, KEYRING) == []


def test_each_new_type_has_its_exact_webhook_body() -> None:
    delivered, bounce, complaint = delivery_notices_of(
        [
            delivery_event("delivered", "m1"),
            delivery_event("bounce", "m1", 2),
            delivery_event("complaint", "m1", 3),
        ],
        CREATED_MS,
        KEYRING,
    )
    head = '"account":"acme","campaign_id":"spring","message_id":"m1","recipient":"m1@example.com"'
    pmid = '"provider":"sendgrid","provider_message_id":"sgmsg-m1.filter0001"'
    assert (
        webhook_body(delivered)
        == (
            f'{{"id":"{delivered.id}","type":"delivered","created_at":"2023-11-14T22:16:40.000Z","data":'
            f'{{"id":"{delivered.id}","type":"delivered",{head},"at":"2023-11-14T22:15:00.001Z",{pmid},'
            '"provider_type":"delivered","smtp_status":null,"smtp_code":250,'
            '"diagnostic":"250 2.0.0 OK 1700000100"}}'
        ).encode()
    )
    assert (
        webhook_body(bounce)
        == (
            f'{{"id":"{bounce.id}","type":"bounce","created_at":"2023-11-14T22:16:40.000Z","data":'
            f'{{"id":"{bounce.id}","type":"bounce",{head},"at":"2023-11-14T22:15:00.002Z",{pmid},'
            '"provider_type":"bounce","bounce_type":"hard","smtp_status":"5.1.1","smtp_code":550,'
            '"diagnostic":"550 5.1.1 The email account that you tried to reach does not exist."}}'
        ).encode()
    )
    assert (
        webhook_body(complaint)
        == (
            f'{{"id":"{complaint.id}","type":"complaint","created_at":"2023-11-14T22:16:40.000Z","data":'
            f'{{"id":"{complaint.id}","type":"complaint",{head},"at":"2023-11-14T22:15:00.003Z",{pmid},'
            '"provider_type":"spamreport","smtp_status":null,"smtp_code":null,"diagnostic":null}}'
        ).encode()
    )
    # the id is the event's delivery_id: 32 hex digits, the same for a provider's retry of the event
    assert len(bounce.id) == 32
    assert (
        delivery_notices_of([delivery_event("bounce", "m1", 2)], CREATED_MS + 9, KEYRING)[0].id == bounce.id
    )
    # and a notice is not a judged hit
    assert (bounce.verdict, bounce.reason, bounce.first, bounce.sent_at_ms) == ("", "", False, 0)


def test_open_and_click_bodies_are_byte_for_byte_what_they_were() -> None:
    # Bytes written by the code before delivery notices existed (commit 58f3324), for the same stored hits.
    stored = [stored_hit("h1"), stored_hit("h2", Verdict.MACHINE), stored_hit("h5", kind="click")]
    common = (
        '"account":"acme","campaign_id":"spring","message_id":"m1","recipient":null,"first":false,'
        '"at":"2023-11-14T22:13:20.000Z","sent_at":"2023-11-14T21:56:40.000Z"'
    )
    agent = '"client":"Apple Mail","device":"mobile","os":"iOS","country":"GB"'
    assert [webhook_body(n) for n in notices_of(stored, 1_700_000_000_500)] == [
        (
            '{"id":"h1","type":"open","created_at":"2023-11-14T22:13:20.500Z","data":{"id":"h1","type":"open",'
            f'{common},"verdict":"human","reason":"why","via_proxy":false,{agent}}}}}'
        ).encode(),
        (
            '{"id":"h2","type":"machine_open","created_at":"2023-11-14T22:13:20.500Z","data":{"id":"h2",'
            f'"type":"machine_open",{common},"verdict":"machine","reason":"why","via_proxy":false,{agent}}}}}'
        ).encode(),
        (
            '{"id":"h5","type":"click","created_at":"2023-11-14T22:13:20.500Z","data":{"id":"h5","type":"click",'
            f'{common},"verdict":"human","reason":"why","via_proxy":false,{agent},"link_index":1,'
            '"url":"https://example.com/b"}}'
        ).encode(),
    ]


def test_the_recipient_tag_is_the_signing_keys_so_do_not_track_and_erasure_find_the_notice() -> None:
    [bounce] = delivery_notices_of([delivery_event("bounce", "m1", recipient="M1@Example.com ")], 1, KEYRING)
    assert bounce.recipient_tag == recipient_tag(KEYRING.signing_key[1], "acme", "m1@example.com").hex()
    suppressed = DoNotTrack(KEYRING)
    suppressed.add("acme", "m1@example.com")
    assert suppressed.suppressed_hex(bounce.recipient_tag)
    assert bounce.recipient_tag in {t.hex() for t in KEYRING.recipient_tags("acme", "m1@example.com")}
    # without a keyring (or a recipient) there is nothing to tag with
    assert delivery_notices_of([delivery_event("bounce", "m1")], 1)[0].recipient_tag == ""
    assert (
        delivery_notices_of([delivery_event("bounce", "m1", recipient="")], 1, KEYRING)[0].recipient_tag == ""
    )


def test_webhooks_subscribe_to_the_new_types_by_name() -> None:
    assert {"delivered", "bounce", "complaint"} <= set(WEBHOOK_EVENTS)
    delivered, bounce = delivery_notices_of(
        [delivery_event("delivered", "m1"), delivery_event("bounce", "m1", 2)], 1, KEYRING
    )
    hooks = {"acme": [webhook("wh_bounce", "bounce"), webhook("wh_opens", "open", "first_open")]}
    planned = plan_deliveries([delivered, bounce], lambda account: hooks.get(account, []))
    assert [(d.webhook_id, d.type, d.notice_id) for d in planned] == [("wh_bounce", "bounce", bounce.id)]
    # one lane per webhook and message: a message's bounce waits behind its earlier opens
    assert planned[0].lane == "wh_bounce\x1facme\x1fm1"
    assert planned[0].recipient_tag == bounce.recipient_tag


def test_a_delivery_notice_travels_the_enriched_topic_and_old_records_still_decode() -> None:
    notices = delivery_notices_of(
        [
            delivery_event("delivered", "m1"),
            delivery_event("bounce", "m1", 2),
            delivery_event("complaint", "m2"),
        ],
        CREATED_MS,
        KEYRING,
    )
    for n in notices:
        assert decode_notice(encode_notice(n)) == n
    assert decode_notice_batch(encode_notice_batch(notices)) == (notices, [])
    # a notice written before the delivery fields existed (what the old dataclass encoded): defaults for them
    [open_] = notices_of([stored_hit("h1")], 5)
    old = {k: v for k, v in orjson.loads(encode_notice(open_)).items() if k not in _DELIVERY_FIELDS}
    assert list(old)[-1] == "v"
    assert decode_notice(orjson.dumps(old)) == open_
    # the new fields are typed like the others
    good = orjson.loads(encode_notice(notices[1]))
    for bad in ({**good, "smtp_code": "550"}, {**good, "smtp_code": True}, {**good, "provider": None}):
        with pytest.raises(MalformedNotice):
            decode_notice(orjson.dumps(bad))


_DELIVERY_FIELDS = frozenset(
    {
        "provider",
        "provider_message_id",
        "provider_type",
        "bounce_type",
        "smtp_status",
        "smtp_code",
        "diagnostic",
    }
)


async def test_the_hub_hands_on_hit_and_delivery_batches_in_publish_order_under_one_ticket() -> None:
    sink = GatedSink()
    hub = NoticeHub(sinks=[sink], keyring=KEYRING, retry_s=(0.01, 0.01))
    n = Notifications(hub=hub)
    [publish_deliveries] = n.delivery_listeners()
    delivered, bounce = delivery_event("delivered", "m1"), delivery_event("bounce", "m2", 2)
    async with running(hub):
        sink.gate.clear()  # behind: the next passes take several batches at once
        hub.publish([stored_hit("h0")])
        await _eventually(lambda: sink.entered == 1)
        publish_deliveries([delivered, delivery_event("deferred", "m1", 3)])
        hub.publish([stored_hit("h1"), stored_hit("b1", Verdict.BOT)])
        publish_deliveries([bounce])
        ticket = n.durable()
        assert hub.queued == 5
        assert hub.unsettled == 4
        await asyncio.sleep(0.05)
        assert not ticket.done()  # the first batch is held at the sink, and every later one behind it
        sink.gate.set()
        await asyncio.wait_for(asyncio.shield(ticket), 30)
        assert sink.took == [["h0"], [delivered.delivery_id, "h1", bounce.delivery_id]]
        assert hub.unsettled == 0
        # a batch of events that make no notice settles too
        publish_deliveries([delivery_event("unsubscribe", "m1", 9)])
        await asyncio.wait_for(n.durable(), 30)
        assert len(sink.took) == 2


async def test_a_full_queue_drops_delivery_batches_as_it_drops_hits() -> None:
    sink = GatedSink()
    sink.gate.clear()
    hub = NoticeHub(sinks=[sink], keyring=KEYRING, max_queued=3)
    async with running(hub, stop_deadline_s=0.1):
        hub.publish_deliveries([delivery_event("delivered", "m1")])
        await _eventually(lambda: sink.entered == 1)
        hub.publish_deliveries([delivery_event("delivered", f"m{i}", i) for i in range(2, 5)])
        hub.publish_deliveries([delivery_event("bounce", "m9")])  # 3 + 1 > 3: dropped, counted
        assert (hub.queued, hub.dropped) == (3, 1)
        sink.gate.set()
        await asyncio.wait_for(hub.durable(), 30)
    assert [len(ids) for ids in sink.took] == [1, 3]


async def _eventually(condition: object, timeout_s: float = 30.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)
