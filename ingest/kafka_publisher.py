"""The edge's side of the Kafka bus: `KafkaPublisher`, a `bus.port.HitPublisher`.

Owns the edge's aiokafka producer, its delivery state machine and its use of the on-disk spool
(`ingest.spool`). Never blocks or raises in `KafkaPublisher.publish` (the pixel is already answered), never
awaits the broker on the request path, and never creates topics other than those named in
`schemas.topics.Topics`.

Edge delivery order (`KafkaPublisher`); per message, hits reach the topic in the order they were published:

1. `publish` encodes the hit and appends it to a bounded in-memory buffer. Nothing else on the request path.
2. The pump task moves the buffer, in order, to exactly one place:
   - the aiokafka producer (idempotent, ``acks=all``, compressed), while the broker is reachable and the
     spool is empty. Each hit goes to the partition its message's key picks (Kafka's default partitioner,
     `bus.partitioner.KeyPartitions`), so all hits of a message share a partition, in order; the hits
     taken in one step travel as one record per partition (`schemas.events.join_hits`, at most
     ``_RECORD_MAX_HITS`` hits or ``_RECORD_MAX_BYTES``): aiokafka's Python costs per record, not per byte.
     A step waits ``gather_ms`` after the first hit arrives (Kafka's ``linger.ms``, one level up), so that
     at high rates it takes many hits rather than the few of one event-loop iteration.
     The send futures form the in-flight window, acknowledged strictly oldest first;
   - the spool, while the broker is unreachable (acknowledgements stall for ``stall_timeout_s``, a send
     blocks that long, or there is no connection), or the buffer is over its bound, and for as long as the
     spool is not empty, so that nothing new overtakes what waits on disk.
3. When the broker answers again: the in-flight window settles first (aiokafka retries it itself, and
   idempotence keeps those retries single), then the spool is replayed oldest first, while new hits keep
   going to the spool behind it. A segment is deleted only once the broker acknowledged all its records.
4. Spool empty and every replayed record acknowledged: back to step 2's producer path.

Stop: the buffer goes to the broker (or, if it is away, to the spool) and the window gets until the
deadline to be acknowledged; what is still unacknowledged is written to the spool in front of everything
spooled (it is older), the buffer behind it; then fsync. The next start replays it.

Guarantee: at-least-once. A hit is lost only if the process dies with it in memory (SIGKILL, OOM) or in an
un-fsync'd spool batch at a power loss, or when the spool is at its size bound (counted in
``pixelpipe_spool_dropped_total``). A hit is sent twice only when the outcome of a produce request is unknown
at a producer reset or at shutdown; ``hit_id`` identifies a hit for downstream deduplication.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from bus import metrics as bus_metrics
from bus.kafka_config import KafkaConfig
from bus.partitioner import KeyPartitions
from bus.renewing_producer import PRODUCER_FATAL, close_producer
from bus.topics import TopicSetup
from ingest import metrics
from ingest.spool import Spool, SpoolOrderError
from schemas.backoff import Backoff, Retry
from schemas.events import RawHit, encode_hit, join_hits
from schemas.topics import Topics

log = logging.getLogger(__name__)


_KEY_LEN: Final = struct.Struct("<i")
# Rejections of one record that no retry can fix. Everything else (authorization, unknown topic, timeouts)
# is retried on a fresh producer while new hits spool: loud and bounded, instead of dropping hits for a
# misconfiguration that someone will fix.
_RECORD_REJECTED: Final = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
# One Kafka record carries at most this many hits, and this many bytes (uncompressed): well under the
# producer's batch size and the broker's 1 MB default record limit.
_RECORD_MAX_HITS: Final = 256
_RECORD_MAX_BYTES: Final = 128 * 1024
_STEP_HITS: Final = 4000  # hits taken from the buffer or the spool per step of the pump

Keyed = tuple[bytes | None, bytes]  # (partition key, encoded hit)


def pack_keyed(key: bytes | None, value: bytes) -> bytes:
    """A keyed record as one spool payload: ``i32 key length (-1: no key) | key | value``."""
    if key is None:
        return _KEY_LEN.pack(-1) + value
    return _KEY_LEN.pack(len(key)) + key + value


def unpack_keyed(payload: bytes) -> tuple[bytes | None, bytes]:
    (length,) = _KEY_LEN.unpack_from(payload)
    start = _KEY_LEN.size
    if length < 0:
        return None, payload[start:]
    return payload[start : start + length], payload[start + length :]


class DeliveryMode(enum.Enum):
    DIRECT = "direct"  # buffer -> producer
    SPOOL = "spool"  # broker away: buffer -> spool
    REPLAY = "replay"  # broker back: spool -> producer, buffer -> spool behind it
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PublisherState:
    """What /readyz and /metrics show about the edge's delivery."""

    mode: DeliveryMode
    broker_reachable: bool
    buffered: int
    in_flight: int
    spool_depth: int
    spool_bytes: int
    spool_full: bool
    spooled_total: int
    replayed_total: int
    dropped_total: int
    acked_total: int


