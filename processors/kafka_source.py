"""The processors' side of the Kafka bus: `KafkaSource` (a consumer group member with manual commits) and
`DeadLetterPublisher` (malformed records, and the hits of rows the store refused for good, with why and
where they came from).

`KafkaSource.fetch` reads, the caller stores, then `KafkaSource.commit` commits exactly the offsets it is
given. `DeadLetterPublisher.send` waits for the broker's acknowledgement so the caller can commit the
dead letter's offset afterwards. Never commits an offset the caller did not hand it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from bus.kafka_config import KafkaConfig
from bus.port import BusRecord
from bus.topics import TopicSetup
from processors import metrics
from schemas.topics import Topics

log = logging.getLogger(__name__)


PartitionsCallback = Callable[[set[int]], Awaitable[None]]


class _RebalanceHooks(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """Forwards aiokafka's rebalance callbacks to the source's optional hooks (partition numbers only)."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if self._source.on_revoked is not None:
            await self._source.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        if self._source.on_assigned is not None:
            await self._source.on_assigned({tp.partition for tp in assigned})


class KafkaSource:
    """The processors' `HitSource` on Kafka: one consumer of ``group_id`` on the raw-hits topic (or on
    ``topic``: the delivery loader reads the deliveries topic through it, as client ``role``).

    Manual commits only: `commit` commits exactly the next offsets it is given, and only for partitions this
    consumer still owns (a revoked partition's records are re-read by its new owner: at-least-once, and the
    loader's inserts are idempotent). ``on_revoked`` runs inside a rebalance before the partitions go, which
    is the runner's last chance to store and commit what it has read from them; ``on_assigned`` after.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        group_id: str,
        *,
        setup: TopicSetup | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        max_partition_fetch_bytes: int = 1 << 20,
        topic: str | None = None,
        role: str = "processor",
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.group_id = group_id
        self.topic = topic or topics.raw_hits
        self.role = role
        self.on_revoked: PartitionsCallback | None = None
        self.on_assigned: PartitionsCallback | None = None
        self._setup = setup or TopicSetup(kafka, topics, [self.topic, topics.dead_letter, topics.enriched])
        self._options: dict[str, Any] = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "max_poll_interval_ms": max_poll_interval_ms,
            "max_partition_fetch_bytes": max_partition_fetch_bytes,
        }
        self._consumer: Any = None

    async def start(self) -> None:
        await self._setup.ready()
        consumer = self.kafka.consumer(
            self.role,
            group_id=self.group_id,
            batched=True,
            auto_offset_reset="earliest",
            **self._options,
        )
        consumer.subscribe([self.topic], listener=_RebalanceHooks(self))
        await consumer.start()
        self._consumer = consumer

    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        records: list[BusRecord] = []
        for tp in sorted(batches, key=lambda tp: tp.partition):
            records.extend(
                # A tombstone (no value) is not a hit; empty bytes send it down the dead-letter path.
                BusRecord(value=r.value or b"", partition=tp.partition, offset=r.offset, topic=tp.topic)
                for r in batches[tp]
            )
        return records

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        topic = self.topic
        owned = {tp.partition for tp in self._consumer.assignment()}
        offsets = {TopicPartition(topic, p): offset for p, offset in next_offsets.items() if p in owned}
        if len(offsets) < len(next_offsets):
            log.info(
                "not committing revoked partitions %s of %s",
                sorted(set(next_offsets) - owned),
                topic,
            )
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # The group moved on (a rebalance, or this member was evicted after max.poll.interval): these
            # partitions' new owner reads from the last commit and replays what this one stored — inserts
            # are deduplicated, counts use uniqExact(hit_id). Not worth stopping the processor for.
            metrics.COMMIT_FAILURES.inc()
            log.warning("commit of %s %s failed (%s); the next owner replays them", topic, offsets, exc)

    async def rewind(self, partition: int, since_ms: int, offset: int) -> int:
        """Move the partition's position back from ``offset`` (the next record the caller was to read) to
        the first record published at ``since_ms`` or later (by the record's timestamp: the edge's clock when
        it published, never before any of its hits' ``received_at``), or to the log's start. Returns the new
        position, ``offset`` when there is nothing before it to go back to or the partition is no longer
        ours. The consumer's fetch position only: nothing is committed."""
        tp = TopicPartition(self.topic, partition)
        found = (await self._consumer.offsets_for_times({tp: max(0, since_ms)})).get(tp)
        start = offset if found is None else min(int(found.offset), offset)
        if start < offset:
            try:
                self._consumer.seek(tp, start)
            except IllegalStateError:  # revoked meanwhile: its next owner starts from the commit
                return offset
        return start

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()} if self._consumer else set()

    async def committed(self, partition: int) -> int | None:
        """The group's committed next offset for a partition (None if nothing is committed)."""
        result = await self._consumer.committed(TopicPartition(self.topic, partition))
        return int(result) if result is not None else None

    async def end_offsets(self) -> dict[int, int]:
        """The end offset (the next record's) of each partition this consumer owns: what a caught-up member
        has committed."""
        tps = [TopicPartition(self.topic, p) for p in sorted(self.assignment())]
        ends = await self._consumer.end_offsets(tps) if tps else {}
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class DeadLetterPublisher:
    """Sends records that are not raw hits, and the hits of rows the store refused for good (one record per
    source record), to the dead-letter topic, with why and where they came from.

    `send` returns once the broker acknowledged (acks=all), so the caller may commit the offset right after.
    Headers: ``pixelpipe-reason``, ``pixelpipe-source-topic``, ``pixelpipe-source-partition``,
    ``pixelpipe-source-offset`` (UTF-8 strings). The value is the record's bytes, untouched.
    """

    def __init__(self, kafka: KafkaConfig, topics: Topics) -> None:
        self.topics = topics
        self._producer = kafka.renewing_producer("dead-letter")

    async def start(self) -> None:
        await self._producer.start()

    async def send(self, record: BusRecord, reason: str) -> None:
        headers = [
            ("pixelpipe-reason", reason.encode()),
            ("pixelpipe-source-topic", record.topic.encode()),
            ("pixelpipe-source-partition", str(record.partition).encode()),
            ("pixelpipe-source-offset", str(record.offset).encode()),
        ]
        # Keyed by the source partition: dead letters of one partition stay in their original order.
        key = f"{record.topic}:{record.partition}".encode()
        async with self._producer.use() as producer:
            await producer.send_and_wait(self.topics.dead_letter, record.value, key=key, headers=headers)
        metrics.DEAD_LETTERED.inc()
        log.warning("dead-lettered %s: %s", record.source, reason)

    async def stop(self) -> None:
        await self._producer.stop(10.0)
