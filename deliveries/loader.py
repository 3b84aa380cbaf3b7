"""The delivery loader: read delivery events from the bus, match them to their sends, store them exactly
once, then commit. The process role's loop for the ``deliveries`` topic (or the in-process delivery bus).

Delivery order, per batch (at-least-once from the bus, idempotent into ClickHouse):

1. fetch records (`bus.port.HitSource`'s shape: `deliveries.bus.MemoryDeliveryBus`, or
   `processors.kafka_source.KafkaSource` on the deliveries topic);
2. decode each record, all or nothing (`schemas.delivery_events.decode_deliveries`); a malformed record goes
   to the dead letters with its reason and its offset is committed like any other;
3. every ``flush_interval`` (or sooner when the batch is large): match the batch's events to their sends
   (`deliveries.matching`: one store query per way), drop the events of recipients on do-not-track (by the
   recipient's keyed tag, the event's own recipient or its send's; counted), keep the first of each
   ``delivery_id``, and insert the rows into ``deliveries`` with a deduplication token derived from the
   batch's delivery ids (`deliveries.rows`) -- retried with backoff while the failure may pass (nothing is
   committed meanwhile). A batch the store refuses for good goes to the dead letters, record by record, with
   ClickHouse's error;
4. hand the stored matched events to ``on_stored`` (the notices of delivered, bounce and complaint) and take
   a ticket from ``notices_durable``, which completes once their notices are durable;
5. only then commit the next offset of every partition read. The wait for the ticket is outside the loop's
   lock, so a rebalance meanwhile can store what it has and hand its partitions on (waiting at most
   ``settle_deadline_s`` for the ticket, else leaving them uncommitted).

A crash between 3 and 5 replays the batch: the same records make the same batch, deduplicated by its token;
and a delivery event stored twice (a provider's retry in another batch, a batch cut differently after a
rebalance) still counts once: counts use ``uniqExact(delivery_id)`` and the rollups keep sets of message
hashes. Stop: store what was read, wait at most ``settle_deadline_s`` for its notices, commit; the in-process
bus (no replay) is first drained into the store.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bus.dead_letters import DeadLetters, LogDeadLetters, dead_letter
from bus.port import BusRecord, HitSource
from bus.tickets import settle
from deliveries import metrics
from deliveries.matching import REASON_LABELS, Matched, match_all
from deliveries.rows import COLUMNS, TABLE, dedup_token, first_of_each, row
from schemas.backoff import Backoff, retrying
from schemas.delivery_events import DeliveryEvent, MalformedDelivery, decode_deliveries
from schemas.store import Store, StoreError
from schemas.suppression import DoNotTrack

log = logging.getLogger(__name__)

OnStored = Callable[[Sequence[DeliveryEvent]], None]
NoticesDurable = Callable[[], Awaitable[None]]
STORE_BACKOFF: Final = Backoff(first_s=0.1, max_s=5.0)  # a lookup or an insert while the store is away


@dataclass(slots=True)
class _Pending:
    events: list[tuple[BusRecord, DeliveryEvent]] = field(default_factory=list)
    since: float = 0.0


@dataclass(slots=True)
class _Waiting:
    """Offsets stored and waiting for their notices' ticket."""

    offsets: dict[int, int]
    ticket: asyncio.Future[None]

    @property
    def failed(self) -> bool:
        t = self.ticket
        return t.done() and (t.cancelled() or t.exception() is not None)


