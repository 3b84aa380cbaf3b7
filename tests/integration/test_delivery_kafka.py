"""Delivery events on a real Kafka broker, with the processor a real process SIGKILLed while they stream:
every event published through `KafkaDeliveryPublisher` is stored exactly once (rows by
``uniqExact(delivery_id)``, and the rollups' sets of events and messages), matched to its send."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bus.kafka_config import KafkaConfig
from deliveries.bus import KafkaDeliveryPublisher
from deliveries.port import BusUnavailable
from deliveries.spool import DeliverySpool
from schemas.delivery_events import DeliveryEvent, decode_deliveries
from schemas.topics import Topics
from tests.deliveries_data import delivery
from tests.integration.helpers import group_progress, wait_for
from tests.roles import Role, role_env

pytestmark = pytest.mark.kafka
ACME = {"Authorization": "Bearer acme-key-123"}
MESSAGES = 500
BATCH = 40  # events per publish, as a provider's webhook request brings them


def events_for(message_ids: list[str]) -> list[DeliveryEvent]:
    """Every message delivered and deferred once, the first 100 bounced, the first 20 complained of."""
    events = []
    for i, m in enumerate(message_ids):
        events += [delivery(f"{m}-deferred", message_id=m, event="deferred")]
        events += [delivery(f"{m}-delivered", message_id=m)]
        if i < 100:
            events += [delivery(f"{m}-bounce", message_id=m, event="bounce", bounce_type="hard")]
        if i < 20:
            events += [delivery(f"{m}-complaint", message_id=m, event="complaint")]
    return events


class Stream(threading.Thread):
    """Publishes the events through the edge's Kafka publisher, ``BATCH`` at a time, 50 ms apart."""

    def __init__(self, bootstrap: str, topics: Topics, events: list[DeliveryEvent]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.events = bootstrap, topics, events
        self.published = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # handed to the test
            self.error = exc

    async def _publish(self) -> None:
        publisher = KafkaDeliveryPublisher(KafkaConfig(self.bootstrap), self.topics)
        await publisher.start()
        try:
            for start in range(0, len(self.events), BATCH):
                await publisher.publish(self.events[start : start + BATCH])
                self.published = start + len(self.events[start : start + BATCH])
                await asyncio.sleep(0.05)
        finally:
            await publisher.stop()


def committed_and_backlog(bootstrap: str, topic: str, group: str) -> tuple[int, int]:
    """Records of ``topic`` the group committed, and those it has not (yet)."""
    progress = asyncio.run(group_progress(bootstrap, topic, group))
    return sum(done for done, _ in progress.values()), sum(end - done for done, end in progress.values())


COUNTS = """
import json, sys
from schemas.store import Store, parse_store_url
s = Store.connect(parse_store_url(sys.argv[1]))
db = s.database
[(unique, final, matched)] = s.query(
    f"SELECT uniqExact(delivery_id), (SELECT count() FROM {db}.deliveries FINAL),"
    f" uniqExactIf(delivery_id, matched_by = 'message_id') FROM {db}.deliveries")
messages = dict(s.query(f"SELECT who, length(groupUniqArrayArray(messages)) FROM {db}.rollups "
    "WHERE rollup = 'messages' AND kind = 'delivery' GROUP BY who"))
hits = dict(s.query(f"SELECT who, length(groupUniqArrayArray(hits)) FROM {db}.rollups "
    "WHERE rollup = 'hour' AND kind = 'delivery' GROUP BY who"))
print(json.dumps({"unique": unique, "final": final, "matched": matched, "messages": messages, "hits": hits}))
"""


def test_delivery_events_streamed_across_a_killed_processor_are_stored_exactly_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics.with_prefix(prefix)
    store_url = f"chdb://{tmp_path / 'clickhouse'}"
    group = f"{prefix}-processors"
    core = Role(
        ["serve", "--roles", "process,api"],
        role_env(
            PIXELPIPE_KAFKA_BOOTSTRAP=kafka_bootstrap,
            PIXELPIPE_TOPIC_PREFIX=prefix,
            PIXELPIPE_CONSUMER_GROUP=group,
            PIXELPIPE_DATA_DIR=str(tmp_path / "core"),
            PIXELPIPE_CLICKHOUSE_URL=store_url,
        ),
        tmp_path / "core.log",
    )
    core.env["PIXELPIPE_PUBLIC_URL"] = core.base  # no edge here: the links are not followed
    stream: Stream | None = None
    try:
        core.start()
        with httpx.Client(base_url=core.base, timeout=30, headers=ACME) as api:
            body = {
                "messages": [
                    {"campaign_id": "spring", "recipient": f"r{i}@example.com"} for i in range(MESSAGES)
                ]
            }
            r = api.post("/v1/messages/batch", json=body)
            assert r.status_code == 201, r.text
            message_ids = [m["message_id"] for m in r.json()["messages"]]
        events = events_for(message_ids)
        stream = Stream(kafka_bootstrap, topics, events)
        stream.start()
        # Killed once it has stored and committed some, while the rest streams in.
        wait_for(
            lambda: committed_and_backlog(kafka_bootstrap, topics.deliveries, f"{group}-deliveries")[0],
            lambda committed: committed > 0,
            60,
        )
        core.kill()
        assert stream.is_alive(), "the stream ended before the processor was killed: make it longer"
        time.sleep(1.0)  # events keep arriving while the processor is dead
        core.start()
        stream.join(timeout=120)
        assert stream.error is None, stream.error
        assert stream.published == len(events)
        wait_for(
            lambda: committed_and_backlog(kafka_bootstrap, topics.deliveries, f"{group}-deliveries")[1],
            lambda backlog: backlog == 0,
            120,
        )
        code, _ = core.terminate(timeout_s=30)
        assert code == 0
    finally:
        if stream is not None and stream.is_alive():
            stream.join(timeout=30)
        core.stop()
    out = subprocess.run(
        [sys.executable, "-c", COUNTS, store_url], capture_output=True, text=True, timeout=120, check=True
    )
    counts = json.loads(out.stdout)
    assert counts["unique"] == counts["final"] == counts["matched"] == len(events) == 1120
    assert counts["messages"] == {"delivered": 500, "deferred": 500, "bounce": 100, "complaint": 20}
    assert counts["hits"] == {"delivered": 500, "deferred": 500, "bounce": 100, "complaint": 20}


async def test_with_the_broker_away_a_publish_is_refused_within_its_timeout_and_takes_nothing() -> None:
    """No broker at the address: `BusUnavailable` (the ingest's 503) after at most the timeout; the edge
    stays ready (its pixels spool; each delivery request is answered on its own)."""
    from tests.kafka_broker import free_ports

    [port] = free_ports(1)  # nothing listens there
    publisher = KafkaDeliveryPublisher(
        KafkaConfig(f"127.0.0.1:{port}"), Topics.with_prefix("away"), timeout_s=1.0
    )
    await publisher.start()
    try:
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            await publisher.publish([delivery("away-1", message_id="m1")])
        assert time.monotonic() - started < 3.0
        assert (publisher.ready(), publisher.reachable) == (True, False)
    finally:
        await publisher.stop()
    with pytest.raises(BusUnavailable):  # stopped: refused at once
        await publisher.publish([delivery("away-2", message_id="m1")])


async def test_with_the_broker_away_events_are_spooled_and_replayed_once_it_answers(
    tmp_path: Path, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    """A spool: the request is taken (fsynced) though no broker answers, and the next start, with the broker
    there, replays it to the topic: every event once, the spool empty."""
    from tests.kafka_broker import free_ports

    [port] = free_ports(1)
    events = [delivery(f"sp-{i}", message_id=f"m{i % 7}") for i in range(1200)]
    away = KafkaDeliveryPublisher(
        KafkaConfig(f"127.0.0.1:{port}"), kafka_topics, spool=DeliverySpool(tmp_path / "spool"), timeout_s=1.0
    )
    await away.start()
    try:
        await away.publish(events[:1000])
        await away.publish(events[1000:])  # the spool holds some: straight behind them
        assert away.spool is not None
        assert away.spool.depth == 3  # records of up to 500 events
    finally:
        await away.stop()
    back = KafkaDeliveryPublisher(
        KafkaConfig(kafka_bootstrap), kafka_topics, spool=DeliverySpool(tmp_path / "spool"), timeout_s=10.0
    )
    await back.start()
    try:
        deadline = time.monotonic() + 60
        while back.spool is not None and back.spool.depth:
            assert time.monotonic() < deadline, "the spool was not replayed"
            await asyncio.sleep(0.05)
        assert back.reachable
    finally:
        await back.stop()
    consumer = KafkaConfig(kafka_bootstrap).consumer("check", group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.subscribe([kafka_topics.deliveries])
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(events) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += [e.delivery_id for r in records for e in decode_deliveries(r.value)]
    finally:
        await consumer.stop()
    assert sorted(seen) == sorted(e.delivery_id for e in events)
