"""Read notices end to end (issue 18): a pixel opened over real HTTP, then its read record published on the
bus as the edge publishes it (`publish_encoded` with the open's key), stored by the processor and handed on
(`Notifications.read_listeners`): out as a signed webhook to a real receiver after its open, on
`GET /v1/live` to a real SSE client after its open, exactly once when the record comes again; no notice for
a machine open's read or one whose open is not stored; and a read whose open the processor did not judge,
named by its open's verdict in ``events`` (`MessageLookup` on real chDB); and on Kafka through the
``enriched`` topic to the dispatcher's group and an API process's live tail, each read after its open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bus.kafka_config import KafkaConfig
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.hub import NoticeHub
from notices.kafka import NoticeConsumer, NoticeProducer
from notices.live import LiveFeed
from notices.making import MessageLookup
from notices.read_making import read_notices_of
from notices.retries import RetryPolicy
from notices.signing import verify
from processors.reads import StoredRead
from schemas.notices import Notice, Webhook, notice_data
from schemas.reads import ReadEnd, ReadRecord, encode_read
from schemas.secret import Secret
from schemas.topics import Topics
from schemas.verdicts import Verdict
from tests.integration.helpers import hit, wait_for
from tests.integration.test_delivery_notices_http import events_of
from tests.integration.test_live_sse import hit as hit_async
from tests.integration.test_webhooks_http import (
    ACME,
    APPLE_MPP,
    GLOBEX,
    Receiver,
    Running,
    add_webhook,
    eventually,
    pixelpipe,
    positions,
    register,
)
from tests.notice_samples import stored_hit
from tests.read_notice_samples import read_record, stored_read
from tests.serving import serving


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()  # `tests.integration.test_webhooks_http`'s: records every request, answers 204
    with serving(rx.app()) as base:
        yield rx, base


def read_of(opened: Notice, read_ms: int, end: ReadEnd = ReadEnd.CLOSED) -> ReadRecord:
    """The read record the edge publishes when the pixel of ``opened`` (its notice) was held ``read_ms``."""
    return ReadRecord(
        read_of=opened.id,
        account=opened.account,
        campaign_id=opened.campaign_id,
        message_id=opened.message_id,
        recipient_tag=opened.recipient_tag,
        opened_at_ms=opened.at_ms,
        ended_at_ms=opened.at_ms + read_ms + 40,
        read_ms=read_ms,
        end=end,
    )


async def _publish(p: Running, records: list[ReadRecord]) -> None:
    assert p.components is not None
    publisher = p.components.publisher
    assert publisher is not None
    for record in records:
        publisher.publish_encoded(record.partition_key, encode_read(record))


def publish(p: Running, *records: ReadRecord) -> None:
    """As the edge: each record on the hit topic with its open's key (on the process's event loop)."""
    hub = p.notifications.hub
    assert hub is not None
    assert hub._task is not None  # started: its loop is the process's
    asyncio.run_coroutine_threadsafe(_publish(p, list(records)), hub._task.get_loop()).result(10)


def expected(record: ReadRecord, category: str, recipient: str) -> dict[str, Any]:
    """The public JSON of ``record``'s notice as it reaches a receiver (completed with its recipient)."""
    [n] = read_notices_of([StoredRead(record, "", None)], 0)
    data = notice_data(n)
    return {**data, "recipient": recipient, "read_category": category}


