"""Notices on Kafka: the processor publishes them to the ``enriched`` topic; delivery and live feeds read it.

Owns the aiokafka clients of the notice path. `NoticeProducer.send` is a `notices.hub.NoticeHub` sink:
it returns once the broker acknowledged every notice of the batch (idempotent producer, ``acks=all``), in
records of many notices (`schemas.notices.encode_notice_batch`), each notice on the partition its key
(account and message) picks, so that a message's notices stay in order on one partition. `NoticeConsumer`
reads them back: with a group (``pixelpipe-notify``, the webhook dispatcher) it commits a batch's offsets
only after its handler returned — for the dispatcher, once the deliveries are in its outbox on disk; without
a group (an API process's live feed) it tails every partition from the end and commits nothing.

Never decides what a notice says (`schemas.notices`, `notices.making`), never stops on a malformed record
(logged, counted, skipped: a notice is not worth a stuck partition), never commits past what its handler took.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import Counter

from bus.kafka_config import KafkaConfig
from bus.partitioner import KeyPartitions
from bus.topics import TopicSetup
from notices.retries import until_taken
from schemas.backoff import Backoff
from schemas.notices import MalformedNotice, Notice, decode_notice_batch, encode_notice_batch
from schemas.topics import Topics

log = logging.getLogger(__name__)

NOTIFY_GROUP = "pixelpipe-notify"
BATCH_NOTICES = 500  # notices per record: ~250 KB, well under the broker's 1 MB default


def notify_group(topic_prefix: str = "") -> str:
    """The webhook dispatchers' group: per pipeline, like the topics (``PIXELPIPE_TOPIC_PREFIX``)."""
    return f"{topic_prefix}.{NOTIFY_GROUP}" if topic_prefix else NOTIFY_GROUP


MALFORMED = Counter("pixelpipe_malformed_notices_total", "Records on the enriched topic that are not notices")


class NoticeProducer:
    """Publishes notices to ``Topics.enriched``; `send` is the hub's sink in Kafka mode."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        *,
        setup: TopicSetup | None = None,
        flush_timeout_s: float = 5.0,
    ) -> None:
        self.topics = topics
        self._setup = setup or TopicSetup(kafka, topics, [topics.enriched])
        self._flush_timeout_s = flush_timeout_s
        self._producer = kafka.renewing_producer("notices", linger_ms=5)
        self._partition_of = KeyPartitions()

    async def start(self) -> None:
        await self._setup.ready()
        await self._producer.start()

    async def send(self, notices: Sequence[Notice]) -> None:
        """Returns once the broker has every notice; raises (and the hub retries the batch) otherwise.

        One record per partition (and per `BATCH_NOTICES`), in stored order: each notice goes to the
        partition its key would pick (Kafka's murmur2 partitioner), so a message's notices stay in order on
        one partition as before, at a fraction of the per-record cost."""
        topic = self.topics.enriched
        partition_of = self._partition_of
        async with self._producer.use() as producer:
            partition_of.use(await producer.partitions_for(topic))
            by_partition: dict[int, list[Notice]] = {}
            for n in notices:
                by_partition.setdefault(partition_of(n.partition_key), []).append(n)
            futures = []
            for p, batch in by_partition.items():
                for i in range(0, len(batch), BATCH_NOTICES):
                    value = encode_notice_batch(batch[i : i + BATCH_NOTICES])
                    futures.append(await producer.send(topic, value, partition=p))
            await asyncio.gather(*futures)

    async def stop(self) -> None:
        await self._producer.stop(self._flush_timeout_s)


NoticeHandler = Callable[[Sequence[Notice]], Awaitable[None]]


class NoticeConsumer:
    """Reads notices from ``Topics.enriched`` and hands each batch to ``handler``, in partition order.

    ``group_id`` set: a member of that group, starting from the earliest uncommitted record, committing each
    batch after ``handler`` returned (at-least-once; the dispatcher's outbox drops deliveries it has seen).
    ``group_id=None``: every partition from the end, no commits (a live tail: a restart misses what was
    published while it was down, as the live feed's ``gap`` event says).
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        handler: NoticeHandler,
        *,
        group_id: str | None = NOTIFY_GROUP,
        setup: TopicSetup | None = None,
        max_records: int = 1000,
        retry_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.handler = handler
        self.group_id = group_id
        self._setup = setup or TopicSetup(kafka, topics, [topics.enriched])
        self._max_records = max_records
        self._retry_min, self._retry_max = retry_s
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.consumed = 0

    async def start(self) -> None:
        await self._setup.ready()
        consumer = self.kafka.consumer(
            "notify",
            group_id=self.group_id,
            batched=True,
            auto_offset_reset="earliest" if self.group_id else "latest",
        )
        consumer.subscribe([self.topics.enriched])
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"notice-consumer-{self.group_id or 'tail'}")
        self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        while not self._stopping:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=self._max_records)
            notices: list[Notice] = []
            offsets: dict[TopicPartition, int] = {}
            for tp in sorted(batches, key=lambda tp: tp.partition):
                for record in batches[tp]:
                    offsets[tp] = record.offset + 1
                    try:
                        read, skipped = decode_notice_batch(record.value or b"")
                    except MalformedNotice as exc:
                        read, skipped = [], [str(exc)]
                    notices.extend(read)
                    for reason in skipped:
                        MALFORMED.inc()
                        log.error("skipping %s:%d:%d: %s", tp.topic, tp.partition, record.offset, reason)
            if notices:
                await self._handle(notices)
                self.consumed += len(notices)
            if offsets and self.group_id is not None:
                # A partition revoked meanwhile is re-read by its new owner; committing it would fail.
                owned = self._consumer.assignment()
                mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
                if mine:
                    await self._consumer.commit(mine)

    async def _handle(self, notices: Sequence[Notice]) -> None:
        # The handler's store or disk is away: the same batch again, later; never skipped (`until_taken`).
        backoff = Backoff(self._retry_min, self._retry_max)
        await until_taken(lambda: self.handler(notices), what="notice handler", backoff=backoff, log=log)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the notice consumer stopped", exc_info=task.exception())
