"""The delivery events' bus adapters: `MemoryDeliveryBus` (one process: a bounded queue that is the ingest's
`DeliveryPublisher` and the loader's source at once) and `KafkaDeliveryPublisher` (the edge's producer on the
``deliveries`` topic). On Kafka the loader reads through `processors.kafka_source.KafkaSource` on that topic
in its own group (``{consumer_group}-deliveries``); the wiring builds it (this stage does not import
`processors/`).

Both publishers are durable before `publish` returns, or raise `BusUnavailable` having acknowledged nothing:
the ingest then answers 503 and the provider retries (the events' ``delivery_id`` makes what a retry repeats
count once). Neither spools: while the broker is away the ingest answers 503 and the mail services keep the
events (they retry for hours to days). One bus record carries the events of one partition, in the order the
request gave them (`schemas.delivery_events.encode_deliveries`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiokafka.errors import KafkaError

from bus.kafka_config import KafkaConfig
from bus.memory import take
from bus.partitioner import KeyPartitions
from bus.port import BusRecord
from bus.topics import TopicSetup
from deliveries import metrics
from deliveries.port import BusUnavailable
from schemas.delivery_events import DeliveryEvent, encode_deliveries
from schemas.topics import Topics

log = logging.getLogger(__name__)

# One record carries at most this many events and (uncompressed) bytes: well under the producer's batch and
# the broker's 1 MB default record limit.
RECORD_MAX_EVENTS: Final = 500
RECORD_MAX_BYTES: Final = 512 * 1024


def _count_published(events: Sequence[DeliveryEvent]) -> None:
    by_provider = collections.Counter(e.provider for e in events)
    for provider, count in by_provider.items():
        metrics.PUBLISHED.labels(provider).inc(count)


class MemoryDeliveryBus:
    """In one process: a queue of at most ``capacity`` events. `publish` takes a request's events whole or
    raises `BusUnavailable` (full, or stopped); what it took is never dropped (nothing durable survives the
    process, as with the in-memory hit bus). The loader reads it as a source of one partition."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the delivery bus needs room for at least one event")
        self.capacity = capacity
        self._queue: collections.deque[tuple[BusRecord, int]] = collections.deque()
        self._events = 0
        self._next_offset = 0
        self._wakeup = asyncio.Event()
        self._stopped = False
        metrics.BUS_DEPTH.set_function(lambda: self._events)

    # -- publisher side
    async def start(self) -> None:
        self._stopped = False

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        if not events:
            return
        if self._stopped or self._events + len(events) > self.capacity:
            metrics.BUS_REFUSED.inc(len(events))
            why = "stopped" if self._stopped else f"full ({self._events} of {self.capacity} events)"
            raise BusUnavailable(f"the in-process delivery bus is {why}")
        self._queue.append((BusRecord(encode_deliveries(events), 0, self._next_offset), len(events)))
        self._next_offset += 1
        self._events += len(events)
        _count_published(events)
        self._wakeup.set()

    def ready(self) -> bool:
        return not self._stopped and self._events < self.capacity

    @property
    def depth(self) -> int:
        """Events waiting for the loader."""
        return self._events

    # -- source side
    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]:
        taken = await take(self._queue, self._wakeup, max_records, timeout_s)
        self._events -= sum(count for _, count in taken)
        return [record for record, _ in taken]

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        return None  # nothing durable to commit in memory

    async def stop(self) -> None:
        self._stopped = True


def records_of(
    events: Sequence[DeliveryEvent], partition_of: KeyPartitions
) -> list[tuple[int, list[DeliveryEvent]]]:
    """The events as bus records: grouped by the partition their `DeliveryEvent.partition_key` picks (so the
    events of one message share a partition, in order), at most `RECORD_MAX_EVENTS` a record. Pure but for
    the partitioner's memory."""
    by_partition: dict[int, list[list[DeliveryEvent]]] = {}
    for event in events:
        chunks = by_partition.setdefault(partition_of(event.partition_key), [[]])
        if len(chunks[-1]) >= RECORD_MAX_EVENTS:
            chunks.append([])
        chunks[-1].append(event)
    return [(p, chunk) for p, chunks in by_partition.items() for chunk in chunks]


def _encoded(chunk: list[DeliveryEvent]) -> list[bytes]:
    """A chunk's record, or halves of it (in order) while it is over `RECORD_MAX_BYTES`."""
    value = encode_deliveries(chunk)
    if len(value) <= RECORD_MAX_BYTES or len(chunk) == 1:
        return [value]
    half = len(chunk) // 2
    return _encoded(chunk[:half]) + _encoded(chunk[half:])


class KafkaDeliveryPublisher:
    """The edge's `DeliveryPublisher` on Kafka: `publish` sends a request's events to the ``deliveries`` topic
    (idempotent, ``acks=all``: `KafkaConfig`) and returns once the broker acknowledged every record, else
    raises `BusUnavailable` within ``timeout_s``. A record acknowledged before another failed stays on the
    topic: the provider's retry brings it again with the same ``delivery_id``, stored once."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        *,
        setup: TopicSetup | None = None,
        timeout_s: float = 10.0,
        linger_ms: int = 2,
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.timeout_s = timeout_s
        self._setup = setup or TopicSetup(kafka, topics, [topics.deliveries], timeout_s=timeout_s)
        self._producer = kafka.renewing_producer("deliveries", linger_ms=linger_ms)
        self._partition_of = KeyPartitions()
        self._ok = False
        self._stopped = False

    async def start(self) -> None:
        """Connect if the broker is there; an edge whose broker is away still starts (and answers 503)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._setup.ready(self.timeout_s)
                await self._producer.start()
            self._ok = True
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("Kafka at %s not reachable for delivery events (%r)", self.kafka.bootstrap, exc)

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        if not events:
            return
        if self._stopped:
            metrics.BUS_REFUSED.inc(len(events))
            raise BusUnavailable("the delivery publisher is stopped")
        topic = self.topics.deliveries
        sent: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._setup.ready(self.timeout_s)
                async with self._producer.use() as producer:
                    self._partition_of.use(await producer.partitions_for(topic))
                    for partition, chunk in records_of(events, self._partition_of):
                        for value in _encoded(chunk):
                            sent.append(await producer.send(topic, value, partition=partition))  # noqa: PERF401 - awaited one by one, in order
                    await asyncio.wait(sent)  # never cancels them: a timeout leaves them to the producer
                    for future in sent:
                        error = KafkaError("send cancelled") if future.cancelled() else future.exception()
                        if error is not None:
                            raise error
        except (KafkaError, OSError, TimeoutError) as exc:
            for future in sent:
                future.add_done_callback(_retrieve)
            self._ok = False
            metrics.BUS_REFUSED.inc(len(events))
            raise BusUnavailable(
                f"the deliveries topic did not take the events within {self.timeout_s:.0f} s: {exc!r}"
            ) from exc
        self._ok = True
        _count_published(events)

    def ready(self) -> bool:
        """Until stopped: while the broker is away each request is answered 503 on its own (and the edge's
        pixels still spool), so an edge is not taken out of its load balancer for it. `reachable` says
        whether the last start or publish reached the broker."""
        return not self._stopped

    @property
    def reachable(self) -> bool:
        return self._ok

    async def stop(self) -> None:
        self._stopped = True
        await self._producer.stop(self.timeout_s)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log a send nobody waits for any more
