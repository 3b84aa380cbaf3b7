"""The processor loop: read raw hits from the bus, classify them, store them, then commit.

Delivery order, per batch (at-least-once from the bus, idempotent into ClickHouse):

1. fetch records from the bus (`HitSource`);
2. decode, enrich and classify them (pure, in a worker thread so the event loop stays free);
   malformed records go to the dead-letter path with their reason and never stop the partition;
3. filter replay floods (`processors.flood`: more than 10 counted hits of one message's pixel or link from
   one network within 60 s); hold human-looking clicks in the burst window; release the ones whose window
   has closed. A partition read anew (a start, a rebalance) is first rewound by the flood filter's reach
   (65 s of event time before its first fetched hit, `KafkaSource.rewind`) and those records, up to where
   it was, are replayed into the flood filter alone: nothing of them is stored, notified, held or
   committed. So the filter's verdicts are the ones an uninterrupted run gives. Until it is past what the
   run before stored, a hit read again keeps the flood verdict it was stored with (one lookup in
   ClickHouse per fetch): the net for the cases the replay cannot agree (clocks further apart than the
   skew allowed, an eviction, other settings), so no hit is on both sides;
4. every ``flush_interval`` (or sooner when the batch is large) insert the rows into ClickHouse, each table
   with a deduplication token derived from the batch's hit ids (``reads``, the batch's read records,
   `processors.reads`: from their ``read_of``s) — retried with backoff (0.1 s doubling to
   5 s), for as long as the failure may pass (`StoreError.retriable`: the store away, slow or overloaded;
   nothing is committed meanwhile, so nothing is lost). A table's insert the store refuses for good (its
   schema lacks what the rows carry, a row holds a value its column refuses) is not retried: the hits of
   those rows go to the dead-letter path, one record per source record, with a reason naming the table and
   ClickHouse's error name and code, are counted (``pixelpipe_store_rejected_hits_total``), and their
   offsets are committed like any dead letter's: the partition goes on. They were not stored, so they make
   no notice. The tables are separate inserts: when ``events`` is stored and ``filtered_hits`` refused (or
   the other way round), the stored table's hits go on to step 5 and only the refused table's are
   dead-lettered. A crash before the commit replays the batch: the stored table's insert is deduplicated by
   its token, the refused one is refused again and its hits dead-lettered again (at least once);
5. hand the stored hits to ``on_stored`` (the notice hub) and take a ticket from ``notices_durable``: it
   completes once the notices of everything stored so far are durable (on Kafka: acknowledged on the
   ``enriched`` topic);
6. only then commit, per partition, the next offset to read — never at or past a click still held, never
   past a hit whose notice is not durable yet.

So: insert → notices acknowledged → commit. Step 6 does not hold up the loop: the next batch is fetched and
stored while the notices of the last one are on their way, and a flush's offsets are committed at the first
turn after its ticket completes. Only when more than ``max_unsettled`` flushes wait for their notices does
the loop stop fetching until the oldest completes (backpressure: the hub's queue stays far below its bound, so
it never drops a notice; a warning is logged every ``settle_log_s``). If that lasts longer than the consumer's
``max.poll.interval`` the member leaves the group (aiokafka's heartbeat task does that on its own), the
partitions are revoked and re-read by their next owner from the last commit; nothing is lost. A rebalance
(`on_revoked`) and a stop wait at most ``settle_deadline_s`` for the tickets, then leave the rest uncommitted.

A crash between 4 and 6 replays some hits: the same batch is deduplicated by its token, and counts use
uniqExact(hit_id) so a hit stored twice still counts once; its notices are published again (the webhook
outbox drops deliveries it has seen; live-feed receivers deduplicate on the notice id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from bus.dead_letters import DeadLetters, LogDeadLetters, dead_letter
from bus.port import BusRecord, HitSource
from bus.tickets import settle
from processors import metrics
from processors.aggregate import PendingAggregate, aggregate_row, judge, plan_aggregate_insert
from processors.flood import FLOOD, ReplayFlood
from processors.pipeline import HitProcessor, ProcessedHit
from processors.privacy import IpStorage
from processors.reads import OnReadsStored, RecentOpens, StoredRead, plan_read_insert, read_row
from processors.rows import InsertPlan, plan_inserts, row
from processors.window import ClickBurstWindow, Released
from schemas.aggregate_opens import MalformedAggregateOpen, decode_aggregate, is_aggregate_line
from schemas.backoff import Backoff, retrying
from schemas.errors import PixelpipeError
from schemas.events import MalformedHit, RawHit, decode_hit, encode_hit, join_hits, split_hits
from schemas.reads import MalformedRead, ReadRecord, decode_read, encode_read, is_read_line
from schemas.store import Store, StoreError
from schemas.suppression import DoNotTrack
from schemas.verdicts import Classification

log = logging.getLogger(__name__)

Stored = Sequence[tuple[ProcessedHit, Classification]]
NoticesDurable = Callable[[], Awaitable[None]]
STORE_BACKOFF: Final = Backoff(first_s=0.1, max_s=5.0)  # an insert or a lookup while the store is away


@runtime_checkable
class RewindableSource(Protocol):
    """A source that can read a partition again from further back (Kafka: `processors.kafka_source`)."""

    async def rewind(self, partition: int, since_ms: int, offset: int) -> int: ...


@dataclass(slots=True)
class _Pending:
    rows: dict[str, list[list[Any]]] = field(default_factory=dict)
    stored: list[tuple[ProcessedHit, Classification]] = field(default_factory=list)
    aggregates: list[PendingAggregate] = field(default_factory=list)  # issue 19: `processors.aggregate`
    reads: list[StoredRead] = field(default_factory=list)  # issue 18: `processors.reads`
    since: float = 0.0
    count: int = 0

    def add_aggregate(self, aggregate: PendingAggregate) -> None:
        if not self.count:
            self.since = time.monotonic()
        self.aggregates.append(aggregate)
        self.count += 1

    def add_read(self, read: StoredRead) -> None:
        if not self.count:
            self.since = time.monotonic()
        self.reads.append(read)
        self.count += 1

    def add(self, processed: ProcessedHit, classification: Classification, ip_storage: IpStorage) -> None:
        table, values = row(processed, classification, ip_storage)
        if not self.count:
            self.since = time.monotonic()
        self.rows.setdefault(table, []).append(values)
        self.stored.append((processed, classification))
        self.count += 1


@dataclass(slots=True)
class _Uncommitted:
    """A stored flush's offsets, waiting for its notices to be durable (``ticket`` None: nothing to wait)."""

    offsets: dict[int, int]
    ticket: asyncio.Future[None] | None

    @property
    def settled(self) -> bool:
        t = self.ticket
        return t is None or (t.done() and not t.cancelled() and t.exception() is None)

    @property
    def failed(self) -> bool:
        t = self.ticket
        return t is not None and t.done() and (t.cancelled() or t.exception() is not None)