def test_a_read_reaches_its_webhooks_signed_after_its_open_and_once(
    env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    with pixelpipe(env) as p:
        acme = add_webhook(p.client, f"{rx_base}/acme", ["open", "read"])
        reads = add_webhook(p.client, f"{rx_base}/reads", ["read"])
        add_webhook(p.client, f"{rx_base}/globex", ["open", "read"], headers=GLOBEX)
        m1, m2 = register(p.client, "m1"), register(p.client, "m2")
        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the registrations
        hit(p.client, m1["pixel_url"])
        hit(p.client, m2["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1])  # a machine open
        wait_for(lambda: len(p.counted), lambda n: n == 2, timeout_s=30)
        opened = next(n for n in p.counted if n.type == "open")
        machine = next(n for n in p.counted if n.type == "machine_open")

        skimmed = read_of(opened, 6_200)
        stray = ReadRecord(**{**_fields(skimmed), "read_of": "0" * 28})  # its open was never stored
        publish(p, read_of(machine, 9_000), stray, skimmed)
        publish(p, skimmed)  # the edge's spool replays it: the same notice, no second delivery
        # open to /acme, then its read to /acme and /reads; the machine open's read and the stray make none
        wait_for(p.deliveries, lambda states: states == ["delivered"] * 3, timeout_s=30)
        wait_for(lambda: [n.type for n in p.counted], lambda t: t.count("read") == 2, timeout_s=30)
        assert [n.id for n in p.counted if n.type == "read"] == [f"{opened.id}:read"] * 2

        [first, then] = rx.delivered("/acme")
        assert (first.json["type"], first.json["id"]) == ("open", opened.id)
        assert then.json["type"] == "read"
        assert then.json["id"] == then.headers["pixelpipe-event-id"] == f"{opened.id}:read"
        assert then.json["data"] == expected(skimmed, "skimmed", "m1@example.com")
        assert then.json["data"]["read_seconds"] == 6.2
        assert then.json["data"]["read_of"] == opened.id
        assert verify(acme["secret"], then.headers["pixelpipe-signature"], then.body, now=time.time())
        assert not verify(reads["secret"], then.headers["pixelpipe-signature"], then.body, now=time.time())
        [only] = rx.delivered("/reads")
        assert only.body == then.body
        assert verify(reads["secret"], only.headers["pixelpipe-signature"], only.body, now=time.time())
        assert rx.attempts("/globex") == []  # another account's webhook
        log, _ = wait_for(
            lambda: p.client.get(f"/v1/webhooks/{reads['id']}/deliveries", headers=ACME).json()["deliveries"],
            lambda rows: len(rows) == 1,
            timeout_s=30,
        )
        assert (log[0]["status"], log[0]["type"]) == ("delivered", "read")


def _fields(record: ReadRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in ReadRecord.__dataclass_fields__}


def test_a_read_whose_open_was_judged_elsewhere_is_named_by_its_verdict_in_events(
    env: dict[str, str],
) -> None:
    with pixelpipe(env) as p:
        m1, m2 = register(p.client, "m1"), register(p.client, "m2")
        hit(p.client, m1["pixel_url"])
        hit(p.client, m2["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1])
        wait_for(lambda: len(p.counted), lambda n: n == 2, timeout_s=30)
        opened = next(n for n in p.counted if n.type == "open")
        machine = next(n for n in p.counted if n.type == "machine_open")
        assert p.components is not None
        store = p.components.store
        assert store is not None
        # As a processor that did not judge the opens hands them on (after a restart, or another's):
        records = [read_of(opened, 1_500), read_of(machine, 9_000), read_of(opened, 0, ReadEnd.PROXY)]
        pending = read_notices_of([StoredRead(r, "", None) for r in records], 0)
        assert [n.read_category for n in pending] == ["", "", ""]
        named = MessageLookup(store).complete(pending)
        assert [(n.id, n.verdict, n.read_category, n.recipient) for n in named] == [
            (f"{opened.id}:read", "human", "glanced", "m1@example.com"),
            (f"{opened.id}:read", "human", "unknown", "m1@example.com"),  # the GIF went whole
        ]


async def test_live_shows_a_read_after_its_open_and_include_read_false_leaves_it_out(
    env: dict[str, str],
) -> None:
    with pixelpipe(env, heartbeat_s=0.3) as p:
        async with httpx.AsyncClient(base_url=p.base, timeout=10) as client:
            r = await client.post(
                "/v1/messages",
                json={"campaign_id": "spring", "recipient": "m-live@example.com", "message_id": "m-live"},
                headers=ACME,
            )
            assert r.status_code == 201, r.text
            async with (
                events_of(client, "/v1/live") as all_,
                events_of(client, "/v1/live?include_read=false") as opens,
            ):
                await hit_async(client, r.json()["pixel_url"])
                first = await asyncio.wait_for(all_.get(), 30)
                await asyncio.to_thread(wait_for, lambda: len(p.counted), lambda n: n == 1)
                [opened] = p.counted  # the recorder is the hub's last sink: after the live feed
                record = read_of(opened, 12_000, ReadEnd.CAP)
                await asyncio.to_thread(publish, p, record)
                then = await asyncio.wait_for(all_.get(), 30)
                only = await asyncio.wait_for(opens.get(), 30)
                await asyncio.sleep(0.5)  # what else would come on the open-only stream by now
                assert opens.empty()
        assert (first.event, orjson.loads(first.data)["id"]) == ("open", opened.id)
        assert then.event == "read"
        assert orjson.loads(then.data) == expected(record, "read", "m-live@example.com")
        assert int(first.id.rpartition("-")[2]) < int(then.id.rpartition("-")[2])
        assert (only.event, orjson.loads(only.data)["id"]) == ("open", opened.id)


# -- Kafka ---------------------------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_read_notices_reach_the_dispatcher_and_the_live_tail_through_the_enriched_topic_after_opens(
    kafka_bootstrap: str,
    kafka_topics: Topics,
    kafka_group: str,
    receiver: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    rx, rx_base = receiver
    hook = Webhook("acme", "wh_kafka", f"{rx_base}/acme", ("open", "read"), Secret("whsec_k"))
    producer = NoticeProducer(KafkaConfig(kafka_bootstrap, partitions=3), kafka_topics)
    hub = NoticeHub(sinks=[producer.send])
    dispatcher = WebhookDispatcher(
        outbox_path=tmp_path / "outbox.sqlite3",
        directory=WebhookDirectory(lambda: [hook], refresh_s=0),
        policy=RetryPolicy(first_delay_s=0.1, max_delay_s=0.2, max_attempts=50, jitter=0),
        allow_private=True,  # the receiver is on 127.0.0.1
    )
    notify = NoticeConsumer(
        KafkaConfig(kafka_bootstrap), kafka_topics, dispatcher.accept, group_id=kafka_group
    )
    live = LiveFeed()  # an API process's: it tails the topic
    tail = NoticeConsumer(KafkaConfig(kafka_bootstrap), kafka_topics, live.accept, group_id=None)
    messages = [f"m{m}" for m in range(4)]
    reads = [
        stored_read(read_record(f"h-{m}", 2_000 + 3_000 * i, message_id=m)) for i, m in enumerate(messages)
    ]
    await dispatcher.start()
    await producer.start()
    await hub.start()
    await notify.start()
    await tail.start()
    try:
        await positions(tail)  # the tail starts at the end: where the end is must be known before we send
        # as the runner hands on flushes: the hits, then the flush's read records
        hub.publish([stored_hit(f"h-{m}", message=m) for m in messages])
        hub.publish_reads(reads[:2])
        hub.publish([stored_hit("h-m9", Verdict.MACHINE, message="m9")])
        hub.publish_reads(
            [*reads[2:], stored_read(read_record("h-m9", 9_000, message_id="m9"), Verdict.MACHINE)]
        )
        await asyncio.wait_for(hub.durable(), 30)  # on the broker: what the runner waits for to commit
        await eventually(lambda: len(rx.delivered()) == 8, 30, "every notice delivered")
        await eventually(lambda: tail.consumed == 9, 30, "the live tail")  # and the machine open
    finally:
        await tail.stop()
        await notify.stop()
        await hub.stop()
        await dispatcher.stop()
        await producer.stop()

    bodies = [r.json for r in rx.delivered()]
    for i, m in enumerate(messages):
        of_message = [b for b in bodies if b["data"]["message_id"] == m]
        assert [b["id"] for b in of_message] == [f"h-{m}", f"h-{m}:read"]
        [n] = read_notices_of([reads[i]], 0)
        assert of_message[1]["data"] == notice_data(n)
    categories = {b["data"]["message_id"]: b["data"]["read_category"] for b in bodies if b["type"] == "read"}
    assert categories == {"m0": "skimmed", "m1": "skimmed", "m2": "read", "m3": "read"}  # 2, 5, 8, 11 s
    for r in rx.delivered():
        assert verify("whsec_k", r.headers["pixelpipe-signature"], r.body, now=time.time())
    assert live.held("acme") == 9
