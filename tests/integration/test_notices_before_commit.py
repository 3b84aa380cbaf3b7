"""Raw offsets are committed only once the notices of the stored hits are durable: insert → notices acked →
commit. A real broker, real chDB, the real `NoticeHub` and `NoticeProducer`; the enriched topic is made
unavailable by a `GatedSink` in front of the producer that fails (or holds) every send for as long as the test
says, the way `SwitchedStore` does for ClickHouse in test_processor_on_kafka.py. Also: the loop's backpressure
(on the in-memory bus, where flushes are deterministic), and a wait longer than ``max.poll.interval``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.kafka_config import KafkaConfig
from bus.memory import MemoryBus
from bus.port import BusRecord
from ingest.kafka_publisher import KafkaPublisher
from notices.hub import NoticeHub
from notices.kafka import NoticeProducer
from notices.making import MessageLookup
from processors.geo import GeoLookup
from processors.kafka_source import KafkaSource
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit
from schemas.notices import Notice, decode_notice_batch
from schemas.store import Store
from schemas.topics import Topics
from tests.integration.helpers import human_open
from tests.notice_sinks import GatedSink, running

DATA = Path(__file__).parent.parent / "data"
HITS = 60


def _hit(i: int) -> RawHit:
    return human_open(i, messages=7)


def _processor() -> HitProcessor:
    return HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges())


async def _eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _stored(store: Store) -> int:
    return int(store.query(f"SELECT uniqExact(hit_id) FROM {store.database}.events")[0][0])


async def _committed(bootstrap: str, topics: Topics, group: str, partitions: int) -> list[int | None]:
    """The group's committed next offset of each raw partition, asked of the broker by an outsider."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topics.raw_hits, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


async def _end_offsets(bootstrap: str, topics: Topics, partitions: int) -> list[int]:
    """Each raw partition's end offset: committed up to there means every record read and committed (the
    edge sends many hits per record, so offsets count records, not hits)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.raw_hits, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return [int(ends[tp]) for tp in tps]
    finally:
        await consumer.stop()


PARTITIONS = 3


class _Kafka:
    """The test's broker, topics and consumer group: the group's sources, and its committed offsets on the
    raw topic as an outsider sees them."""

    def __init__(self, bootstrap: str, topics: Topics, group: str, partitions: int) -> None:
        self.bootstrap, self.topics, self.group, self.partitions = bootstrap, topics, group, partitions

    def source(self, **options: int) -> KafkaSource:
        """A member of the group, reading the raw topic's partitions."""
        return KafkaSource(
            KafkaConfig(self.bootstrap, partitions=self.partitions), self.topics, self.group, **options
        )

    async def committed(self) -> list[int | None]:
        return await _committed(self.bootstrap, self.topics, self.group, self.partitions)

    async def all_committed(self) -> bool:
        """Every record of every partition read and committed (and there is at least one)."""
        ends = await _end_offsets(self.bootstrap, self.topics, self.partitions)
        return sum(ends) > 0 and await self.committed() == ends


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str) -> _Kafka:
    return _Kafka(kafka_bootstrap, kafka_topics, kafka_group, PARTITIONS)


async def _enriched(bootstrap: str, topics: Topics) -> list[Notice]:
    """Everything on the enriched topic, read to the end offset of every partition (its producers have
    stopped: the end is fixed, so nothing extra can come after)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    notices: list[Notice] = []
    try:
        tps = [TopicPartition(topics.enriched, p) for p in range(PARTITIONS)]  # the producers' partitions
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while [await consumer.position(tp) for tp in tps] != [ends[tp] for tp in tps]:
            assert time.monotonic() < deadline, "the enriched topic was not read to its end"
            for batch in (await consumer.getmany(*tps, timeout_ms=200)).values():
                for r in batch:
                    read, skipped = decode_notice_batch(r.value or b"")
                    assert not skipped
                    notices.extend(read)
    finally:
        await consumer.stop()
    return notices


def _runner(
    source: KafkaSource | MemoryBus,
    store: Store,
    hub: NoticeHub,
    flush_interval_s: float = 0.1,
    **bounds: Any,
) -> HitRunner:
    """The processor under test: its stored hits go to ``hub``; it commits past what the hub made durable."""
    return HitRunner(
        source=source,
        store=store,
        processor=_processor(),
        flush_interval_s=flush_interval_s,
        on_stored=hub.publish,
        notices_durable=hub.durable,
        **bounds,
    )


@asynccontextmanager
async def _running(
    runner: HitRunner, hub: NoticeHub, hub_deadline_s: float | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """The hub started and the runner's loop in a task (yielded); on the way out the runner stops (within
    15 s), then the hub (within ``hub_deadline_s`` where given)."""
    async with running(hub, hub_deadline_s):
        task = asyncio.create_task(runner.run())
        try:
            yield task
        finally:
            runner.stop()
            await asyncio.wait_for(task, 15)


@asynccontextmanager
async def _kafka_ends(
    tmp_path: Path, bootstrap: str, topics: Topics
) -> AsyncIterator[tuple[NoticeProducer, KafkaPublisher]]:
    """The enriched topic's notice producer and the edge's raw-hit publisher, started; stopped on the way out
    (publisher first), so that the enriched topic's end is fixed once the block is left."""
    kafka = KafkaConfig(bootstrap, partitions=PARTITIONS)
    producer = NoticeProducer(kafka, topics)
    publisher = KafkaPublisher(kafka, topics, spool_dir=tmp_path / "spool")
    await producer.start()
    await publisher.start()
    try:
        yield producer, publisher
    finally:
        await publisher.stop()
        await producer.stop()


