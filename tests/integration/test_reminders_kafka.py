"""Reminders on Kafka with separate roles (issue 20), against a real broker, real chDB, a real webhook
receiver and a real `pixelpipe edge` process: the core (processor and API) decides reminders while it holds
the lease. A pass that dies before its notice leaves (m-a decided), and one that dies after publishing its
notices to the ``enriched`` topic before marking them sent (m-a and m-b); then the core restarts and its
scheduler emits them again with m-c (only Apple's prefetch opened it: ``unknown``). The webhook receiver gets
each exactly once (the dispatcher's outbox drops the second publication), each process's live feed shows each
once, and a further restart sends nothing. And the lease: one holder at a time, taken over when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bus.kafka_config import KafkaConfig
from notices.kafka import NoticeProducer
from notices.reminder_lease import ReminderLease, reminder_group
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.topics import Topics
from tests.integration.helpers import hit, wait_for
from tests.integration.test_privacy_kafka import kafka_env
from tests.integration.test_webhooks_http import APPLE_MPP, Receiver, add_webhook, eventually
from tests.reminder_checks import (
    ACME,
    MarkingFails,
    Shifted,
    crash_pass,
    live_reminders,
    moved_clock,
    refuse,
    register,
    states,
)
from tests.roles import Role, role_env
from tests.serving import serving

pytestmark = pytest.mark.kafka


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()
    with serving(rx.app()) as base:
        yield rx, base


@contextlib.contextmanager
def core(env: dict[str, str], shift_s: float = 0.0) -> Iterator[tuple[httpx.Client, Components, str]]:
    components = build_components(settings_mod.load(env), frozenset({"process", "api"}))
    moved_clock(components).shift_s = shift_s
    asgi, _ = build_app(components)
    with serving(asgi) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, components, base


def delivered(rx: Receiver) -> list[tuple[str, str]]:
    return sorted(
        (str(r.json["type"]), str(r.json["data"]["message_id"]))
        for r in rx.delivered()
        if r.json["type"] in {"not_opened", "unknown"}
    )


def test_reminders_on_kafka_survive_a_dying_scheduler_and_restarts_exactly_once(
    tmp_path: Path, env: dict[str, str], kafka_bootstrap: str, receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics.with_prefix(prefix)
    core_env = kafka_env(
        env,
        kafka_bootstrap,
        prefix,
        PIXELPIPE_WEBHOOK_ALLOW_PRIVATE="true",
        PIXELPIPE_REMINDER_POLL_SECONDS="1",
        PIXELPIPE_REMINDER_GRACE_SECONDS="0",
    )
    edge = Role(
        ["edge"],
        role_env(
            PIXELPIPE_KAFKA_BOOTSTRAP=kafka_bootstrap,
            PIXELPIPE_TOPIC_PREFIX=prefix,
            PIXELPIPE_DATA_DIR=str(tmp_path / "edge"),
        ),
        tmp_path / "edge.log",
    )
    later = Shifted()
    later.shift_s = 301.0
    try:
        edge.start()
        with core(core_env) as (client, components, base), httpx.Client(base_url=edge.base) as pixels:
            add_webhook(client, f"{rx_base}/acme", ["not_opened", "unknown"])
            now = time.time()
            sent = {}
            for message, ago_s in (("m-a", 15), ("m-b", 10), ("m-c", 5)):  # due in this order
                sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - ago_s))
                r = register(client, message, sent_at=sent_at)
                assert r.status_code == 201, r.text
                sent[message] = r.json()
            hit(pixels, sent["m-c"]["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1])
            wait_for(
                lambda: client.get("/v1/messages/m-c", headers=ACME).json()["machine_opens"],
                lambda n: n == 1,
                timeout_s=60,
            )
            store = components.store
            assert store is not None

            # A pass that dies before its notice leaves: m-a is decided, nothing is published.
            asyncio.run(crash_pass(store, [refuse], later, batch=1))
            assert states(store) == {"m-a": "decided", "m-b": "pending", "m-c": "pending"}

            # One that dies after publishing m-a and m-b to the enriched topic, before marking them sent.
            async def published_then_dies() -> None:
                producer = NoticeProducer(KafkaConfig(kafka_bootstrap), topics)
                await producer.start()
                try:
                    await crash_pass(MarkingFails(store), [producer.send], later, batch=2)
                finally:
                    await producer.stop()

            asyncio.run(published_then_dies())
            assert states(store) == {"m-a": "decided", "m-b": "decided", "m-c": "pending"}
            wait_for(lambda: delivered(rx), lambda d: len(d) == 2, timeout_s=60)
            live = asyncio.run(live_reminders(base))
            assert sorted(body["message_id"] for _, body in live) == ["m-a", "m-b"]

        # The core again, its clock past every due time: m-a and m-b once more on the topic, m-c decided.
        with core(core_env, shift_s=301.0) as (client, components, base):
            store = components.store
            assert store is not None
            wait_for(
                lambda: states(store),
                lambda s: s == {"m-a": "sent", "m-b": "sent", "m-c": "sent"},
                timeout_s=90,
            )
            wait_for(lambda: delivered(rx), lambda d: len(d) >= 3, timeout_s=60)
            time.sleep(3.0)  # more passes, the dispatcher's retries: nothing more
            live = asyncio.run(live_reminders(base))
            assert sorted((event, body["message_id"]) for event, body in live) == [
                ("not_opened", "m-a"),
                ("not_opened", "m-b"),
                ("unknown", "m-c"),
            ]
            m_c = next(body for event, body in live if event == "unknown")
            assert m_c["machine_opens"] == 1
            assert m_c["recipient"] == "m-c@example.com"
        assert delivered(rx) == [("not_opened", "m-a"), ("not_opened", "m-b"), ("unknown", "m-c")]

        with core(core_env, shift_s=400.0) as (_, components, _base):
            time.sleep(4.0)  # the lease, then passes: nothing is due any more
        assert delivered(rx) == [("not_opened", "m-a"), ("not_opened", "m-b"), ("unknown", "m-c")]
    finally:
        edge.stop()


async def test_one_process_at_a_time_holds_the_reminder_lease(kafka_bootstrap: str) -> None:
    """Two deciders in the lease's group: exactly one holds it; when it stops, the other takes it over."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics.with_prefix(prefix)
    kafka = KafkaConfig(kafka_bootstrap)
    group = reminder_group(prefix)
    first, second = (ReminderLease(kafka, topics, group_id=group) for _ in range(2))
    await first.start()
    await second.start()
    try:
        await eventually(lambda: first.held() != second.held(), 60, "one holder")
        holder, other = (first, second) if first.held() else (second, first)
        for _ in range(20):  # it stays with one of them
            assert holder.held()
            assert not other.held()
            await asyncio.sleep(0.1)
        await holder.stop()
        await eventually(other.held, 60, "the lease taken over")
    finally:
        await first.stop()
        await second.stop()