class NoticesLost(PixelpipeError, RuntimeError):
    """The notice path gave up on notices of stored hits (it stopped): their offsets can never be
    committed by this runner. They stay uncommitted and are read again after a restart."""


class HitRunner:
    def __init__(
        self,
        *,
        source: HitSource,
        store: Store,
        processor: HitProcessor,
        ip_storage: IpStorage = "truncate",
        click_window_ms: int = 1500,
        flush_interval_s: float = 0.25,
        max_batch: int = 5000,
        dead_letters: DeadLetters | None = None,
        on_stored: Callable[[Stored], None] | None = None,
        notices_durable: NoticesDurable | None = None,
        max_unsettled: int = 4,
        settle_deadline_s: float = 5.0,
        settle_log_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        drain_on_stop: bool = False,
        do_not_track: DoNotTrack | None = None,
        flood: ReplayFlood | None = None,
        on_reads_stored: OnReadsStored | None = None,
        recent_opens: RecentOpens | None = None,
    ) -> None:
        """``on_reads_stored``: called with each flush's stored read records (`processors.reads`), right
        after ``on_stored``; ``recent_opens``: the opens' classifications kept for them.
        ``notices_durable``: called right after ``on_stored``; returns what completes once the notices of
        every hit handed to ``on_stored`` so far are durable (`notices.hub.NoticeHub.durable`). Offsets
        are committed only past flushes whose ticket completed. ``max_unsettled``: flushes allowed to wait
        for their notices before the loop stops fetching. ``settle_deadline_s``: how long a rebalance or a
        stop waits for tickets before leaving the rest uncommitted."""
        if max_unsettled < 0 or settle_deadline_s < 0 or settle_log_s <= 0:
            raise ValueError("max_unsettled and settle_deadline_s must be >= 0, settle_log_s > 0")
        self.source = source
        self.store = store
        self.processor = processor
        self.ip_storage = ip_storage
        self.window: ClickBurstWindow[ProcessedHit] = ClickBurstWindow(click_window_ms)
        self.flood = flood if flood is not None else ReplayFlood()
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.dead_letters = dead_letters or LogDeadLetters()
        self.on_stored = on_stored
        self.on_reads_stored = on_reads_stored
        self.recent_opens = recent_opens if recent_opens is not None else RecentOpens()
        self.notices_durable = notices_durable
        self.max_unsettled = max_unsettled
        self.settle_deadline_s = settle_deadline_s
        self.settle_log_s = settle_log_s
        self.clock = clock
        self._pending = _Pending()
        self._next_offsets: dict[int, int] = {}
        self._uncommitted: collections.deque[_Uncommitted] = collections.deque()
        # A rebalance runs `on_revoked` in aiokafka's coordinator task, concurrently with `step`: one at a
        # time processes, flushes or commits (else it could commit offsets of a batch `step` still inserts).
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.last_progress = time.monotonic()
        self.store_ok = True
        # The memory bus cannot replay: keep retrying on shutdown there. Kafka replays what is uncommitted.
        self.drain_on_stop = drain_on_stop
        self.do_not_track = do_not_track
        # Partitions read from since they were assigned (their flood state is complete from there on), and
        # the ones being replayed into the flood filter: partition -> the first offset to judge for real.
        self._warm: set[int] = set()
        self._replay_until: dict[int, int] = {}
        # Partitions whose records from the commit on may have been stored by the run before (the flushes
        # after its last commit): each hit of them keeps the flood verdict it was stored with.
        self._rereading: set[int] = set()

    async def run(self) -> None:
        """Run until `stop()`; then store what was processed and commit it."""
        await self.dead_letters.start()
        await self.source.start()
        try:
            while not self._stopping.is_set():
                await self.step()
            async with self._lock:
                if self.drain_on_stop:
                    # No replay is possible: judge held clicks on what was seen. (With Kafka they stay
                    # uncommitted and are judged again, with everything, after the restart.)
                    for released in self.window.flush_all():
                        self._pending.add(released.item, released.classification, self.ip_storage)
                try:
                    await self._flush_and_commit()
                    await self._settle(self._uncommitted, self.settle_deadline_s, "stopping")
                    await self._commit_settled()
                except StoreError as exc:
                    log.warning("stopping with the store away (%s): the last batch stays uncommitted", exc)
                except NoticesLost as exc:
                    log.warning("stopping: %s", exc)
                if self._uncommitted:
                    log.warning(
                        "stopping with the notices of %d flushes not durable: left uncommitted",
                        len(self._uncommitted),
                    )
        finally:
            await self.source.stop()
            await self.dead_letters.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def on_revoked(self, partitions: set[int]) -> None:
        """A rebalance takes partitions away: store and commit what was read from them while we still own
        them, and forget their held clicks (the new owner reads them again from below them). Notices not
        durable within ``settle_deadline_s`` leave their offsets uncommitted: the new owner stores those hits
        again (deduplicated) and publishes their notices again."""
        async with self._lock:
            try:
                await self._flush_and_commit()
                await self._settle(
                    self._uncommitted, self.settle_deadline_s, f"partitions {sorted(partitions)} revoked"
                )
                await self._commit_settled()
            except StoreError as exc:
                log.warning(
                    "partitions %s revoked with the store away (%s): left uncommitted",
                    sorted(partitions),
                    exc,
                )
            except NoticesLost as exc:
                log.warning("partitions %s revoked: %s", sorted(partitions), exc)
            finally:  # whatever happened, they are no longer ours
                self.window.forget_partitions(partitions)
                self.flood.forget_partitions(partitions)
                self._warm -= partitions
                self._rereading -= partitions
                for partition in partitions:
                    self._next_offsets.pop(partition, None)
                    self._replay_until.pop(partition, None)
                for entry in self._uncommitted:
                    for partition in partitions:
                        entry.offsets.pop(partition, None)

    async def step(self) -> None:
        """One turn of the loop: fetch, process, maybe flush and commit."""
        timeout = self.flush_interval_s
        if self._pending.count:
            timeout = max(0.0, self._pending.since + self.flush_interval_s - time.monotonic())
        records = await self.source.fetch(self.max_batch, timeout)
        async with self._lock:
            hits = 0
            if records:
                records = await self._rewind_fresh_partitions(records)
            if records:
                stored = await self._stored_floods(records) if self._rereading else {}
                bad, hits = await asyncio.to_thread(self._process, records, stored)
                for record, reason in bad:
                    metrics.DEAD_LETTERS.inc()
                    await self._dead_letter(record, reason)
            # A full fetch means a backlog. Counted in hits, not records: a record holds many hits, and a
            # fetch of a few records can be a backlog's worth. Behind, held clicks wait for the event-time
            # watermark, not the wall clock: their burst partners may still be unread.
            caught_up = len(records) < self.max_batch and hits < self.max_batch
            for released in self.window.release(int(self.clock() * 1000), caught_up=caught_up):
                self._pending.add(released.item, released.classification, self.ip_storage)
            metrics.HELD_CLICKS.set(len(self.window))
            metrics.FLOOD_BUCKETS.set(len(self.flood))
            self.last_progress = time.monotonic()
            due = self._pending.count and (
                self._pending.count >= self.max_batch
                or time.monotonic() - self._pending.since >= self.flush_interval_s
            )
            if due or (not self._pending.count and records):
                await self._flush_and_commit()
            elif self._uncommitted:
                await self._commit_settled()
        if len(self._uncommitted) > self.max_unsettled:
            # Backpressure: fetch nothing more until the oldest flush's notices are durable. Outside the
            # lock, so that a rebalance meanwhile can hand its partitions on.
            await self._settle(list(self._uncommitted)[:1], None, "backpressure")
            async with self._lock:
                await self._commit_settled()

    async def _rewind_fresh_partitions(self, records: list[BusRecord]) -> list[BusRecord]:
        """Before the first hit of a partition read since it was assigned is judged, give the flood filter
        what it knew there: rewind the source to the records of the filter's reach (window + skew) before
        the earliest hit of this fetch, and replay them into the filter alone (`_process`) up to the first
        record of this fetch. The fetched records of a rewound partition are dropped: they come again after
        the replay. Returns the records to process now. Call with the lock held."""
        fresh = {r.partition for r in records} - self._warm
        if not fresh:
            return records
        if not isinstance(self.source, RewindableSource):
            self._warm |= fresh  # the in-memory bus starts with its processor: nothing before to replay
            return records
        if not self.flood.limit:  # the rule is off: nothing to replay, but what was stored keeps its side
            self._warm |= fresh
            self._rereading |= fresh
            return records
        rewound = set()
        for partition in sorted(fresh):
            own = [r for r in records if r.partition == partition]
            earliest = min((h.received_at_ms for h in _decodable(own)), default=None)
            if earliest is None:
                continue  # no hit to date it by: these are dead letters; try again with the next records
            self._warm.add(partition)
            self._rereading.add(partition)
            first = own[0].offset
            start = await self.source.rewind(partition, earliest - self.flood.reach_ms, first)
            if start < first:
                self._replay_until[partition] = first
                rewound.add(partition)
                log.info(
                    "partition %d from offset %d: replaying offsets %d-%d into the flood filter first",
                    partition, first, start, first - 1,
                )  # fmt: skip
        return [r for r in records if r.partition not in rewound] if rewound else records

    async def _stored_floods(self, records: list[BusRecord]) -> dict[str, str]:
        """For the hits of ``records`` on partitions being read again, how each one already stored was
        stored: the reason of its filtered row, or "" when it was counted. The replay makes the filter agree
        with the run before; this makes a disagreement (edge clocks further apart than the skew allowed, an
        eviction, other settings) harmless: a hit read again keeps its side, so it never counts on both. A
        partition is past what the run before stored once the last open of a fetch (clicks may have been
        held, not stored) is not stored: that run stored the hits in order. Call with the lock held."""
        ids: dict[str, int] = {}
        last_open: dict[int, str] = {}
        for record in records:
            p = record.partition
            if p not in self._rereading or record.offset < self._replay_until.get(p, 0):
                continue
            for hit in _decodable([record]):
                ids[hit.hit_id] = p
                if hit.kind == "open" and not self._suppressed(hit):
                    # a suppressed hit is never stored: it says nothing of where the run before stopped
                    last_open[p] = hit.hit_id
        if not ids:
            return {}
        db = self.store.database
        sql = f"""SELECT hit_id, reason FROM {db}.filtered_hits WHERE hit_id IN {{ids:Array(String)}}
                  UNION ALL SELECT hit_id, '' FROM {db}.events WHERE hit_id IN {{ids:Array(String)}}"""  # noqa: S608 - db is a validated name; values are bound
        try:
            rows = await retrying(
                functools.partial(asyncio.to_thread, self.store.query, sql, {"ids": list(ids)}),
                what="looking up the stored verdicts of hits read again",
                backoff=STORE_BACKOFF,
                log=log,
                give_up=self._stopping.is_set,
            )
        except StoreError as exc:
            if exc.retriable:
                raise  # stopping with the store away
            # No retry fixes it (the tables lack what the lookup reads): go on without the net; the
            # inserts that follow meet the same schema and dead-letter their hits.
            log.error(  # noqa: TRY400 - the store's own words are the message; its traceback adds nothing
                "looking up the stored verdicts of hits read again failed for good (%s): %s", exc.label, exc
            )
            return {}
        stored: dict[str, str] = {}
        for hit_id, reason in rows:
            if stored.get(hit_id) != FLOOD.reason:  # stored on both sides by an older version: filtered wins
                stored[hit_id] = str(reason)
        for p, hit_id in last_open.items():
            if hit_id not in stored:
                self._rereading.discard(p)  # past what was stored before: the filter alone from here on
        return stored

    def _suppressed(self, hit: RawHit) -> bool:
        """Whether ``hit``'s recipient is on do-not-track here: such a hit is never stored or judged."""
        dnt = self.do_not_track
        return dnt is not None and hit.token_ok and dnt.suppressed_hex(hit.recipient_tag)

    def _replay(self, record: BusRecord, raw: bytes) -> None:
        """Judge a hit read before the committed offset again, for the flood filter's state only: it was
        stored (or dead-lettered, or suppressed) by the run that read it first; nothing of it is stored,
        notified or committed now."""
        if is_read_line(raw):
            return  # a read record takes no part in the flood filter; it was stored by the run before
        try:
            hit = decode_hit(raw)
        except MalformedHit:
            return
        if self._suppressed(hit):
            return  # as `_process` does: a suppressed hit never took part
        c = self.flood.classify(self.processor.process(hit, record.source), record.partition)
        if hit.kind == "open" and hit.token_ok:
            self.recent_opens.remember(hit.hit_id, c)  # for its read record, which may come after the replay

    def _take_read(self, record: BusRecord, raw: bytes) -> str | None:
        """Decode a read record and queue it for the next flush, unless its recipient is on do-not-track;
        the reason when it is no read record (a dead letter, as a malformed hit)."""
        try:
            read = decode_read(raw)
        except MalformedRead as exc:
            return str(exc)
        dnt = self.do_not_track
        if dnt is not None and dnt.suppressed_hex(read.recipient_tag):
            metrics.READS.labels("suppressed").inc()  # opted out after the edge published it: never stored
            return None
        self._pending.add_read(StoredRead(read, record.source, self.recent_opens.get(read.read_of)))
        return None

    def _take_aggregate(self, record: BusRecord, raw: bytes) -> list[tuple[BusRecord, str]]:
        """Judge an aggregate open, queue its row for the next flush; its dead letter if it is malformed."""
        try:
            aggregate = decode_aggregate(raw)
        except MalformedAggregateOpen as exc:
            return [(dataclasses.replace(record, value=raw), str(exc))]
        judged = aggregate_row(aggregate, judge(self.processor, aggregate, record.source))
        self._pending.add_aggregate(PendingAggregate(judged, raw, record.source))
        return []

    def _process(
        self, records: list[BusRecord], stored: Mapping[str, str]
    ) -> tuple[list[tuple[BusRecord, str]], int]:
        """Decode, process and window the hits of ``records``: the ones to dead-letter, and how many hits
        were read. ``stored``: hits read again, how they were stored (`_stored_floods`)."""
        bad = []
        hits = 0
        for record, raw in _hits_of(records):
            hits += 1
            until = self._replay_until.get(record.partition)
            if until is not None:
                if record.offset < until:
                    self._replay(record, raw)
                    continue
                del self._replay_until[record.partition]  # replayed: judge from here on
            self._next_offsets[record.partition] = record.offset + 1
            if is_aggregate_line(raw):  # a campaign pixel's open, naming nobody (`processors.aggregate`)
                bad.extend(self._take_aggregate(record, raw))
                continue
            if is_read_line(raw):
                reason = self._take_read(record, raw)
                if reason is not None:
                    bad.append((_line_of(record, raw), reason))
                continue
            try:
                hit = decode_hit(raw)
            except MalformedHit as exc:
                # One bad hit of a record of many is dead-lettered alone, with the record's position.
                bad.append((_line_of(record, raw), str(exc)))
                continue
            if self._suppressed(hit):
                metrics.SUPPRESSED.inc()  # opted out after the edge published it: still never stored
                continue
            processed = self.processor.process(hit, record.source)
            c = _stored_side(processed, self.flood.classify(processed, record.partition), stored)
            released: list[Released[ProcessedHit]]
            if hit.kind == "click" and hit.token_ok:
                released = self.window.admit(
                    key=processed.message_key,
                    at_ms=hit.received_at_ms,
                    link_index=hit.link_index,
                    item=processed,
                    classification=c,
                    partition=record.partition,
                    offset=record.offset,
                )
            else:
                released = [Released(processed, c)]
            if hit.kind == "open" and hit.token_ok:
                self.recent_opens.remember(hit.hit_id, c)  # for the read record that may follow
            for r in released:
                self._pending.add(r.item, r.classification, self.ip_storage)
        return bad, hits

    def _commit_offsets(self) -> dict[int, int]:
        held = self.window.held_offsets()
        return {p: min(o, held.get(p, o)) for p, o in self._next_offsets.items()}

    async def _flush_and_commit(self) -> None:
        """Store what is pending, queue its offsets behind its notices' ticket, commit what is settled.
        Call with the lock held."""
        pending, self._pending = self._pending, _Pending()
        ticket: asyncio.Future[None] | None = None
        if pending.count:
            stored, reads = await self._store(pending)
            now_ms = self.clock() * 1000
            kinds: collections.Counter[tuple[str, str]] = collections.Counter()
            for processed, classification in stored:
                kinds[processed.hit.kind, classification.verdict.value] += 1
                metrics.VISIBLE_LAG.observe(max(0.0, now_ms - processed.hit.received_at_ms) / 1000)
            for (kind, verdict), count in kinds.items():  # labels() costs more than inc(): once per pair
                metrics.HITS.labels(kind, verdict).inc(count)
            if stored and self.on_stored is not None:
                self.on_stored(stored)
            if reads:
                metrics.READS.labels("stored").inc(len(reads))
                if self.on_reads_stored is not None:
                    self.on_reads_stored(reads)
            if (stored or reads) and self.notices_durable is not None:
                ticket = asyncio.ensure_future(self.notices_durable())
        offsets = self._commit_offsets()
        if offsets:
            if ticket is None and self._uncommitted:
                # Nothing new to notify: these offsets only wait for the flushes before them.
                self._uncommitted[-1].offsets.update(offsets)
            else:
                self._uncommitted.append(_Uncommitted(offsets, ticket))
        await self._commit_settled()

    async def _store(self, pending: _Pending) -> tuple[Stored, list[StoredRead]]:
        """Insert what is pending (hits, the campaign pixel's opens, read records), each table under its own
        deduplication token; dead-letter what a table refused for good. The hits and reads stored."""
        plans = plan_inserts(pending.rows)
        aggregates = plan_aggregate_insert([a.row for a in pending.aggregates])
        read_plan = plan_read_insert([read_row(r.record, r.source) for r in pending.reads])
        if read_plan is not None:
            plans.append(read_plan)
        refused = await self._insert([*plans, aggregates] if aggregates else plans)
        if aggregates is not None and (failed := refused.get(aggregates.table)) is not None:
            why = f"the store refused the insert into {aggregates.table}: {failed.label}"
            for a in pending.aggregates:
                await self._dead_letter(_record_at(a.source, a.line), why)
        stored = await self._dead_letter_refused(pending.stored, refused) if refused else pending.stored
        reads = pending.reads
        if read_plan is not None and read_plan.table in refused:
            await self._dead_letter_reads(reads, refused[read_plan.table])
            reads = []
        return stored, reads

    async def _commit_settled(self) -> None:
        """Commit the offsets of the leading flushes whose notices are durable, in order. Call with the lock
        held."""
        offsets: dict[int, int] = {}
        while self._uncommitted and self._uncommitted[0].settled:
            offsets.update(self._uncommitted.popleft().offsets)
        metrics.UNSETTLED_FLUSHES.set(len(self._uncommitted))
        if self._uncommitted and self._uncommitted[0].failed:
            raise NoticesLost(
                f"the notice path gave up on notices of stored hits; {len(self._uncommitted)} flushes "
                "stay uncommitted"
            )
        if offsets:
            await self.source.commit(offsets)

    async def _settle(self, entries: Iterable[_Uncommitted], deadline_s: float | None, why: str) -> None:
        """Wait until the tickets of ``entries`` complete or ``deadline_s`` passes (None: until they do, or
        the runner is told to stop); log a warning every ``settle_log_s`` meanwhile."""

        def late(deadline: float) -> None:
            log.warning("%s: notices of stored hits not durable after %.1fs", why, deadline)

        def slow(waited: float) -> None:
            log.warning(
                "%s: notices of %d stored flushes not durable for %.0fs; their offsets stay "
                "uncommitted (is the enriched topic reachable?)",
                why, len(self._uncommitted), waited,
            )  # fmt: skip

        tickets = [e.ticket for e in entries if e.ticket is not None]
        await settle(
            tickets, deadline_s, stopping=self._stopping, log_every_s=self.settle_log_s, late=late, slow=slow
        )

    async def _insert(self, plans: list[InsertPlan]) -> dict[str, StoreError]:
        """Insert every plan, retrying the same batch (same dedup tokens) while the failure may pass; the
        tables whose insert the store refused for good, with the refusal."""
        refused: dict[str, StoreError] = {}
        for plan in plans:
            try:
                await retrying(
                    functools.partial(self._insert_once, plan),
                    what=f"insert of {len(plan.rows)} rows into {plan.table}",
                    backoff=STORE_BACKOFF,
                    log=log,
                    # shutting down with the store away: leave it uncommitted for a replay
                    give_up=lambda: self._stopping.is_set() and not self.drain_on_stop,
                )
            except StoreError as exc:
                if exc.retriable:
                    raise
                log.error(  # noqa: TRY400 - the store's own words are the message; its traceback adds nothing
                    "insert of %d rows into %s refused for good (%s): %s; their hits go to the dead letters",
                    len(plan.rows), plan.table, exc.label, exc,
                )  # fmt: skip
                refused[plan.table] = exc
        return refused

    async def _insert_once(self, plan: InsertPlan) -> None:
        try:
            await asyncio.to_thread(
                self.store.insert, plan.table, plan.columns, plan.rows, dedup_token=plan.dedup_token
            )
        except StoreError as exc:
            self.store_ok = False
            metrics.STORE_UP.set(0)
            metrics.INSERT_FAILURES.labels(str(exc.retriable).lower()).inc()
            raise
        self.store_ok = True
        metrics.STORE_UP.set(1)
        metrics.ROWS.labels(plan.table).inc(len(plan.rows))

    async def _dead_letter_refused(self, pending: Stored, refused: Mapping[str, StoreError]) -> Stored:
        """Send the hits of the refused tables' rows to the dead letters, one record per source record (its
        hits as decoded, newline-delimited), with the table and the store's error; the hits that were
        stored."""
        stored = []
        by_record: dict[tuple[str, str], list[RawHit]] = {}
        for processed, classification in pending:
            table = row(processed, classification, self.ip_storage)[0]
            if table in refused:
                by_record.setdefault((processed.source, table), []).append(processed.hit)
            else:
                stored.append((processed, classification))
        for (source, table), hits in by_record.items():
            exc = refused[table]
            reason = f"the store refused the insert into {table}: {exc.label}"
            await self._dead_letter(_record_at(source, join_hits([encode_hit(h) for h in hits])), reason)
            code = "none" if exc.code is None else str(exc.code)
            metrics.STORE_REFUSED.labels(table, code, exc.name or "none").inc(len(hits))
        return stored

    async def _dead_letter_reads(self, reads: Sequence[StoredRead], exc: StoreError) -> None:
        """Send read records whose insert the store refused for good to the dead letters, one record per
        source record (its read records, newline-delimited), as `_dead_letter_refused` does for hits."""
        by_source: dict[str, list[ReadRecord]] = {}
        for read in reads:
            by_source.setdefault(read.source, []).append(read.record)
        reason = f"the store refused the insert into reads: {exc.label}"
        for source, records in by_source.items():
            await self._dead_letter(_record_at(source, join_hits([encode_read(r) for r in records])), reason)
        code = "none" if exc.code is None else str(exc.code)
        metrics.STORE_REFUSED.labels("reads", code, exc.name or "none").inc(len(reads))

    async def _dead_letter(self, record: BusRecord, reason: str) -> None:
        """`bus.dead_letters.dead_letter`, given up when stopping."""
        await dead_letter(self.dead_letters, record, reason, give_up=self._stopping.is_set)


