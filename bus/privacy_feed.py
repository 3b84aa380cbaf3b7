"""Privacy changes on Kafka: the API publishes them (`PrivacyPublisher`); every process keeps its do-not-track
set in step with them (`PrivacyFeed`).

The ``privacy`` topic is compacted, one partition, keyed by recipient (`schemas.privacy_change`). The feed
reads it without a consumer group, from the beginning at every start, applies each record to the process's
`schemas.suppression.DoNotTrack` in order, and then keeps tailing it. It is caught up once it has read up to
the end offsets the topic had when it started; until then the process is not ready (``/readyz``). Erasures go
on to ``on_erased`` (the webhook outbox, the message cache and the live feed forget the recipient): while
catching up only those whose newest record is still an erasure, so a replay never purges what a later opt-in
made.

Never carries a plain address; never commits offsets; never stops on a malformed record (logged, counted,
skipped). A broker that is away at start is retried with backoff (`schemas.backoff`), in the background: a
process starts without it (an edge keeps answering, its spool keeps hits), and stays not ready until the feed
has caught up. The privacy topic is ensured through the process's `bus.topics.TopicSetup`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from bus.kafka_config import KafkaConfig
from bus.renewing_producer import RenewingProducer
from bus.topics import TopicSetup
from schemas.backoff import Backoff, Retry
from schemas.errors import retriable
from schemas.privacy_change import (
    MalformedPrivacyChange,
    PrivacyChange,
    PrivacyNotPublished,
    decode_privacy_change,
    encode_privacy_change,
)
from schemas.suppression import DoNotTrack
from schemas.topics import Topics

log = logging.getLogger(__name__)

PRIVACY_CHANGES = Counter("pixelpipe_privacy_changes_total", "Privacy changes read from the privacy topic")
PRIVACY_MALFORMED = Counter("pixelpipe_privacy_malformed_total", "Records on the privacy topic that are not")
PRIVACY_CAUGHT_UP = Gauge("pixelpipe_privacy_caught_up", "1 once the privacy topic was read to its end")

ErasureHook = Callable[[Sequence[PrivacyChange]], Awaitable[None]]


def privacy_topic(kafka: KafkaConfig, topics: Topics) -> TopicSetup:
    """The privacy topic alone, for a publisher or a feed not given the process's `TopicSetup`."""
    return TopicSetup(kafka, topics, [topics.privacy])


