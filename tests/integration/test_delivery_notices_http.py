"""Delivery notices end to end (issue 16): stored delivery events handed to the running process's hub as the
delivery loader hands them (`Notifications.delivery_listeners`, then `durable`), out as signed webhooks to a
real receiver, on `GET /v1/live` to a real SSE client, purged from the outbox by an erasure and held back by
do-not-track; and on Kafka through the ``enriched`` topic and the ``pixelpipe-notify`` group to the
dispatcher, in order with the message's opens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from bus.kafka_config import KafkaConfig
from notices.delivery_making import delivery_notices_of
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.hub import NoticeHub
from notices.kafka import NoticeConsumer, NoticeProducer
from notices.live import LiveFeed
from notices.retries import RetryPolicy
from notices.signing import verify
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.delivery_events import DeliveryEvent
from schemas.notices import Webhook, notice_data
from schemas.secret import Secret
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.delivery_notice_samples import delivery_event, stored_deliveries
from tests.integration.helpers import hit, outbox_rows, wait_for
from tests.integration.test_live_sse import hit as hit_async
from tests.integration.test_webhooks_http import (
    ACME,
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
from tests.serving import serving


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()  # `tests.integration.test_webhooks_http`'s: records every request, answers 204
    with serving(rx.app()) as base:
        yield rx, base


def expected_data(event: DeliveryEvent) -> dict[str, Any]:
    """The public JSON of ``event``'s notice (made without a keyring: the tag is not in it)."""
    [notice] = delivery_notices_of([event], 0)
    return notice_data(notice)