def _record_at(source: str, value: bytes) -> BusRecord:
    """A record of ``value`` at the position ``source`` names (`BusRecord.source`: topic:partition:offset;
    a Kafka topic name has no ':')."""
    topic, partition, offset = source.rsplit(":", 2)
    return BusRecord(value, int(partition), int(offset), topic)


def _stored_side(processed: ProcessedHit, c: Classification, stored: Mapping[str, str]) -> Classification:
    """``c`` (the flood filter's), or, for a hit read again, the side it is stored on (`_stored_floods`):
    a flood stays one, a counted hit stays counted."""
    before = stored.get(processed.hit.hit_id)
    if before is not None and processed.classification.verdict.counted:
        if before == FLOOD.reason:
            return FLOOD
        if not before:
            return processed.classification
    return c


def _line_of(record: BusRecord, raw: bytes) -> BusRecord:
    """``record`` with only its line ``raw`` (one bad line of many is dead-lettered alone)."""
    return record if raw is record.value else dataclasses.replace(record, value=raw)


def _decodable(records: list[BusRecord]) -> Iterator[RawHit]:
    """The hits of ``records`` that decode (read records are no hits)."""
    for _, raw in _hits_of(records):
        if is_read_line(raw):
            continue
        with contextlib.suppress(MalformedHit):
            yield decode_hit(raw)


def _hits_of(records: list[BusRecord]) -> Iterator[tuple[BusRecord, bytes]]:
    """Each line of each record (a record holds one or more: `schemas.events.join_hits`; a line is a hit or
    a read record, `schemas.reads.is_read_line`), with its record."""
    for record in records:
        for raw in split_hits(record.value):
            yield record, raw