class PrivacyPublisher:
    """The API's producer of privacy changes (idempotent, ``acks=all``)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        *,
        setup: TopicSetup | None = None,
        send_timeout_s: float = 5.0,
    ) -> None:
        self.kafka = kafka
        self.topic = topics.privacy
        self.send_timeout_s = send_timeout_s
        self._setup = setup or privacy_topic(kafka, topics)
        self._producer: RenewingProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        await self._setup.ready()
        self._producer = self.kafka.renewing_producer("privacy")
        await self._producer.start()
        self._loop = asyncio.get_running_loop()

    async def send(self, change: PrivacyChange) -> None:
        """Returns once the broker has the change; raises `PrivacyNotPublished` after ``send_timeout_s``."""
        if self._producer is None:
            raise PrivacyNotPublished("the privacy publisher is not running")
        try:
            async with asyncio.timeout(self.send_timeout_s), self._producer.use() as producer:
                await producer.send_and_wait(self.topic, encode_privacy_change(change), key=change.key)
        except (KafkaError, TimeoutError) as exc:
            raise PrivacyNotPublished(f"the broker did not take the privacy change: {exc!r}") from exc

    def send_blocking(self, change: PrivacyChange) -> None:
        """`send` from a worker thread (the API's sync handlers); never call it on the event loop."""
        if self._loop is None or self._loop.is_closed():
            raise PrivacyNotPublished("the privacy publisher is not running")
        future = asyncio.run_coroutine_threadsafe(self.send(change), self._loop)
        try:
            future.result(self.send_timeout_s + 1.0)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise PrivacyNotPublished("the broker did not take the privacy change in time") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop(5.0)
            self._producer = None


class PrivacyFeed:
    """Keeps ``do_not_track`` in step with the privacy topic (read from the beginning, then tailed)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        do_not_track: DoNotTrack,
        *,
        on_erased: ErasureHook | None = None,
        setup: TopicSetup | None = None,
        max_records: int = 5000,
        backoff: Backoff = Backoff(0.5, 10.0),  # noqa: B008 - frozen: one value for every feed
    ) -> None:
        self.kafka = kafka
        self.topic = topics.privacy
        self.do_not_track = do_not_track
        self.on_erased = on_erased
        self._setup = setup or privacy_topic(kafka, topics)
        self._max_records = max_records
        self._backoff = backoff
        self._positions: dict[TopicPartition, int] = {}  # where to go on after a reconnect
        self._latest_erasures: dict[bytes, PrivacyChange] = {}  # while catching up: newest record per key
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

    def state(self) -> dict[str, Any]:
        """What ``/readyz`` shows."""
        return {
            "topic": self.topic,
            "caught_up": self.caught_up,
            "records": self.records,
            "suppressed": len(self.do_not_track),
        }

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pixelpipe-privacy-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Never reset after a run that went well (as before this used `Retry`): a later drop may wait up to
        # `max_s` at once, which a feed that has caught up can afford.
        retry = Retry(self._backoff)
        while True:
            try:
                await self._follow()
            except Exception as exc:
                if retriable(exc):  # the broker away, a timeout: back off from the shortest wait
                    delay = retry.failed()
                    log.warning("privacy feed: %r; connecting again in %.1fs", exc, delay)
                else:  # a bug or a broker that refuses us: the longest wait, with the traceback
                    delay = self._backoff.max_s
                    log.exception("privacy feed: failed; starting again in %.1fs", delay)
                await asyncio.sleep(delay)

    async def _follow(self) -> None:
        await self._setup.ready()
        consumer = self.kafka.consumer("privacy-feed", group_id=None, auto_offset_reset="earliest")
        consumer.subscribe([self.topic])
        await consumer.start()
        try:
            partitions = await _assignment(consumer, timeout_s=10.0)
            for tp in partitions:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
            end = {} if self.caught_up else await consumer.end_offsets(list(partitions))
            while True:
                changes = await self._read(consumer)
                if changes:
                    self.do_not_track.apply((c.tags, not c.tracking) for c in changes)
                    self.records += len(changes)
                    PRIVACY_CHANGES.inc(len(changes))
                if self.caught_up:
                    erased = [c for c in changes if c.erased]
                    if erased:
                        await self._erased(erased)
                    continue
                for c in changes:
                    self._latest_erasures[c.key] = c
                if await _reached(consumer, end):
                    self._caught_up.set()
                    PRIVACY_CAUGHT_UP.set(1)
                    log.info("privacy feed: caught up (%d records, %d suppressed)", self.records,
                             len(self.do_not_track))  # fmt: skip
                    erased = [c for c in self._latest_erasures.values() if c.erased]
                    self._latest_erasures.clear()
                    if erased:
                        await self._erased(erased)
        finally:
            await consumer.stop()

    async def _read(self, consumer: Any) -> list[PrivacyChange]:
        batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
        changes: list[PrivacyChange] = []
        for tp, records in batches.items():
            for record in records:
                self._positions[tp] = record.offset + 1
                if record.value is None:
                    continue  # a tombstone: nothing to apply (pixelpipe writes none)
                try:
                    changes.append(decode_privacy_change(record.value))
                except MalformedPrivacyChange as exc:
                    PRIVACY_MALFORMED.inc()
                    where = f"{tp.topic}:{tp.partition}:{record.offset}"
                    log.error("privacy feed: skipping %s: %s", where, exc)  # noqa: TRY400 - no trace: bad bytes
        return changes

    async def _erased(self, erased: Sequence[PrivacyChange]) -> None:
        if self.on_erased is None:
            return
        retry = Retry(self._backoff)
        for attempt in range(1, 6):
            try:
                await self.on_erased(erased)
            except Exception as exc:  # the outbox's disk: try a few times; the set is applied already
                if attempt == 5 or not retriable(exc):
                    log.exception("privacy feed: could not purge notifications of %d erasures", len(erased))
                    return
                delay = retry.failed()
                log.warning("privacy feed: purging notifications failed (%r); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            else:
                return


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