async def _publish_and_store(publisher: KafkaPublisher, store: Store) -> list[RawHit]:
    """HITS hits published on the raw topic, and waited for until every one is stored."""
    hits = [_hit(i) for i in range(HITS)]
    for h in hits:
        publisher.publish(h)
    await _eventually(lambda: asyncio.to_thread(lambda: _stored(store) == HITS), "every hit stored")
    return hits


def _notified_once_each(notices: Sequence[Notice], hits: Sequence[RawHit]) -> None:
    assert len(notices) == HITS
    assert sorted(n.id for n in notices) == sorted(h.hit_id for h in hits)


@pytest.mark.kafka
async def test_raw_offsets_wait_for_the_notices_to_be_acked_on_the_enriched_topic(
    tmp_path: Path, store: Store, kafka: _Kafka
) -> None:
    async with _kafka_ends(tmp_path, kafka.bootstrap, kafka.topics) as (producer, publisher):
        sink = GatedSink(producer.send)
        hub = NoticeHub(lookup=MessageLookup(store), sinks=[sink], retry_s=(0.05, 0.2))
        source = kafka.source()
        # this test is about the commit, not backpressure: store everything meanwhile
        runner = _runner(source, store, hub, max_unsettled=1000)
        sink.failing = True
        async with _running(runner, hub):
            hits = await _publish_and_store(publisher, store)

            # the hub retried with the topic away: a commit would have come by now
            async def retried() -> bool:
                return sink.failures >= 3

            await _eventually(retried, "three refused sends")
            assert _stored(store) == HITS
            assert await kafka.committed() == [None, None, None]  # stored, but not committed
            sink.failing = False
            await _eventually(kafka.all_committed, "the offsets committed once the notices were acked")
            assert hub.unsettled == 0
    notices = await _enriched(kafka.bootstrap, kafka.topics)
    _notified_once_each(notices, hits)  # each exactly once: nothing was replayed
    assert {n.type for n in notices} == {"open"}
    assert sum(n.first for n in notices) == 7  # the first human open of each of the 7 messages


@pytest.mark.kafka
async def test_a_processor_that_dies_before_the_ack_leaves_the_hits_to_be_read_and_notified_again(
    tmp_path: Path, store: Store, kafka: _Kafka
) -> None:
    async with _kafka_ends(tmp_path, kafka.bootstrap, kafka.topics) as (producer, publisher):
        # The first processor stores every hit, but the enriched topic never acknowledges: it stops
        # uncommitted.
        sink = GatedSink(producer.send)
        sink.gate.clear()
        hub = NoticeHub(lookup=MessageLookup(store), sinks=[sink])
        source = kafka.source()
        runner = _runner(source, store, hub, max_unsettled=1000, settle_deadline_s=0.5)
        # on the way out the runner waits 0.5 s for the notices, then stops without committing; the held sends
        # never reached the producer
        async with _running(runner, hub, hub_deadline_s=0.2):
            hits = await _publish_and_store(publisher, store)

            # the stored hits' notices wait at the gate: a commit would be made
            async def at_the_gate() -> bool:
                return sink.entered >= 1

            await _eventually(at_the_gate, "the notices at the gate")
            assert await kafka.committed() == [None, None, None]
        assert await kafka.committed() == [None, None, None]

        # The next processor of the group reads them again, stores them again (counted once) and notifies.
        hub = NoticeHub(lookup=MessageLookup(store), sinks=[producer.send])
        source = kafka.source()
        async with _running(_runner(source, store, hub), hub):
            await _eventually(kafka.all_committed, "the replayed hits committed")
    assert _stored(store) == HITS
    notices = await _enriched(kafka.bootstrap, kafka.topics)
    _notified_once_each(notices, hits)  # the first processor published none of them