@dataclass(slots=True)
class _InFlight:
    """One Kafka record between the buffer and the broker's acknowledgement: hits of one partition."""

    partition: int
    hits: list[Keyed]  # in publish order
    from_spool: bool  # still on disk (see spool_acks)
    # Spool records that this record's acknowledgement acknowledges: the replay of one read's records is
    # grouped by partition, so the read's count rides on its last record, which settles after the others.
    spool_acks: int = 0
    future: asyncio.Future[Any] | None = None  # None: not (or no longer) handed to a producer
    sent_at: float = 0.0

    @property
    def value(self) -> bytes:
        return join_hits([value for _, value in self.hits])


def group_by_partition(
    hits: Iterable[Keyed], partition_of: KeyPartitions, from_spool: bool
) -> list[_InFlight]:
    """Hits as records, one per partition (and per `_RECORD_MAX_HITS` / `_RECORD_MAX_BYTES`); the hits of a
    partition keep their order within and across its records, which are listed in that order."""
    records: list[_InFlight] = []
    open_records: dict[int, tuple[_InFlight, list[int]]] = {}  # partition -> (record, [bytes])
    for key, value in hits:
        partition = partition_of(key)
        current = open_records.get(partition)
        if current is not None:
            record, size = current
            if len(record.hits) < _RECORD_MAX_HITS and size[0] + len(value) < _RECORD_MAX_BYTES:
                record.hits.append((key, value))
                size[0] += len(value) + 1
                continue
        record = _InFlight(partition, [(key, value)], from_spool)
        open_records[partition] = (record, [len(value)])
        records.append(record)
    return records