class DeliveryLoader:
    def __init__(
        self,
        *,
        source: HitSource,
        store: Store,
        dead_letters: DeadLetters | None = None,
        on_stored: OnStored | None = None,
        notices_durable: NoticesDurable | None = None,
        do_not_track: DoNotTrack | None = None,
        flush_interval_s: float = 0.25,
        max_batch: int = 5000,
        settle_deadline_s: float = 5.0,
        settle_log_s: float = 10.0,
        drain_on_stop: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_batch``: events per insert (and records per fetch). ``drain_on_stop``: the source cannot
        replay (the in-process bus): on stop, store what it still holds, and keep retrying the store."""
        if max_batch < 1 or settle_deadline_s < 0 or settle_log_s <= 0:
            raise ValueError("max_batch must be >= 1, settle_deadline_s >= 0, settle_log_s > 0")
        self.source = source
        self.store = store
        self.dead_letters = dead_letters or LogDeadLetters()
        self.on_stored = on_stored
        self.notices_durable = notices_durable
        self.do_not_track = do_not_track
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.settle_deadline_s = settle_deadline_s
        self.settle_log_s = settle_log_s
        self.drain_on_stop = drain_on_stop
        self.clock = clock
        self.store_ok = True
        self.last_progress = time.monotonic()
        self._pending = _Pending()
        self._next_offsets: dict[int, int] = {}
        self._waiting: _Waiting | None = None
        self._notices_lost = False
        # A rebalance runs `on_revoked` in aiokafka's coordinator task, concurrently with `step`: one at a
        # time reads, stores or commits.
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    # -- the loop

    async def run(self) -> None:
        """Run until `stop()`; then store what was read and commit it."""
        await self.dead_letters.start()
        await self.source.start()
        try:
            while not self._stopping.is_set():
                await self.step()
            async with self._lock:
                try:
                    if self.drain_on_stop:
                        await self._drain()
                    await self._flush()
                    await self._settle(self.settle_deadline_s, "stopping")
                    await self._commit_settled()
                except StoreError as exc:
                    log.warning("stopping with the store away (%s): the last batch stays uncommitted", exc)
        finally:
            await self.source.stop()
            await self.dead_letters.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def step(self) -> None:
        """One turn: fetch, decode, maybe store; then wait for the notices and commit."""
        timeout = self.flush_interval_s
        if self._pending.events:
            timeout = max(0.0, self._pending.since + self.flush_interval_s - time.monotonic())
        records = await self.source.fetch(self.max_batch, timeout)
        async with self._lock:
            await self._take(records)
            pending = len(self._pending.events)
            due = pending and (
                pending >= self.max_batch or time.monotonic() - self._pending.since >= self.flush_interval_s
            )
            if due or (not pending and records):
                await self._flush()
            self.last_progress = time.monotonic()
        if self._waiting is not None and not self._notices_lost:
            # Outside the lock: a rebalance meanwhile may take the partitions (`on_revoked` waits too).
            await self._settle(None, "waiting for the notices of stored delivery events")
            async with self._lock:
                await self._commit_settled()

    async def on_revoked(self, partitions: set[int]) -> None:
        """A rebalance takes partitions away: store and commit what was read while they are still ours (the
        notices waited for at most ``settle_deadline_s``, else left uncommitted for the next owner)."""
        async with self._lock:
            try:
                await self._flush()
                await self._settle(self.settle_deadline_s, f"partitions {sorted(partitions)} revoked")
                await self._commit_settled()
            except StoreError as exc:
                log.warning(
                    "partitions %s revoked with the store away (%s): uncommitted", sorted(partitions), exc
                )
            finally:
                for partition in partitions:
                    self._next_offsets.pop(partition, None)
                    if self._waiting is not None:
                        self._waiting.offsets.pop(partition, None)

    # -- the steps (call with the lock held)

    async def _take(self, records: list[BusRecord]) -> None:
        """Decode ``records`` into the pending batch; dead-letter the malformed ones."""
        for record in records:
            self._next_offsets[record.partition] = record.offset + 1
            try:
                events = decode_deliveries(record.value)
            except MalformedDelivery as exc:
                await self._dead_letter(record, str(exc))
                continue
            if events and not self._pending.events:
                self._pending.since = time.monotonic()
            self._pending.events.extend((record, e) for e in events)

    async def _drain(self) -> None:
        """Read what the in-process bus still holds, within ``settle_deadline_s``."""
        deadline = time.monotonic() + self.settle_deadline_s
        while time.monotonic() < deadline:
            records = await self.source.fetch(self.max_batch, 0.0)
            if not records:
                return
            await self._take(records)
            if len(self._pending.events) >= self.max_batch:
                await self._flush()

    async def _flush(self) -> None:
        """Store the pending batch, hand its matched events on, and commit its offsets (now, or once its
        notices are durable)."""
        batch, self._pending = self._pending.events, _Pending()
        ticket: asyncio.Future[None] | None = None
        if batch:
            stored = await self._store(batch)
            matched = [m.event for m in stored if m.matched]
            if matched and self.on_stored is not None:
                self.on_stored(matched)
            if matched and self.notices_durable is not None:
                ticket = asyncio.ensure_future(self.notices_durable())
        offsets = dict(self._next_offsets)
        if ticket is not None:
            # A ticket completes once everything handed on so far is durable: it covers the flush before.
            self._waiting = _Waiting(offsets, ticket)
        elif self._waiting is not None:
            self._waiting.offsets = offsets
        elif offsets:
            await self.source.commit(offsets)

    async def _store(self, batch: list[tuple[BusRecord, DeliveryEvent]]) -> list[Matched]:
        """Match, drop do-not-track, insert once; what was stored (nothing when the store refused the batch
        for good: its records are dead-lettered)."""
        events = [e for _, e in batch]
        give_up = self._give_up
        try:
            matched = await retrying(
                functools.partial(
                    asyncio.to_thread, match_all, self.store.query, self.store.database, events
                ),
                what=f"matching {len(events)} delivery events",
                backoff=STORE_BACKOFF,
                log=log,
                give_up=give_up,
            )
            kept = first_of_each([m for m in matched if not self._suppressed(m)])
            if kept:
                token = dedup_token(m.event.delivery_id for m in kept)
                rows = [row(m) for m in kept]
                await retrying(
                    functools.partial(self._insert_once, rows, token),
                    what=f"insert of {len(rows)} delivery events",
                    backoff=STORE_BACKOFF,
                    log=log,
                    give_up=give_up,
                )
        except StoreError as exc:
            if exc.retriable:
                raise  # stopping with the store away: left uncommitted
            log.error(  # noqa: TRY400 - the store's own words are the message; its traceback adds nothing
                "%d delivery events refused for good (%s): %s; their records go to the dead letters",
                len(events), exc.label, exc,
            )  # fmt: skip
            for record in dict.fromkeys(r for r, _ in batch):
                await self._dead_letter(record, f"the store refused the insert into {TABLE}: {exc.label}")
            return []
        self._count(kept)
        return kept

    def _give_up(self) -> bool:
        # Shutting down with the store away: Kafka replays what is uncommitted; the in-process bus cannot.
        return self._stopping.is_set() and not self.drain_on_stop

    def _suppressed(self, m: Matched) -> bool:
        dnt = self.do_not_track
        if dnt is None or not m.event.recipient or not dnt.suppressed(m.event.account, m.event.recipient):
            return False
        metrics.SUPPRESSED.inc()
        return True

    async def _insert_once(self, rows: list[list[object]], token: str) -> None:
        try:
            await asyncio.to_thread(self.store.insert, TABLE, COLUMNS, rows, dedup_token=token)
        except StoreError:
            self.store_ok = False
            metrics.STORE_UP.set(0)
            raise
        self.store_ok = True
        metrics.STORE_UP.set(1)

    def _count(self, stored: list[Matched]) -> None:
        metrics.BATCHES.inc()
        kinds: collections.Counter[tuple[str, str]] = collections.Counter()
        unmatched: collections.Counter[tuple[str, str]] = collections.Counter()
        now_ms = self.clock() * 1000
        for m in stored:
            e = m.event
            kinds[e.provider, e.event] += 1
            if not m.matched:
                unmatched[e.provider, REASON_LABELS[m.unmatched_reason]] += 1
            metrics.LAG.observe(max(0.0, now_ms - e.received_at_ms) / 1000)
        for (provider, event), count in kinds.items():
            metrics.STORED.labels(provider, event).inc(count)
        for (provider, reason), count in unmatched.items():
            metrics.UNMATCHED.labels(provider, reason).inc(count)

    async def _settle(self, deadline_s: float | None, why: str) -> None:
        """Wait for the waiting flush's ticket: at most ``deadline_s`` (None: until it completes or the loader
        is told to stop), with a warning every ``settle_log_s``."""

        def late(deadline: float) -> None:
            log.warning("%s: notices of stored delivery events not durable after %.1fs", why, deadline)

        def slow(waited: float) -> None:
            log.warning("%s: not durable for %.0fs; offsets stay uncommitted", why, waited)

        if self._waiting is not None:
            await settle(
                [self._waiting.ticket],
                deadline_s,
                stopping=self._stopping,
                log_every_s=self.settle_log_s,
                late=late,
                slow=slow,
            )

    async def _commit_settled(self) -> None:
        waiting = self._waiting
        if waiting is None or not waiting.ticket.done():
            return
        if waiting.failed:
            if not self._notices_lost:
                log.error(
                    "the notice path gave up on notices of stored delivery events: their offsets stay "
                    "uncommitted (read again after a restart)"
                )
            self._notices_lost = True
            return
        self._waiting = None
        if waiting.offsets:
            await self.source.commit(waiting.offsets)

    async def _dead_letter(self, record: BusRecord, reason: str) -> None:
        """`bus.dead_letters.dead_letter`, counted, given up when stopping."""
        metrics.DEAD_LETTERS.inc()
        await dead_letter(self.dead_letters, record, reason, give_up=self._stopping.is_set)
