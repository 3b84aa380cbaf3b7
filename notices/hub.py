"""The notice hub: takes each batch the processor stored (hits, then the flush's read records) and each batch
the delivery loader stored (a mail service's delivery events) and hands their notices to the sinks, in the
order they were stored.

Must never block or raise in `NoticeHub.publish`, `NoticeHub.publish_reads` or `NoticeHub.publish_deliveries`
(called between an insert and its commit); never let a sink's failure or slowness reach the processor or the
loader (the queue is bounded: past the bound a batch is dropped and counted in
``pixelpipe_notices_dropped_total``). On Kafka the processor and the delivery loader commit offsets only once
`NoticeHub.durable` says the notices of what they stored were handed to every sink (`processors.runner`,
`deliveries.loader`): every kind of batch waits in one queue, so one ticket covers them all.
The sinks: in one process the live feed and the webhook dispatcher; on Kafka the ``enriched`` topic's
producer (`notices.kafka`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, TypeVar

from prometheus_client import Counter

from notices.delivery_making import delivery_notices_of
from notices.making import MessageLookup, Stored, notices_of
from notices.read_making import read_notices_of
from notices.retries import until_taken
from processors.reads import StoredRead
from schemas.backoff import Backoff
from schemas.delivery_events import DeliveryEvent
from schemas.notices import Notice
from schemas.tokens import Keyring

log = logging.getLogger(__name__)

T = TypeVar("T")
NoticeSink = Callable[[Sequence[Notice]], Awaitable[None]]
# A queued batch: its publish number, and stored hits, stored delivery events or stored read records (one of
# the three; the others empty).
_Batch = tuple[int, Stored, Sequence[DeliveryEvent], Sequence[StoredRead]]

NOTICES = Counter(
    "pixelpipe_notices_total", "Notices made from stored hits, read records and delivery events", ["type"]
)
NOTICES_DROPPED = Counter("pixelpipe_notices_dropped_total", "Notices dropped: the hub's queue was full")
MAX_PASS: Final = 5000  # stored hits (and delivery events) the hub takes on in one pass


class NoticeHub:
    """Takes each stored batch from the processor (and from the delivery loader) and hands its notices to the
    sinks, in stored order.

    `publish` (`publish_deliveries`) only appends to a bounded queue (``max_queued`` stored hits and delivery
    events) and returns; the hub's own task makes the notices (a delivery notice's recipient tag under
    ``keyring``'s signing key), completes them (`MessageLookup`, in a worker thread) and awaits each sink in
    turn. Hit and delivery batches share the queue: their notices reach the sinks in the order they were
    published, so a message's ``delivered`` published before its open is handed on before it.
    A sink that raises is retried with backoff until it takes the batch, which is never given up
    (`notices.retries.until_taken` says why; the queue fills meanwhile, and past its bound batches are
    dropped and counted): `publish` never waits for a sink.

    `durable` is how a caller that must not go on before the notices are safe waits for them: it returns a
    future that completes once every batch published before the call has been handed to every sink (on
    Kafka: acknowledged by the broker). Batches settle in publish order. A dropped batch counts as settled
    (it was counted instead: a drop never holds anything up); the processor on Kafka applies backpressure
    long before the bound, so there it does not happen. Futures still waiting when the hub stops are
    cancelled: those notices were not handed on.
    """

    def __init__(
        self,
        *,
        lookup: MessageLookup | None = None,
        sinks: Iterable[NoticeSink] = (),
        keyring: Keyring | None = None,
        max_queued: int = 100_000,
        clock: Callable[[], float] = time.time,
        retry_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if max_queued <= 0:
            raise ValueError("max_queued must be positive")
        self.lookup = lookup
        self.sinks: list[NoticeSink] = list(sinks)
        self.keyring = keyring
        self.max_queued = max_queued
        self.clock = clock
        self._backoff = Backoff(*retry_s)
        self._queue: collections.deque[_Batch] = collections.deque()
        self._queued = 0
        self._published = 0  # sequence number of the last batch queued
        self._settled = 0  # every batch up to this number has been handed to every sink
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0

    def publish(self, stored: Stored) -> None:
        """The runner's ``on_stored`` callback. Never blocks, never raises."""
        self._enqueue(stored, (), (), "stored hits")

    def publish_reads(self, reads: Sequence[StoredRead]) -> None:
        """The runner's ``on_reads_stored`` callback: a flush's stored read records, handed on after the
        flush's hits, so a read's notice follows its open's (`notices.read_making`). Never blocks, never
        raises."""
        self._enqueue((), (), reads, "read records")

    def publish_deliveries(self, events: Sequence[DeliveryEvent]) -> None:
        """The delivery loader's ``on_stored`` callback: delivery events stored (matched or not; only some
        make a notice, `notices.delivery_making`). Never blocks, never raises."""
        self._enqueue((), events, (), "delivery events")

    def _enqueue(
        self, stored: Stored, events: Sequence[DeliveryEvent], reads: Sequence[StoredRead], what: str
    ) -> None:
        size = len(stored) + len(events) + len(reads)
        if not size:
            return
        # The bound is against falling behind: a batch is always taken when nothing else waits.
        if self._queue and self._queued + size > self.max_queued:
            self.dropped += size
            NOTICES_DROPPED.inc(size)
            log.warning("notice queue full: dropped a batch of %d %s", size, what)
            return
        self._published += 1
        self._queue.append((self._published, stored, events, reads))
        self._queued += size
        if self._wake is not None:
            self._wake.set()

    def durable(self) -> asyncio.Future[None]:
        """Completes once every batch published so far has been handed to every sink (cancelled if the hub
        stops first). Call on the event loop; never blocks."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._settled >= self._published:
            future.set_result(None)
        else:
            self._waiters.append((self._published, future))
        return future

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def unsettled(self) -> int:
        """Batches published and not yet handed to every sink."""
        return self._published - self._settled

    def _settle(self, upto: int) -> None:
        self._settled = max(self._settled, upto)
        while self._waiters and self._waiters[0][0] <= self._settled:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="pixelpipe-notice-hub")

    async def stop(self, deadline_s: float = 3.0) -> None:
        """Hand what is queued to the sinks within ``deadline_s``, then stop."""
        if self._task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=deadline_s)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await self._task
            except Exception:
                log.exception("notice hub: a sink failed at stop")
        if self._queued:
            log.warning("notice hub: %d stored hits or delivery events not handed on at stop", self._queued)
        while self._waiters:  # never handed on: whoever waits must not take them for durable
            self._waiters.popleft()[1].cancel()
        self._task = None

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101 - set in start()
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # Behind (a slow lookup or sink): take several batches at once, so one lookup serves them all.
            batches: list[_Batch] = []
            taken, upto = 0, self._settled
            while self._queue and (not taken or taken + _size(self._queue[0]) <= MAX_PASS):
                batch = self._queue.popleft()
                upto = batch[0]
                taken += _size(batch)
                batches.append(batch)
            self._queued -= taken
            notices = self._notices_of(batches, int(self.clock() * 1000))
            if notices:
                if self.lookup is not None:
                    notices = await self._retrying("message lookup", self._complete, notices)
                for kind, count in collections.Counter(n.type for n in notices).items():
                    NOTICES.labels(kind).inc(count)
                for sink in self.sinks:
                    await self._retrying(getattr(sink, "__qualname__", "sink"), sink, notices)
            self._settle(upto)

    def _notices_of(self, batches: Sequence[_Batch], created_at_ms: int) -> list[Notice]:
        notices: list[Notice] = []
        for _, stored, events, reads in batches:
            if stored:
                notices.extend(notices_of(stored, created_at_ms))
            elif reads:
                notices.extend(read_notices_of(reads, created_at_ms))
            else:
                notices.extend(delivery_notices_of(events, created_at_ms, self.keyring))
        return notices

    async def _complete(self, notices: Sequence[Notice]) -> list[Notice]:
        assert self.lookup is not None  # noqa: S101 - checked by the caller
        return await asyncio.to_thread(self.lookup.complete, notices)

    async def _retrying(
        self, what: str, step: Callable[[Sequence[Notice]], Awaitable[T]], notices: Sequence[Notice]
    ) -> T:
        # Any sink (SQLite, Kafka, a lookup) is retried, never fatal to the hub, and a batch is never given
        # up, even on a failure `retriable()` says cannot pass: `until_taken` says why.
        return await until_taken(
            lambda: step(notices),
            what=f"notice hub: {what}",
            backoff=self._backoff,
            log=log,
            give_up=lambda: self._stopping,
        )


def _size(batch: _Batch) -> int:
    return len(batch[1]) + len(batch[2]) + len(batch[3])