class KafkaPublisher:
    """The edge's `HitPublisher` on Kafka, with an on-disk spool for outages (order: module docstring)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        spool_dir: Path,
        *,
        setup: TopicSetup | None = None,
        linger_ms: int = 5,
        gather_ms: int = 5,
        max_batch_size: int = 256 * 1024,
        max_buffered: int = 10_000,
        max_in_flight: int = 20_000,
        spool_max_bytes: int = 1 << 30,
        spool_segment_bytes: int = 16 << 20,
        spool_sync_records: int = 1000,
        spool_sync_interval_s: float = 0.05,
        stall_timeout_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        reconnect_backoff_s: tuple[float, float] = (0.2, 5.0),
        drain_timeout_s: float = 5.0,
        tick_s: float = 0.05,
    ) -> None:
        if max_buffered <= 0 or max_in_flight <= 0 or stall_timeout_s <= 0:
            raise ValueError("publisher bounds must be positive")
        self.kafka = kafka
        self.topics = topics
        self.spool_dir = spool_dir
        self._setup = setup or TopicSetup(
            kafka, topics, [topics.raw_hits, topics.dead_letter, topics.enriched], timeout_s=connect_timeout_s
        )
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._max_buffered = max_buffered
        self._max_in_flight = max_in_flight
        self._spool_options: dict[str, Any] = {
            "max_bytes": spool_max_bytes,
            "segment_bytes": spool_segment_bytes,
            "sync_records": spool_sync_records,
            "sync_interval_s": spool_sync_interval_s,
        }
        self._stall_timeout_s = stall_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._reconnect = Retry(Backoff(*reconnect_backoff_s))  # between tries to reach the broker
        self._drain_timeout_s = drain_timeout_s
        self._tick_s = tick_s
        self._gather_s = gather_ms / 1000

        self._buffer: collections.deque[tuple[bytes | None, bytes]] = collections.deque()
        self._window: collections.deque[_InFlight] = collections.deque()
        self._window_hits = 0  # hits in the window's records: what max_in_flight bounds
        self._spool: Spool | None = None
        self._producer: Any = None
        self._partition_of = KeyPartitions()
        self._reachable = False
        self._last_progress = 0.0  # when the broker last acknowledged or answered
        self._spooling = False  # new hits go to the spool (see the module docstring)
        self._next_connect_at = 0.0
        self._pump_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._sync: asyncio.Future[None] | None = None
        self._stopping = False
        self._stopped = False
        self._last_drop_log = 0.0
        self.spooled_total = 0
        self.replayed_total = 0
        self.dropped_total = 0
        self.acked_total = 0

    # -- the port

    async def start(self) -> None:
        """Open the spool, connect and create topics if the broker is there, start the pump. Never fails
        because the broker is away: the edge then serves and spools, and the pump keeps reconnecting."""
        self._spool = await asyncio.to_thread(Spool, self.spool_dir, **self._spool_options)
        if self._spool.skipped_bytes:
            metrics.SPOOL_CORRUPT.inc(self._spool.skipped_bytes)
        self._spooling = self._spool.depth > 0
        if self._spooling:
            log.info("spool holds %d hits from an earlier run; replayed first", self._spool.depth)
        await self._connect()
        self._publish_metrics()
        self._pump_task = asyncio.create_task(self._pump(), name="kafka-publisher-pump")

    def publish(self, hit: RawHit) -> None:
        try:
            key, value = hit.partition_key, encode_hit(hit)
        except Exception:  # a hit that cannot be encoded must not break the pixel
            log.exception("could not encode hit %s", getattr(hit, "hit_id", "?"))
            return
        self.publish_encoded(key, value)

    def publish_encoded(self, key: bytes | None, value: bytes) -> None:
        """`publish` of a hit already encoded (`encode_hit`) and keyed (`RawHit.partition_key`): what the
        edge's native fast path hands over."""
        record = (key, value)
        bus_metrics.HITS_PUBLISHED.inc()
        if self._stopped:
            self._count_dropped(1, "publisher is stopped")
            return
        if len(self._buffer) >= self._max_buffered:
            # Over the bound: the buffer goes to disk now, oldest first, and the spool decides from here on.
            self._buffer_to_spool()
            if len(self._buffer) >= self._max_buffered:
                self._count_dropped(1, "buffer and spool are full")
                return
        self._buffer.append(record)
        self._wake()

    def ready(self) -> bool:
        return self._reachable or (self._spool is not None and self._spool.has_room())

    async def stop(self) -> None:
        """Drain within ``drain_timeout_s``: to the broker if it answers, else to the spool; then fsync."""
        if self._stopped:
            return
        self._stopping = True
        deadline = time.monotonic() + self._drain_timeout_s
        if self._pump_task is not None:
            self._wake()
            # The pump finishes its step (a blocked send ends after stall_timeout_s) and exits.
            done, _ = await asyncio.wait({self._pump_task}, timeout=self._stall_timeout_s + 1.0)
            if not done:
                self._pump_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump_task
        await self._finish_sync()
        try:
            await self._drain(deadline)
        finally:
            self._stopped = True
            if self._producer is not None:
                await close_producer(self._producer, max(0.0, deadline - time.monotonic()))
                self._producer = None
            self._reachable = False
            if self._spool is not None:
                await asyncio.to_thread(self._spool.close)
            self._publish_metrics()

    # -- state for /readyz and /metrics

    @property
    def mode(self) -> DeliveryMode:
        if self._stopped:
            return DeliveryMode.STOPPED
        if not self._reachable:
            return DeliveryMode.SPOOL
        return DeliveryMode.REPLAY if self._spooling else DeliveryMode.DIRECT

    def state(self) -> PublisherState:
        spool = self._spool
        return PublisherState(
            mode=self.mode,
            broker_reachable=self._reachable,
            buffered=len(self._buffer),
            in_flight=self._window_hits,
            spool_depth=spool.depth if spool else 0,
            spool_bytes=spool.size_bytes if spool else 0,
            spool_full=spool is not None and not spool.has_room(),
            spooled_total=self.spooled_total,
            replayed_total=self.replayed_total,
            dropped_total=self.dropped_total,
            acked_total=self.acked_total,
        )

    def _publish_metrics(self) -> None:
        state = self.state()
        metrics.KAFKA_REACHABLE.set(1 if state.broker_reachable else 0)
        metrics.SPOOL_DEPTH.set(state.spool_depth)
        metrics.SPOOL_BYTES.set(state.spool_bytes)
        metrics.SPOOL_FULL.set(1 if state.spool_full else 0)

    # -- the pump

    def _wake(self, _: object = None) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            # Created before the step: a publish or an acknowledgement during the step wakes the next round.
            self._wakeup = wakeup = loop.create_future()
            more = False
            try:
                more = await self._step()
            except Exception:  # the pump must outlive any one bad step, or hits pile up unseen
                log.exception("edge publisher step failed; retrying")
            self._publish_metrics()
            if not more and not self._stopping:
                # The tick drives stall detection, reconnects and time-based fsync when nothing else happens.
                await asyncio.wait({wakeup}, timeout=self._tick_s)
                if self._gather_s and self.mode is DeliveryMode.DIRECT and len(self._buffer) < _STEP_HITS:
                    await asyncio.sleep(self._gather_s)  # gather a step's hits (module docstring, 2.)
            else:
                await asyncio.sleep(0)  # let the request handlers run between big steps

    async def _step(self) -> bool:
        """One round of the state machine; True when there is more to do right away."""
        self._settle()
        if self._producer is None:
            await self._connect()
        elif self._reachable and self._stalled():
            self._mark_unreachable(f"no acknowledgement for {self._stall_timeout_s:.1f} s")
        elif not self._reachable and self._oldest_pending() is None:
            # Nothing in flight to tell us when the broker is back: ask it.
            await self._probe()
        if self._reachable:
            await self._send_unsent()
        if self._reachable and not self._spooling:
            await self._send_buffer()
        else:
            self._buffer_to_spool()
        if self._reachable and self._spooling:
            await self._replay()
        await self._maybe_sync()
        room = self._window_hits < self._max_in_flight
        if not (self._reachable and room):
            return False
        if self._spooling:
            return self._spool is not None and self._spool.unread > 0 and self._replay_allowed()
        return bool(self._buffer)

    def _settle(self) -> None:
        """Retire acknowledged records from the head of the window, strictly in order."""
        acked = spool_acks = 0
        while self._window:
            head = self._window[0]
            future = head.future
            if future is None or not future.done():
                break
            error = future.exception() if not future.cancelled() else ProducerClosed()
            if error is not None:
                if isinstance(error, _RECORD_REJECTED):
                    # Retrying cannot help (e.g. a record over the broker's size limit): count, log, drop.
                    metrics.KAFKA_PUBLISH_FAILED.inc(len(head.hits))
                    log.error("broker rejected a record of %d hits for good: %r", len(head.hits), error)
                else:
                    self._reset_producer(error)
                    break
            else:
                acked += len(head.hits)
            self._window.popleft()
            self._window_hits -= len(head.hits)
            spool_acks += head.spool_acks
        if acked:
            self.acked_total += acked
            metrics.KAFKA_ACKED.inc(acked)
            self._last_progress = time.monotonic()
            self._reconnect.succeeded()
            if not self._reachable and self._producer is not None:
                log.info("broker acknowledges again")
                self._reachable = True
        if spool_acks and self._spool is not None:
            self._spool.ack(spool_acks)
            self.replayed_total += spool_acks
            metrics.SPOOL_REPLAYED.inc(spool_acks)
        if self._spooling and self._spool is not None and self._spool.depth == 0 and not self._window:
            self._spooling = False
            log.info("spool replayed; delivering straight to the broker again")

    def _oldest_pending(self) -> asyncio.Future[Any] | None:
        """The oldest send still waiting for the broker's answer."""
        for entry in self._window:
            if entry.future is not None and not entry.future.done():
                return entry.future
        return None

    def _stalled(self) -> bool:
        if not self._window:
            return False
        head = self._window[0]
        if head.future is None or head.future.done():
            return False
        # Measured from the later of the send and the last sign of life: records sent before an outage are
        # old by the time the broker is back, and must not make it look stalled again at once.
        return time.monotonic() - max(head.sent_at, self._last_progress) > self._stall_timeout_s

    def _mark_unreachable(self, reason: str) -> None:
        if self._reachable:
            log.warning(
                "Kafka broker at %s unreachable (%s); spooling hits to %s",
                self.kafka.bootstrap,
                reason,
                self.spool_dir,
            )
        self._reachable = False
        self._spooling = True

    async def _send(self, entries: Iterable[_InFlight]) -> bool:
        """Hand entries to the producer in order; False (and unreachable) if a send blocks or fails."""
        producer = self._producer
        if producer is None:
            return False
        topic = self.topics.raw_hits
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._stall_timeout_s) as deadline:
                for entry in entries:
                    # aiokafka's send returns once the record is in a batch; it blocks only when the batch
                    # for that partition is full and undelivered: the broker does not keep up or is away.
                    entry.future = await producer.send(topic, entry.value, partition=entry.partition)
                    entry.sent_at = time.monotonic()
                    entry.future.add_done_callback(self._wake)
                    deadline.reschedule(loop.time() + self._stall_timeout_s)
        except TimeoutError:
            self._mark_unreachable(f"a send blocked for {self._stall_timeout_s:.1f} s")
            return False
        except KafkaError as error:
            if isinstance(error, PRODUCER_FATAL):  # the window is re-sent on a fresh producer
                self._reset_producer(error)
            else:
                self._mark_unreachable(repr(error))
            return False
        return True

    async def _send_unsent(self) -> None:
        """Records of the window that no producer holds (after a reset) go first: they are the oldest."""
        unsent = [entry for entry in self._window if entry.future is None]
        if unsent:
            await self._send(unsent)

    async def _send_buffer(self) -> None:
        room = min(self._max_in_flight - self._window_hits, _STEP_HITS)  # so other tasks get the loop
        if room <= 0 or not self._buffer:
            return
        count = min(room, len(self._buffer))
        buffer = self._buffer
        entries = group_by_partition((buffer.popleft() for _ in range(count)), self._partition_of, False)
        self._window.extend(entries)
        self._window_hits += count
        # A record handed to the window and not sent stays there with future=None and is sent first later.
        await self._send(entries)

    def _replay_allowed(self) -> bool:
        # Hits sent before the spool started are older than everything in it: they settle first.
        return not any(not entry.from_spool for entry in self._window)

    async def _replay(self) -> None:
        if self._spool is None or not self._replay_allowed():
            return
        room = min(self._max_in_flight - self._window_hits, _STEP_HITS)
        if room <= 0:
            return
        payloads = self._spool.read(room)
        entries = group_by_partition(map(unpack_keyed, payloads), self._partition_of, True)
        if entries:
            entries[-1].spool_acks = len(payloads)
            self._window.extend(entries)
            self._window_hits += len(payloads)
            await self._send(entries)

    def _buffer_to_spool(self) -> None:
        if not self._buffer:
            return
        if self._spool is None:
            return  # not started: the buffer holds them until start
        self._spooling = True
        records = list(self._buffer)
        taken = self._spool.append_many([pack_keyed(key, value) for key, value in records])
        for _ in range(taken):
            self._buffer.popleft()
        if taken:
            self.spooled_total += taken
            metrics.SPOOL_WRITTEN.inc(taken)
        if taken < len(records):
            # The spool is at its bound; what stays in the buffer waits there (and new hits are dropped once
            # the buffer is full too).
            self._last_drop_log = self._warn_full(self._last_drop_log)

    def _warn_full(self, last: float) -> float:
        now = time.monotonic()
        if now - last > 10.0:
            log.warning(
                "edge spool at %s is full (%d bytes); new hits are dropped",
                self.spool_dir,
                self._spool.size_bytes if self._spool else 0,
            )
            return now
        return last

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped_total += count
        metrics.SPOOL_DROPPED.inc(count)
        now = time.monotonic()
        if now - self._last_drop_log > 10.0:
            self._last_drop_log = now
            log.warning("dropping hits: %s", why)

    async def _maybe_sync(self) -> None:
        spool = self._spool
        if spool is None or self._sync is not None or not spool.sync_due():
            return
        plan = spool.begin_sync()
        # fsync in a worker thread: the event loop keeps answering pixels meanwhile. The spool closes file
        # descriptors only inside run_sync, so nothing the thread holds can go away under it.
        sync = asyncio.get_running_loop().run_in_executor(None, spool.run_sync, plan)
        self._sync = sync

        def finished(_: object) -> None:
            spool.end_sync(plan)
            self._sync = None

        sync.add_done_callback(finished)
        await asyncio.shield(sync)

    async def _finish_sync(self) -> None:
        if self._sync is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(self._sync)

    # -- connection

    async def _connect(self) -> None:
        now = time.monotonic()
        if self._producer is not None or now < self._next_connect_at:
            return
        producer = self.kafka.producer("edge", linger_ms=self._linger_ms, max_batch_size=self._max_batch_size)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await producer.start()
            await self._setup.ready(self._connect_timeout_s)
            self._partition_of.use(await producer.partitions_for(self.topics.raw_hits))
        except (KafkaError, OSError, TimeoutError) as error:
            await close_producer(producer, 0.0)
            if self._reconnect.failures == 0:
                log.warning(
                    "Kafka at %s not reachable (%r); spooling and retrying", self.kafka.bootstrap, error
                )
            self._next_connect_at = time.monotonic() + self._reconnect.failed()
            self._mark_unreachable(repr(error))
            return
        log.info("connected to Kafka at %s (compression %s)", self.kafka.bootstrap, self.kafka.compression)
        self._producer = producer
        self._reachable = True
        self._last_progress = time.monotonic()

    async def _probe(self) -> None:
        now = time.monotonic()
        if now < self._next_connect_at:
            return
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._producer.client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError):
            self._next_connect_at = time.monotonic() + self._reconnect.failed()
            return
        self._reconnect.succeeded()
        log.info("Kafka broker at %s answers again", self.kafka.bootstrap)
        self._reachable = True
        self._last_progress = time.monotonic()

    def _reset_producer(self, error: BaseException) -> None:
        """The producer failed in a way it does not recover from: drop it, keep every unacknowledged record in
        the window (to be re-sent first on the next producer), and reconnect."""
        log.warning("resetting the Kafka producer after %r; unacknowledged hits will be re-sent", error)
        producer, self._producer = self._producer, None
        for entry in self._window:
            future = entry.future
            if _acknowledged(future):
                continue  # only waiting for an older record ahead of it
            if future is not None:
                # The old producer fails these on close; nobody else will look at the outcome.
                future.add_done_callback(_retrieve)
            entry.future = None
        if producer is not None:
            task = asyncio.ensure_future(close_producer(producer, 0.0))
            task.add_done_callback(_log_task_error)
        # Back off before the next producer: an error that keeps coming back must not spin.
        self._next_connect_at = time.monotonic() + self._reconnect.failed()
        self._mark_unreachable(repr(error))

    # -- stop

    async def _drain(self, deadline: float) -> None:
        spool = self._spool
        if spool is None:
            return
        while True:
            self._settle()
            if self._producer is not None and self._reachable:
                await self._send_unsent()
                if not self._spooling:
                    await self._send_buffer()
            if not self._reachable or self._spooling:
                self._buffer_to_spool()
            head = self._oldest_pending()
            remaining = deadline - time.monotonic()
            sending = bool(self._buffer) and self._reachable and not self._spooling
            if remaining <= 0 or (head is None and not sending):
                break
            if head is not None:
                # Acknowledgements come oldest first per partition; waiting on the oldest is enough.
                await asyncio.wait({head}, timeout=remaining)
        self._settle()
        self._window_to_spool(spool)
        # Whatever is left in the buffer, including hits published while we waited, goes behind it. No await
        # from here until `_stopped` is set, so nothing can slip in after this.
        self._buffer_to_spool()
        self._count_dropped_buffer()

    def _count_dropped_buffer(self) -> None:
        if self._buffer:
            self._count_dropped(len(self._buffer), "spool is full at shutdown")
            self._buffer.clear()

    def _window_to_spool(self, spool: Spool) -> None:
        """At stop: unacknowledged records that are not on disk yet go in front of the spool (they are older
        than everything in it); records replayed from the spool are still in it and need nothing."""
        unacked = [e for e in self._window if not e.from_spool and not _acknowledged(e.future)]
        if not unacked:
            return
        for entry in unacked:
            if entry.future is not None:
                entry.future.add_done_callback(_retrieve)
        payloads = [pack_keyed(key, value) for e in unacked for key, value in e.hits]
        try:
            taken = spool.prepend(payloads)
        except SpoolOrderError:
            log.exception("could not put unacknowledged hits in front of the spool; appending them instead")
            taken = spool.append_many(payloads)
        self.spooled_total += taken
        metrics.SPOOL_WRITTEN.inc(taken)
        if taken < len(payloads):
            self._count_dropped(len(payloads) - taken, "spool is full at shutdown")
        log.info("spooled %d unacknowledged hits at shutdown", taken)


def _acknowledged(future: asyncio.Future[Any] | None) -> bool:
    return future is not None and future.done() and not future.cancelled() and future.exception() is None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # mark it retrieved, so asyncio does not log it as forgotten


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("closing an abandoned Kafka producer failed: %r", task.exception())
