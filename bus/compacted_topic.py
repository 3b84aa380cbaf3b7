"""A compacted topic that holds a state every process keeps in memory: the API's producer of its records
(`CompactedPublisher`) and each process's follower (`CompactedFeed`). Used by the privacy topic
(`bus.privacy_feed`) and the mail-services topic (`deliveries.directory_feed`).

Each record is one key's whole state, so a reader applies records in order and the newest wins; compaction
keeps the newest per key. The feed reads the topic without a consumer group, from the beginning at every
start, hands each batch of decoded records to its ``apply``, and then keeps tailing. It is caught up once it
has read up to the end offsets the topic had when it started (a process is not ready until then); after a
reconnect it goes on from where it was. Never commits offsets; never stops on a malformed record (logged,
counted, skipped). A broker that is away is retried with backoff (`schemas.backoff`), in the background: the
process starts without it. The topic is ensured through the process's `bus.topics.TopicSetup`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from bus.kafka_config import KafkaConfig
from bus.renewing_producer import RenewingProducer
from bus.topics import TopicSetup
from schemas.backoff import Backoff, Retry
from schemas.errors import retriable

log = logging.getLogger(__name__)

R = TypeVar("R")


class CompactedPublisher:
    """The API's producer of one compacted topic's records (idempotent, ``acks=all``). ``not_published``: the
    error `send` raises when the broker does not take a record in time."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        setup: TopicSetup,
        *,
        client: str,
        not_published: Callable[[str], Exception],
        send_timeout_s: float = 5.0,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.client = client
        self.send_timeout_s = send_timeout_s
        self._setup = setup
        self._not_published = not_published
        self._producer: RenewingProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        await self._setup.ready()
        self._producer = self.kafka.renewing_producer(self.client)
        await self._producer.start()
        self._loop = asyncio.get_running_loop()

    async def send_record(self, key: bytes, value: bytes) -> None:
        """Returns once the broker has the record; raises ``not_published`` after ``send_timeout_s``."""
        if self._producer is None:
            raise self._not_published(f"the {self.client} publisher is not running")
        try:
            async with asyncio.timeout(self.send_timeout_s), self._producer.use() as producer:
                await producer.send_and_wait(self.topic, value, key=key)
        except (KafkaError, TimeoutError) as exc:
            raise self._not_published(f"the broker did not take the {self.client} change: {exc!r}") from exc

    def send_record_blocking(self, key: bytes, value: bytes) -> None:
        """`send_record` from a worker thread (the API's sync handlers); never call it on the event loop."""
        if self._loop is None or self._loop.is_closed():
            raise self._not_published(f"the {self.client} publisher is not running")
        future = asyncio.run_coroutine_threadsafe(self.send_record(key, value), self._loop)
        try:
            future.result(self.send_timeout_s + 1.0)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise self._not_published(f"the broker did not take the {self.client} change in time") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop(5.0)
            self._producer = None


@dataclass(frozen=True, slots=True)
class FeedMetrics:
    """A feed's metrics (made once per process, at import, by the module that owns the feed)."""

    records: Counter
    malformed: Counter
    caught_up: Gauge


class CompactedFeed(Generic[R]):
    """Follows one compacted topic from its beginning (see the module docstring).

    ``apply(records, caught_up)`` takes each batch in order (``caught_up``: whether the feed had caught up
    before this batch); ``on_caught_up`` runs once, when it first reaches the end offsets of its start.
    ``name`` is the feed's name in the log, ``client`` its Kafka client id (`KafkaConfig.consumer`)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        setup: TopicSetup,
        *,
        name: str,
        client: str,
        decode: Callable[[bytes], R],
        malformed: type[Exception],
        apply: Callable[[list[R], bool], Awaitable[None]],
        metrics: FeedMetrics,
        on_caught_up: Callable[[], Awaitable[None]] | None = None,
        max_records: int = 5000,
        backoff: Backoff = Backoff(0.5, 10.0),  # noqa: B008 - frozen: one value for every feed
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.name = name
        self.client = client
        self._setup = setup
        self._decode = decode
        self._malformed = malformed
        self._apply = apply
        self._metrics = metrics
        self._on_caught_up = on_caught_up
        self._max_records = max_records
        self._backoff = backoff
        self._positions: dict[TopicPartition, int] = {}  # where to go on after a reconnect
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()
        self.records = 0

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        return self.caught_up

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pixelpipe-{self.client}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Never reset after a run that went well: a later drop may wait up to `max_s` at once, which a feed
        # that has caught up can afford.
        retry = Retry(self._backoff)
        while True:
            try:
                await self._follow()
            except Exception as exc:
                if retriable(exc):  # the broker away, a timeout: back off from the shortest wait
                    delay = retry.failed()
                    log.warning("%s: %r; connecting again in %.1fs", self.name, exc, delay)
                else:  # a bug or a broker that refuses us: the longest wait, with the traceback
                    delay = self._backoff.max_s
                    log.exception("%s: failed; starting again in %.1fs", self.name, delay)
                await asyncio.sleep(delay)

    async def _follow(self) -> None:
        await self._setup.ready()
        consumer = self.kafka.consumer(self.client, group_id=None, auto_offset_reset="earliest")
        consumer.subscribe([self.topic])
        await consumer.start()
        try:
            partitions = await _assignment(consumer, timeout_s=10.0)
            for tp in partitions:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
            end = {} if self.caught_up else await consumer.end_offsets(list(partitions))
            while True:
                records = await self._read(consumer)
                if records:
                    self.records += len(records)
                    self._metrics.records.inc(len(records))
                await self._apply(records, self.caught_up)
                if not self.caught_up and await _reached(consumer, end):
                    self._caught_up.set()
                    self._metrics.caught_up.set(1)
                    if self._on_caught_up is not None:
                        await self._on_caught_up()
        finally:
            await consumer.stop()

    async def _read(self, consumer: Any) -> list[R]:
        batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
        records: list[R] = []
        for tp, batch in batches.items():
            for record in batch:
                self._positions[tp] = record.offset + 1
                if record.value is None:
                    continue  # a tombstone: nothing to apply (pixelpipe writes none)
                try:
                    records.append(self._decode(record.value))
                except self._malformed as exc:
                    self._metrics.malformed.inc()
                    where = f"{tp.topic}:{tp.partition}:{record.offset}"
                    log.error("%s: skipping %s: %s", self.name, where, exc)  # noqa: TRY400 - no trace: bad bytes
        return records


async def _assignment(consumer: Any, timeout_s: float) -> set[TopicPartition]:
    """The partitions a group-less subscription gets (all of them), once the metadata has them."""
    async with asyncio.timeout(timeout_s):
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers nothing to wait on
            await asyncio.sleep(0.05)
    return set(consumer.assignment())


async def _reached(consumer: Any, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