def test_a_bounce_reaches_its_webhook_signed_and_in_order_with_the_messages_open(
    env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    keyring = settings_mod.load(env).keyring
    with pixelpipe(env) as p:
        acme = add_webhook(p.client, f"{rx_base}/acme", ["open", "bounce"])
        reports = add_webhook(p.client, f"{rx_base}/reports", ["delivered", "complaint"])
        add_webhook(p.client, f"{rx_base}/globex", ["delivered", "bounce", "complaint"], headers=GLOBEX)
        m1 = register(p.client, "m1")
        register(p.client, "m2")
        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the registrations
        hit(p.client, m1["pixel_url"])
        wait_for(lambda: len(p.counted), lambda n: n == 1, timeout_s=30)

        delivered, bounce = delivery_event("delivered", "m1"), delivery_event("bounce", "m1", 2)
        complaint, deferred = delivery_event("complaint", "m1", 3), delivery_event("deferred", "m2", 4)
        events = [delivered, deferred, bounce, complaint]
        stored_deliveries(p.notifications, events).result(30)
        stored_deliveries(p.notifications, events).result(30)  # the loader replays a batch after a crash
        # open + bounce to /acme, delivered + complaint to /reports; the replay is no delivery twice
        wait_for(p.deliveries, lambda states: states == ["delivered"] * 4, timeout_s=30)

        assert [n.type for n in p.counted] == ["open"] + ["delivered", "bounce", "complaint"] * 2
        made = p.counted[1]
        assert made.recipient == "m1@example.com"  # as the loader matched it, kept through the lookup
        assert made.recipient_tag in {t.hex() for t in keyring.recipient_tags("acme", "m1@example.com")}

        [opened, bounced] = rx.delivered("/acme")
        assert (opened.json["type"], opened.json["data"]["first"]) == ("open", True)
        assert bounced.json["id"] == bounce.delivery_id
        assert bounced.json["type"] == "bounce"
        assert bounced.json["data"] == expected_data(bounce)
        assert bounced.json["data"]["bounce_type"] == "hard"
        assert bounced.headers["pixelpipe-event-id"] == bounce.delivery_id
        assert verify(acme["secret"], bounced.headers["pixelpipe-signature"], bounced.body, now=time.time())
        assert not verify(
            reports["secret"], bounced.headers["pixelpipe-signature"], bounced.body, now=time.time()
        )
        assert [r.json["data"] for r in rx.delivered("/reports")] == [
            expected_data(delivered),
            expected_data(complaint),
        ]
        for r in rx.delivered("/reports"):
            assert verify(reports["secret"], r.headers["pixelpipe-signature"], r.body, now=time.time())
        assert rx.attempts("/globex") == []  # another account's webhook

        log, _ = wait_for(
            lambda: p.client.get(f"/v1/webhooks/{acme['id']}/deliveries", headers=ACME).json()["deliveries"],
            lambda rows: len(rows) == 2,
            timeout_s=30,
        )
        assert sorted(row["status"] for row in log) == ["delivered", "delivered"]


# -- the live feed -------------------------------------------------------------------------------------------


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[Running]:
    with pixelpipe(env, heartbeat_s=0.3) as p:
        yield p


@contextlib.asynccontextmanager
async def events_of(client: httpx.AsyncClient, url: str) -> AsyncIterator[asyncio.Queue[ServerSentEvent]]:
    """The named events (not comments) of one SSE connection, read in the background."""
    events: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
    connected = asyncio.Event()

    async def read() -> None:
        async with aconnect_sse(client, "GET", url, headers=ACME) as source:
            assert source.response.status_code == 200
            connected.set()
            async for sse in source.aiter_sse():
                if sse.event and sse.event != "message":
                    await events.put(sse)

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(connected.wait(), 5)
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_live_shows_a_delivered_and_include_delivery_false_leaves_it_out(running: Running) -> None:
    p = running
    async with httpx.AsyncClient(base_url=p.base, timeout=10) as client:
        r = await client.post(
            "/v1/messages",
            json={"campaign_id": "spring", "recipient": "m-live@example.com", "message_id": "m-live"},
            headers=ACME,
        )
        assert r.status_code == 201, r.text
        pixel = r.json()["pixel_url"]
        async with (
            events_of(client, "/v1/live") as all_,
            events_of(client, "/v1/live?include_delivery=false") as hits,
        ):
            delivered = delivery_event("delivered", "m-live")
            await asyncio.wait_for(asyncio.wrap_future(stored_deliveries(p.notifications, [delivered])), 30)
            await hit_async(client, pixel)
            first, then = await asyncio.wait_for(all_.get(), 30), await asyncio.wait_for(all_.get(), 30)
            only = await asyncio.wait_for(hits.get(), 30)
    assert first.event == "delivered"
    assert orjson.loads(first.data) == expected_data(delivered)
    assert then.event == "open"
    assert int(first.id.rpartition("-")[2]) < int(then.id.rpartition("-")[2])
    assert (only.event, orjson.loads(only.data)["id"]) == ("open", orjson.loads(then.data)["id"])


# -- erasure and do-not-track --------------------------------------------------------------------------------


def test_erasure_purges_a_queued_bounce_and_do_not_track_holds_the_next_one_back(
    env: dict[str, str], failing_receiver: tuple[list[bytes], str]
) -> None:
    bodies, url = failing_receiver
    settings = settings_mod.load({**env, "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true"})
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    outbox = settings.data_dir / "webhooks" / "outbox.sqlite3"
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        hook = {"url": url, "events": ["bounce", "complaint"]}
        assert client.post("/v1/webhooks", json=hook, headers=ACME).status_code == 201
        for name in ("ann", "bob", "cy"):
            register(client, name)  # recipient <name>@example.com
        time.sleep(1.2)  # the dispatcher's directory of webhooks reloads every second
        notifications = components.notifications
        assert notifications is not None
        stored_deliveries(
            notifications, [delivery_event("bounce", "ann"), delivery_event("bounce", "bob")]
        ).result(30)
        assert outbox_rows(outbox) == [
            ("ann", "pending", "ann@example.com"),
            ("bob", "pending", "bob@example.com"),
        ]
        wait_for(lambda: len(bodies), lambda n: n >= 2, timeout_s=10)  # both were tried, and failed

        r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
        assert r.status_code == 200, r.text
        assert r.json()["erased"]["webhook_deliveries"] == {"pending": 1, "finished": 0}
        assert outbox_rows(outbox) == [("bob", "pending", "bob@example.com")]

        assert client.put("/v1/recipients/bob@example.com/do-not-track", headers=ACME).status_code == 200
        later = [delivery_event("complaint", "bob", 5), delivery_event("complaint", "cy", 6)]
        stored_deliveries(notifications, later).result(30)
        assert outbox_rows(outbox) == [
            ("bob", "pending", "bob@example.com"),
            ("cy", "pending", "cy@example.com"),
        ]


# -- Kafka ---------------------------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_delivery_notices_reach_the_dispatcher_through_the_enriched_topic_in_order_with_opens(
    kafka_bootstrap: str,
    kafka_topics: Topics,
    kafka_group: str,
    receiver: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    rx, rx_base = receiver
    keyring = Keyring(((1, b"kafka-delivery-notices-key-0001"),))
    hook = Webhook("acme", "wh_kafka", f"{rx_base}/acme", ("open", "delivered", "bounce"), Secret("whsec_k"))
    producer = NoticeProducer(KafkaConfig(kafka_bootstrap, partitions=3), kafka_topics)
    hub = NoticeHub(sinks=[producer.send], keyring=keyring)
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
    delivered = [delivery_event("delivered", m) for m in messages]
    bounces = [delivery_event("bounce", m, 2) for m in messages]
    await dispatcher.start()
    await producer.start()
    await hub.start()
    await notify.start()
    await tail.start()
    try:
        await positions(tail)  # the tail starts at the end: where the end is must be known before we send
        hub.publish_deliveries(delivered)
        hub.publish([stored_hit(f"h-{m}", message=m) for m in messages])
        hub.publish_deliveries([*bounces, delivery_event("deferred", "m0", 3)])
        await asyncio.wait_for(hub.durable(), 30)  # on the broker: what the loader waits for to commit
        await eventually(lambda: len(rx.delivered()) == 12, 30, "every notice delivered")
        await eventually(lambda: tail.consumed == 12, 30, "the live tail")
    finally:
        await tail.stop()
        await notify.stop()
        await hub.stop()
        await dispatcher.stop()
        await producer.stop()

    bodies = [r.json for r in rx.delivered()]
    for i, m in enumerate(messages):
        of_message = [b for b in bodies if b["data"]["message_id"] == m]
        assert [b["type"] for b in of_message] == ["delivered", "open", "bounce"]
        assert [b["id"] for b in of_message] == [delivered[i].delivery_id, f"h-{m}", bounces[i].delivery_id]
        assert of_message[2]["data"] == expected_data(bounces[i])
    for r in rx.delivered():
        assert verify("whsec_k", r.headers["pixelpipe-signature"], r.body, now=time.time())
    assert live.held("acme") == 12
