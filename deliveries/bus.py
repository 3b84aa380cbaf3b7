"""The delivery events' bus adapters: `MemoryDeliveryBus` (one process: a bounded queue that is the ingest's
`DeliveryPublisher` and the loader's source at once) and `KafkaDeliveryPublisher` (the edge's producer on the
``deliveries`` topic). On Kafka the loader reads through `processors.kafka_source.KafkaSource` on that topic
in its own group (``{consumer_group}-deliveries``); the wiring builds it (this stage does not import
`processors/`).

Both publishers are durable before `publish` returns, or raise `BusUnavailable` having acknowledged nothing:
the ingest then answers 503 and the provider retries (the events' ``delivery_id`` makes what a retry repeats
count once). On Kafka, while the broker is away, the events go to the edge's spool (`deliveries.spool`,
fsynced before `publish` returns) and are replayed when it answers; only a full or unwritable spool makes a
503. One bus record carries the events of one partition, in the order the request gave them
(`schemas.delivery_events.encode_deliveries`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
from deliveries.spool import DeliverySpool
from schemas.backoff import Backoff, Retry
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
    (idempotent, ``acks=all``: `KafkaConfig`) and returns once the broker acknowledged every record. When it
    cannot (within ``direct_timeout_s`` with a spool, else ``timeout_s``), the events go to the spool
    (`deliveries.spool`, fsynced before `publish` returns) and, while the spool holds anything, so do new
    ones: a background task replays it oldest first once the broker answers. Without a spool, or with the
    spool full: `BusUnavailable` (the ingest answers 503). A record acknowledged before another failed is
    sent again with it: the provider's retry, or the replay, repeats the same ``delivery_id``, stored once."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        *,
        setup: TopicSetup | None = None,
        spool: DeliverySpool | None = None,
        timeout_s: float = 10.0,
        direct_timeout_s: float = 2.0,
        replay_backoff: Backoff = Backoff(0.5, 5.0),  # noqa: B008 - frozen
        linger_ms: int = 2,
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.spool = spool
        self.timeout_s = timeout_s
        self.direct_timeout_s = direct_timeout_s if spool is not None else timeout_s
        self._setup = setup or TopicSetup(kafka, topics, [topics.deliveries], timeout_s=timeout_s)
        self._producer = kafka.renewing_producer("deliveries", linger_ms=linger_ms)
        self._partition_of = KeyPartitions()
        self._replay_retry = Retry(replay_backoff)
        self._replay_task: asyncio.Task[None] | None = None
        self._starting: asyncio.Future[None] | None = None
        self._renewals = 0
        self._wakeup = asyncio.Event()
        self._ok = False
        self._stopped = False

    async def start(self) -> None:
        """Open the spool; connect if the broker is there (an edge whose broker is away still starts, and
        spools or answers 503); replay what an earlier run spooled."""
        if self.spool is not None:
            await self.spool.open()
            self._replay_task = asyncio.create_task(self._replay(), name="delivery-spool-replay")
        try:
            async with asyncio.timeout(self.direct_timeout_s):
                await self._setup.ready(self.direct_timeout_s)
                await self._started()
            self._ok = True
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("Kafka at %s not reachable for delivery events (%r)", self.kafka.bootstrap, exc)

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        if not events:
            return
        if self._stopped:
            metrics.BUS_REFUSED.inc(len(events))
            raise BusUnavailable("the delivery publisher is stopped")
        if self.spool is not None and self.spool.depth:
            await self._take(events)  # behind what waits there: the broker was away a moment ago
            return
        try:
            await self._send(events, self.direct_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            self._ok = False
            if self.spool is None:
                metrics.BUS_REFUSED.inc(len(events))
                raise BusUnavailable(
                    f"the deliveries topic did not take the events within {self.timeout_s:.0f} s: {exc!r}"
                ) from exc
            log.warning("the deliveries topic is away (%r); spooling delivery events", exc)
            await self._take(events)
            return
        self._ok = True
        _count_published(events)

    async def _take(self, events: Sequence[DeliveryEvent]) -> None:
        if self.spool is None:
            raise BusUnavailable("no delivery spool")
        try:
            await self.spool.take(events)
        except BusUnavailable:
            metrics.BUS_REFUSED.inc(len(events))
            raise
        metrics.SPOOLED.inc(len(events))
        self._wakeup.set()

    async def _send(self, events: Sequence[DeliveryEvent], timeout_s: float) -> None:
        """Every record of ``events`` acknowledged within ``timeout_s``, or raises."""
        topic = self.topics.deliveries
        sent: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(timeout_s):
                await self._setup.ready(timeout_s)
                await self._started()
                async with self._producer.use() as producer:
                    self._partition_of.use(await producer.partitions_for(topic))
                    for partition, chunk in records_of(events, self._partition_of):
                        for value in _encoded(chunk):
                            sent.append(await producer.send(topic, value, partition=partition))  # noqa: PERF401 - awaited one by one, in order
                    await asyncio.wait(sent)  # never cancels them: a timeout leaves them to the producer
                    _raise_first_error(sent)
        except BaseException:
            for future in sent:
                future.add_done_callback(_retrieve)
            raise

    async def _started(self) -> None:
        """The producer started. Its start runs as a task of its own, which a caller's timeout does not
        cancel (a start cut short would leave its connections open): the next caller joins it."""
        task = self._starting
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._starting = asyncio.ensure_future(self._producer.start())
            task.add_done_callback(_retrieve)
        await asyncio.shield(task)
        if self._producer.renewals != self._renewals:  # renewed after a fatal error: start the new one
            self._renewals = self._producer.renewals
            self._starting = None
            await self._started()

    async def _replay(self) -> None:
        """While the spool holds events: replay them, oldest first, backing off while the broker is away."""
        spool = self.spool
        while spool is not None and not self._stopped:
            if not spool.depth:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                replayed = await spool.replay(lambda events: self._send(events, self.timeout_s))
            except (KafkaError, OSError, TimeoutError) as exc:
                delay = self._replay_retry.failed()
                log.warning("replaying spooled delivery events failed (%r); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if replayed:
                self._ok = True
                self._replay_retry.succeeded()
                metrics.SPOOL_REPLAYED.inc(replayed)

    def ready(self) -> bool:
        """Until stopped: while the broker is away each request is spooled or answered 503 on its own (and
        the edge's pixels still spool), so an edge is not taken out of its load balancer for it.
        `reachable` says whether the last start, publish or replay reached the broker."""
        return not self._stopped

    @property
    def reachable(self) -> bool:
        return self._ok

    async def stop(self) -> None:
        self._stopped = True
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        if self.spool is not None:
            await self.spool.close()  # what was not replayed stays for the next start
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._starting), self.timeout_s)
        await self._producer.stop(self.timeout_s)


def _raise_first_error(sent: list[asyncio.Future[Any]]) -> None:
    for future in sent:
        error = KafkaError("send cancelled") if future.cancelled() else future.exception()
        if error is not None:
            raise error


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log a send nobody waits for any more