class RecordingBus(MemoryBus):
    """The in-memory bus, remembering what the runner commits."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.commits: list[dict[int, int]] = []
        self.fetched = 0

    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]:
        records = await super().fetch(max_records, timeout_s)
        self.fetched += len(records)
        return records

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        self.commits.append(dict(next_offsets))


async def test_the_runner_stops_fetching_while_too_many_flushes_wait_for_their_notices(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="processors.runner")

    def waits() -> int:
        """How often the runner has said it waits for notices before fetching more."""
        return sum(r.getMessage().startswith("backpressure: ") for r in caplog.records)

    bus = RecordingBus()
    got: list[str] = []

    async def collect(notices: Sequence[Notice]) -> None:
        got.extend(n.id for n in notices)

    sink = GatedSink(collect)
    sink.gate.clear()
    hub = NoticeHub(sinks=[sink])
    runner = _runner(bus, store, hub, flush_interval_s=0.05, max_unsettled=1, settle_log_s=0.05)
    hits = [_hit(i) for i in range(30)]
    async with _running(runner, hub):

        async def stored(n: int) -> bool:
            return await asyncio.to_thread(_stored, store) == n

        for h in hits[:10]:
            bus.publish(h)
        await _eventually(lambda: stored(10), "the first flush", 10)
        for h in hits[10:20]:
            bus.publish(h)
        await _eventually(lambda: stored(20), "the second flush", 10)  # two flushes wait: the bound
        said = waits()
        for h in hits[20:]:
            bus.publish(h)

        async def still_waiting() -> bool:  # said again, after the third wave: it is still held, unfetched
            return waits() > said

        await _eventually(still_waiting, "the runner to say it waits")
        assert bus.fetched == 20  # the third wave stays on the bus
        assert await stored(20)
        assert bus.commits == []
        sink.gate.set()
        await _eventually(lambda: stored(30), "the third flush", 10)

        async def committed_all() -> bool:
            return bool(bus.commits) and bus.commits[-1] == {0: 30}

        await _eventually(committed_all, "the commit of every hit", 10)
    assert got == [h.hit_id for h in hits]
    assert [c[0] for c in bus.commits] == sorted(c[0] for c in bus.commits)  # never backwards


@pytest.mark.kafka
async def test_waiting_past_max_poll_interval_leaves_the_group_and_loses_nothing(
    tmp_path: Path, store: Store, kafka: _Kafka
) -> None:
    async with _kafka_ends(tmp_path, kafka.bootstrap, kafka.topics) as (producer, publisher):
        sink = GatedSink(producer.send)
        hub = NoticeHub(lookup=MessageLookup(store), sinks=[sink], retry_s=(0.05, 0.2))
        source = kafka.source(session_timeout_ms=6000, heartbeat_interval_ms=500, max_poll_interval_ms=2000)
        revoked: list[set[int]] = []
        # max_unsettled=0: every flush waits for its notices before the next fetch
        runner = _runner(source, store, hub, max_unsettled=0, settle_deadline_s=0.5, settle_log_s=1.0)

        async def on_revoked(parts: set[int]) -> None:
            revoked.append(parts)
            await runner.on_revoked(parts)

        source.on_revoked = on_revoked
        sink.failing = True
        async with _running(runner, hub) as task:
            hits = [_hit(i) for i in range(HITS)]
            for h in hits:
                publisher.publish(h)
            await _eventually(lambda: asyncio.to_thread(lambda: _stored(store) > 0), "a first flush stored")
            await asyncio.sleep(5.0)  # more than max.poll.interval without a fetch
            assert await kafka.committed() == [None, None, None]
            sink.failing = False
            await _eventually(kafka.all_committed, "every offset committed", 60)
            assert not task.done()
    # The member left the group while it waited (aiokafka's heartbeat task does that after max.poll.interval);
    # rejoining revoked every partition first (the empty set is the first join's), with nothing committed.
    assert revoked == [set(), {0, 1, 2}]
    assert _stored(store) == HITS
    notices = await _enriched(kafka.bootstrap, kafka.topics)
    # Read again from offset 0 after the rejoin: every notice at least once (receivers deduplicate on the id).
    assert sorted({n.id for n in notices}) == sorted(h.hit_id for h in hits)
    assert len(notices) >= HITS
