"""Real-time notices of counted hits: the notice hub, the live feed, and webhook delivery.

Owns turning stored hits into notices (`notices_of`, `MessageLookup`), the hub that the processor loop hands
each stored batch to (`NoticeHub.publish`, its ``on_stored`` callback), the per-account ring buffers behind
`GET /v1/live` (`LiveFeed`), webhook signatures (`sign`, `verify`), the retry schedule (`RetryPolicy`), the
durable outbox of deliveries (`Outbox`, SQLite in the data dir) and the sender (`WebhookDispatcher`).

Must never: block or raise in `NoticeHub.publish` (the processor calls it between its insert and its commit);
let an endpoint's failure or slowness reach the processor (endpoints wait on the outbox, never on the hub: the
hub's sinks are the ``enriched`` topic's producer or the outbox and the live feed; the hub's queue is bounded:
past the bound a batch is dropped and counted in ``pixelpipe_notices_dropped_total``); send a notice to
another account's webhook or stream. On Kafka the processor commits raw offsets only once `NoticeHub.durable`
says the notices of what it stored were handed to every sink (`processors.runner`).

Where the pieces run: in one process (in-process bus) the hub's sinks are `LiveFeed.accept` and
`WebhookDispatcher.accept`. In Kafka mode the processor's hub has one sink, the producer of the ``enriched``
topic (`processors.notice_bus`); the dispatcher is fed by its own consumer group (``pixelpipe-notify``) and
each API process's live feed by a group-less tail of the same topic.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import heapq
import hmac
import logging
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx
import orjson
from prometheus_client import Counter, Gauge

from processors.pipeline import ProcessedHit
from processors.webhook_transport import GuardedBackend, GuardedTransport, Resolver, system_resolver
from schemas.notices import (
    DELIVERY_COLUMNS,
    NOTICE_VERSION,
    Notice,
    Webhook,
    created_at_iso,
    notice_data,
    notice_type,
    wanted_by,
)
from schemas.store import Store, StoreError
from schemas.tokens import Keyring
from schemas.verdicts import Classification
from schemas.webhook_guard import BlockedTarget, check_url
from schemas.webhook_secrets import SecretUnreadable, unseal
from schemas.wire import fast_constructor, fast_replace

log = logging.getLogger(__name__)

T = TypeVar("T")
Stored = Sequence[tuple[ProcessedHit, Classification]]
NoticeSink = Callable[[Sequence[Notice]], Awaitable[None]]

NOTICES = Counter("pixelpipe_notices_total", "Notices made from stored hits", ["type"])
NOTICES_DROPPED = Counter("pixelpipe_notices_dropped_total", "Notices dropped: the hub's queue was full")
WEBHOOK_ATTEMPTS = Counter("pixelpipe_webhook_attempts_total", "Webhook delivery attempts", ["status"])
OUTBOX_PENDING = Gauge("pixelpipe_webhook_outbox_pending", "Webhook deliveries waiting in the outbox")
LIVE_STREAMS = Gauge("pixelpipe_live_streams", "Open GET /v1/live streams")
MAX_PASS: Final = 5000  # stored hits the hub takes on in one pass


# -- notices from stored hits ------------------------------------------------------------------------------


# Once per counted hit each: a frozen dataclass's __init__ and dataclasses.replace cost 3x these.
_notice: Final = fast_constructor(Notice)
_completed: Final = fast_replace(Notice, "recipient", "first")


def notices_of(stored: Stored, created_at_ms: int) -> list[Notice]:
    """The notices of a stored batch, in stored order; hits that count nowhere make none. Pure."""
    notices = []
    for processed, classification in stored:
        hit, agent = processed.hit, processed.agent
        kind = notice_type(hit.kind, classification.verdict.value)
        if kind is None:
            continue
        notices.append(
            _notice(
                id=hit.hit_id,
                type=kind,
                account=hit.account,
                campaign_id=hit.campaign_id,
                message_id=hit.message_id,
                at_ms=hit.received_at_ms,
                created_at_ms=created_at_ms,
                verdict=classification.verdict.value,
                reason=classification.reason,
                via_proxy=classification.via_proxy,
                sent_at_ms=hit.sent_at * 1000,
                link_index=hit.link_index,
                url=hit.url,
                client=agent.client,
                device=agent.device,
                os=agent.os,
                country=processed.geo.country,
                recipient_tag=hit.recipient_tag,
                first=False,
                recipient="",
                v=NOTICE_VERSION,
            )
        )
    return notices


@dataclass(slots=True)
class _Facts:
    recipient: str | None = None  # None: not looked up yet
    first_open: str | None = None  # hit id of the message's first human open, once one is stored
    recipient_tag: str = ""  # the hits' recipient tag (hex): how an erasure by tag finds the message


class MessageLookup:
    """Adds what a hit does not carry: the recipient (from ``sends``) and ``first`` (from ``events``).

    ``first`` is asked of ClickHouse after the batch is stored — the earliest human open by ``received_at``
    (ties by hit id) — rather than remembered, so a restart or a replay gives the same answer. Known answers
    are kept in a bounded LRU: the first open of a message never changes once stored (short of an
    out-of-order hit from the edge's spool older than it, which then is marked first too). Blocking: run it in
    a worker thread.
    """

    def __init__(self, store: Store, cache_size: int = 100_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[tuple[str, str], _Facts] = collections.OrderedDict()
        self._lock = threading.Lock()  # `forget` comes from another thread than `complete`

    def complete(self, notices: Sequence[Notice]) -> list[Notice]:
        want_recipient: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        want_first: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        for n in notices:
            facts = self._facts(n.message_key)
            facts.recipient_tag = n.recipient_tag or facts.recipient_tag
            if facts.recipient is None:
                want_recipient[(n.account, n.campaign_id)].add(n.message_id)
            if n.type == "open" and facts.first_open is None:
                want_first[(n.account, n.campaign_id)].add(n.message_id)
        db = self.store.database
        for (account, campaign_id), messages in want_recipient.items():
            rows = self.store.query(
                f"""SELECT message_id, any(recipient) FROM {db}.sends
                    WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
                      AND message_id IN {{messages:Array(String)}}
                    GROUP BY message_id""",  # noqa: S608 - db is a validated name; values are bound
                {"account": account, "campaign_id": campaign_id, "messages": sorted(messages)},
            )
            found = dict(rows)
            for message_id in messages:
                self._facts((account, message_id)).recipient = str(found.get(message_id, ""))
        for (account, campaign_id), messages in want_first.items():
            rows = self.store.query(
                f"""SELECT message_id, argMin(hit_id, (received_at, hit_id)) FROM {db}.events
                    WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
                      AND message_id IN {{messages:Array(String)}} AND kind = 'open' AND verdict = 'human'
                    GROUP BY message_id""",  # noqa: S608 - db is a validated name; values are bound
                {"account": account, "campaign_id": campaign_id, "messages": sorted(messages)},
            )
            for message_id, first_open in rows:
                self._facts((account, message_id)).first_open = str(first_open)
        completed = []
        for n in notices:
            facts = self._facts(n.message_key)
            first = n.type == "open" and facts.first_open == n.id
            completed.append(_completed(n, recipient=facts.recipient or "", first=first))
        return completed

    def __len__(self) -> int:
        """Messages whose facts are kept."""
        return len(self._cache)

    def forget(self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()) -> int:
        """Drop what is kept of an erased recipient's messages (by id, or by the hits' recipient tag).
        Returns how many messages were forgotten."""
        tags, messages = frozenset(recipient_tags), frozenset(message_ids)
        with self._lock:
            gone = [
                key
                for key, facts in self._cache.items()
                if key[0] == account and (key[1] in messages or facts.recipient_tag in tags)
            ]
            for key in gone:
                del self._cache[key]
        return len(gone)

    def _facts(self, key: tuple[str, str]) -> _Facts:
        with self._lock:
            facts = self._cache.get(key)
            if facts is None:
                facts = self._cache[key] = _Facts()
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            return facts


# -- the hub -----------------------------------------------------------------------------------------------


class NoticeHub:
    """Takes each stored batch from the processor and hands its notices to the sinks, in stored order.

    `publish` only appends to a bounded queue (``max_queued`` stored hits) and returns; the hub's own task
    makes the notices, completes them (`MessageLookup`, in a worker thread) and awaits each sink in turn.
    A sink that raises is retried with backoff (the queue fills meanwhile, and past its bound batches are
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
        max_queued: int = 100_000,
        clock: Callable[[], float] = time.time,
        retry_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if max_queued <= 0:
            raise ValueError("max_queued must be positive")
        self.lookup = lookup
        self.sinks: list[NoticeSink] = list(sinks)
        self.max_queued = max_queued
        self.clock = clock
        self._retry_min, self._retry_max = retry_s
        self._queue: collections.deque[tuple[int, Stored]] = collections.deque()  # (sequence, batch)
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
        if not stored:
            return
        # The bound is against falling behind: a batch is always taken when nothing else waits.
        if self._queue and self._queued + len(stored) > self.max_queued:
            self.dropped += len(stored)
            NOTICES_DROPPED.inc(len(stored))
            log.warning("notice queue full: dropped a batch of %d stored hits", len(stored))
            return
        self._published += 1
        self._queue.append((self._published, stored))
        self._queued += len(stored)
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
            log.warning("notice hub: %d stored hits not handed on at stop", self._queued)
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
            stored: list[tuple[ProcessedHit, Classification]] = []
            upto = self._settled
            while self._queue and (not stored or len(stored) + len(self._queue[0][1]) <= MAX_PASS):
                upto, batch = self._queue.popleft()
                self._queued -= len(batch)
                stored.extend(batch)
            notices = notices_of(stored, int(self.clock() * 1000))
            if notices:
                if self.lookup is not None:
                    notices = await self._retrying("message lookup", self._complete, notices)
                for kind, count in collections.Counter(n.type for n in notices).items():
                    NOTICES.labels(kind).inc(count)
                for sink in self.sinks:
                    await self._retrying(getattr(sink, "__qualname__", "sink"), sink, notices)
            self._settle(upto)

    async def _complete(self, notices: Sequence[Notice]) -> list[Notice]:
        assert self.lookup is not None  # noqa: S101 - checked by the caller
        return await asyncio.to_thread(self.lookup.complete, notices)

    async def _retrying(
        self, what: str, step: Callable[[Sequence[Notice]], Awaitable[T]], notices: Sequence[Notice]
    ) -> T:
        delay = self._retry_min
        while True:
            try:
                return await step(notices)
            except Exception as exc:  # any sink (SQLite, Kafka, a lookup): retried, never fatal to the hub
                if self._stopping:
                    raise
                log.warning("notice hub: %s failed (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)


# -- the live feed -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One thing to write on a live stream: an event (``id``, ``event``, ``data``) or a comment."""

    id: str | None = None
    event: str | None = None
    data: bytes | None = None
    comment: str | None = None
    retry_ms: int | None = None


@dataclass(slots=True)
class _Ring:
    # (sequence, type, notice, recipient tag): the notice is turned into JSON when a stream reads it, so a
    # process with nobody streaming (most of the time) pays only the append
    entries: collections.deque[tuple[int, str, Notice, str]]
    evicted_through: int = 0  # the highest sequence number pushed out of this ring

    def after(self, seq: int) -> list[tuple[int, str, Notice, str]]:
        newer = []
        for entry in reversed(self.entries):
            if entry[0] <= seq:
                break
            newer.append(entry)
        newer.reverse()
        return newer


def parse_event_id(text: str | None) -> tuple[int, int] | None:
    """``EPOCH-SEQ`` → (epoch, seq); anything else → None."""
    epoch, sep, seq = (text or "").strip().partition("-")
    # isascii: str.isdigit also takes digits int() refuses (superscripts), and other scripts' digits.
    if not sep or not (epoch + seq).isascii() or not epoch.isdigit() or not seq.isdigit():
        return None
    return int(epoch), int(seq)


class LiveFeed:
    """The last ``ring_size`` notices of each account, and the streams that follow them.

    Each notice gets the next number of this process's sequence; an event's id is ``EPOCH-SEQ`` where EPOCH is
    when the feed was made (ms), so ids only grow within a process. A stream resumes after ``Last-Event-ID``
    from the ring; when it cannot tell that nothing was missed (the id is from another process or a restart,
    or older than the ring holds) it first sends a ``gap`` event, and what the ring holds (receivers
    deduplicate on ``data.id``). A slow reader never holds anything up: streams read the ring at their own
    pace, and one that falls a whole ring behind gets a ``gap``.
    """

    def __init__(
        self, *, ring_size: int = 10_000, heartbeat_s: float = 15.0, clock: Callable[[], float] = time.time
    ) -> None:
        if ring_size <= 0 or heartbeat_s <= 0:
            raise ValueError("ring_size and heartbeat_s must be positive")
        self.ring_size = ring_size
        self.heartbeat_s = heartbeat_s
        self.epoch = int(clock() * 1000)
        self._seq = 0
        self._rings: dict[str, _Ring] = {}
        self._streams: dict[str, set[asyncio.Event]] = collections.defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lock = threading.Lock()  # `forget` runs on an API worker thread

    def accept_now(self, notices: Iterable[Notice]) -> None:
        """Append to the accounts' rings and wake their streams. Non-blocking; call on the event loop."""
        woken: set[str] = set()
        with self._lock:
            self._append(notices, woken)
        for account in woken:
            for wake in self._streams.get(account, ()):
                wake.set()

    def _append(self, notices: Iterable[Notice], woken: set[str]) -> None:
        for n in notices:
            self._seq += 1
            ring = self._rings.get(n.account)
            if ring is None:
                ring = self._rings[n.account] = _Ring(collections.deque(maxlen=self.ring_size))
            if len(ring.entries) == self.ring_size:
                ring.evicted_through = ring.entries[0][0]
            ring.entries.append((self._seq, n.type, n, n.recipient_tag))
            woken.add(n.account)

    async def accept(self, notices: Sequence[Notice]) -> None:
        """As a hub sink."""
        self.accept_now(notices)

    def held(self, account: str) -> int:
        """How many of the account's notices the ring holds for resumes."""
        ring = self._rings.get(account)
        return len(ring.entries) if ring is not None else 0

    def forget(self, account: str, recipient_tags: Iterable[str]) -> int:
        """Drop an erased recipient's notices from the account's ring (resumed streams never see them
        again); how many were dropped. From any thread."""
        tags = {tag for tag in recipient_tags if tag}
        with self._lock:
            ring = self._rings.get(account)
            if ring is None or not tags:
                return 0
            kept = [entry for entry in ring.entries if entry[3] not in tags]
            dropped = len(ring.entries) - len(kept)
            if dropped:
                ring.entries = collections.deque(kept, maxlen=ring.entries.maxlen)
            return dropped

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def close(self) -> None:
        """End every stream (at shutdown, before the server waits for open connections)."""
        self._closed = True
        for streams in self._streams.values():
            for wake in streams:
                wake.set()

    def close_soon(self) -> None:
        """`close` from any thread or a signal handler."""
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    async def stream(
        self,
        account: str,
        *,
        last_event_id: str | None = None,
        types: frozenset[str] = frozenset({"open", "click"}),
    ) -> AsyncIterator[LiveItem]:
        """The account's notices of ``types`` after ``last_event_id`` (or from now), then as they come."""
        self._loop = asyncio.get_running_loop()
        ring = self._rings.get(account)
        resume = parse_event_id(last_event_id)
        gap: str | None = None
        if resume is None and not (last_event_id or "").strip():
            after = self._seq
        elif resume is None:  # an id this feed never gave: resume as from an unknown one (as `0-0` does)
            after = 0
            gap = "Last-Event-ID is not an id of this feed"
        elif resume[0] == self.epoch:
            after = min(resume[1], self._seq)
            if ring is not None and after < ring.evicted_through:
                gap = "older than this server keeps"
        else:
            after = 0  # another process's (or an earlier run's) id: send what is kept
            gap = "the stream was served by another process or before a restart"
        wake = asyncio.Event()
        self._streams[account].add(wake)
        LIVE_STREAMS.inc()
        try:
            yield LiveItem(comment="connected", retry_ms=2000)
            if gap is not None:
                yield LiveItem(event="gap", data=orjson.dumps({"reason": gap}))
            while not self._closed:
                wake.clear()  # before reading: a notice that lands while we yield sets it again
                ring = self._rings.get(account)
                for seq, kind, notice, _ in ring.after(after) if ring is not None else ():
                    after = seq
                    if kind in types:
                        data = orjson.dumps(notice_data(notice))
                        yield LiveItem(id=self.event_id(seq), event=kind, data=data)
                if self._closed:
                    break
                try:
                    await asyncio.wait_for(wake.wait(), timeout=self.heartbeat_s)
                except TimeoutError:
                    yield LiveItem(comment="keepalive")
        finally:
            self._streams[account].discard(wake)
            LIVE_STREAMS.dec()


# -- webhook signatures and retries ------------------------------------------------------------------------

SIGNATURE_HEADER: Final = "Pixelpipe-Signature"
DELIVERY_HEADER: Final = "Pixelpipe-Delivery-Id"
EVENT_HEADER: Final = "Pixelpipe-Event-Id"
ATTEMPT_HEADER: Final = "Pixelpipe-Attempt"
SIGNATURE_TOLERANCE_S: Final = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`` (Stripe's scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: any ``v1`` matches and ``t`` is within ``tolerance_s`` of now."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    macs = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not macs:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, mac) for mac in macs)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``first_delay_s`` after the first failure, doubling, capped at ``max_delay_s``;
    ``max_attempts`` attempts in all. The defaults (1 s … 512 s, then every 10 min, 16 attempts) keep trying
    for 67 minutes. ``jitter`` adds up to that fraction of each delay (never less: the span only grows)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 600.0
    max_attempts: int = 16
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.first_delay_s <= 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")
        if self.max_attempts < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need max_attempts >= 1 and 0 <= jitter <= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based), without jitter."""
        return float(min(self.first_delay_s * 2 ** min(failures - 1, 62), self.max_delay_s))

    def schedule(self) -> list[float]:
        """Every wait between attempts, in order."""
        return [self.delay(n) for n in range(1, self.max_attempts)]

    @property
    def span_s(self) -> float:
        """From the first attempt to the last, at least (without jitter)."""
        return sum(self.schedule())


# -- deliveries and the outbox -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice for one webhook. ``lane``: deliveries of one lane go out one at a time, in order."""

    delivery_id: str
    webhook_id: str
    lane: str
    notice_id: str
    account: str
    message_id: str
    type: str
    body: bytes
    recipient_tag: str = ""  # hex; how an erasure finds the delivery ("" in rows from before it was kept)


def delivery_id(webhook_id: str, notice_id: str) -> str:
    """Deterministic: the same notice for the same webhook is the same delivery, however often it comes."""
    return "dlv_" + hashlib.sha256(f"{webhook_id}\x1f{notice_id}".encode()).hexdigest()[:32]


def webhook_body(notice: Notice) -> bytes:
    """``{"id", "type", "created_at", "data"}``; ``id`` is the notice's (the hit's) id, for deduplication."""
    return orjson.dumps(
        {
            "id": notice.id,
            "type": notice.type,
            "created_at": created_at_iso(notice),
            "data": notice_data(notice),
        }
    )


def plan_deliveries(
    notices: Iterable[Notice], webhooks_of: Callable[[str], Sequence[Webhook]]
) -> list[Delivery]:
    """Every (notice, webhook) pair the webhook's account and events ask for, in notice order. Pure."""
    deliveries = []
    for n in notices:
        body: bytes | None = None
        for webhook in webhooks_of(n.account):
            if webhook.account != n.account or not wanted_by(webhook.events, n):
                continue
            body = body or webhook_body(n)
            deliveries.append(
                Delivery(
                    delivery_id=delivery_id(webhook.webhook_id, n.id),
                    webhook_id=webhook.webhook_id,
                    lane=f"{webhook.webhook_id}\x1f{n.account}\x1f{n.message_id}",
                    notice_id=n.id,
                    account=n.account,
                    message_id=n.message_id,
                    type=n.type,
                    body=body,
                    recipient_tag=n.recipient_tag,
                )
            )
    return deliveries


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    seq: int
    delivery: Delivery
    attempts: int
    next_attempt_at: float


_OUTBOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT NOT NULL UNIQUE,
    webhook_id      TEXT NOT NULL,
    lane            TEXT NOT NULL,
    notice_id       TEXT NOT NULL,
    account         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    created_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries (lane, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (finished_at) WHERE state != 'pending';
"""
# Applied in order to an outbox whose ``PRAGMA user_version`` is below their number (1-based); an outbox from
# before a migration stays readable, its old rows get the new column's default.
_OUTBOX_MIGRATIONS: Final = (
    # 1: the recipient's tag, so that an erasure finds their deliveries (`Outbox.forget`).
    (
        "ALTER TABLE deliveries ADD COLUMN recipient_tag TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS deliveries_recipient ON deliveries (account, recipient_tag)",
    ),
)


class Outbox:
    """Webhook deliveries on disk (SQLite, WAL): pending ones until they are delivered or given up, finished
    ones for ``keep_finished_s`` so that a replayed notice is not delivered again. Blocking and not
    thread-safe: the dispatcher calls it from one thread of its own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A deleted row's bytes are zeroed, not left in a free page: erasure (`forget`) must leave the file.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_OUTBOX_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for number, statements in enumerate(_OUTBOX_MIGRATIONS, start=1):
            with self._transaction():  # a migration and its version number: both or neither
                if int(self._db.execute("PRAGMA user_version").fetchone()[0]) >= number:
                    continue
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")

    def add(self, deliveries: Sequence[Delivery], now: float) -> set[str]:
        """Insert; a delivery already known (pending or recently finished) is ignored. The lanes that got
        one. Synced to disk before it returns: the caller may commit its source after this."""
        self._db.execute("PRAGMA synchronous=FULL")
        before = self._db.total_changes
        lanes: set[str] = set()
        with self._transaction():
            for d in deliveries:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (delivery_id, webhook_id, lane, notice_id, account, "
                    "message_id, type, body, next_attempt_at, created_at, recipient_tag) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (d.delivery_id, d.webhook_id, d.lane, d.notice_id, d.account, d.message_id, d.type,
                     d.body, now, now, d.recipient_tag),
                )  # fmt: skip
                if cursor.rowcount:
                    lanes.add(d.lane)
        # Updates of attempts may be lost at a power cut (the delivery is then sent again): no fsync each.
        self._db.execute("PRAGMA synchronous=NORMAL")
        log.debug("outbox: %d of %d deliveries new", self._db.total_changes - before, len(deliveries))
        return lanes

    def head(self, lane: str) -> PendingDelivery | None:
        row = self._db.execute(
            "SELECT seq, delivery_id, webhook_id, lane, notice_id, account, message_id, type, body, "
            "recipient_tag, attempts, next_attempt_at FROM deliveries WHERE lane = ? AND state = 'pending' "
            "ORDER BY seq LIMIT 1",
            (lane,),
        ).fetchone()
        if row is None:
            return None
        return PendingDelivery(row[0], Delivery(*row[1:10]), row[10], row[11])

    def heads(self) -> list[tuple[str, float]]:
        """Every lane with something pending, and when its first delivery is due."""
        rows = self._db.execute(
            "SELECT d.lane, d.next_attempt_at FROM deliveries d JOIN "
            "(SELECT lane, min(seq) AS first FROM deliveries WHERE state = 'pending' GROUP BY lane) h "
            "ON d.seq = h.first"
        ).fetchall()
        return [(str(lane), float(at)) for lane, at in rows]

    def retry_at(self, seq: int, attempts: int, next_attempt_at: float) -> None:
        self._db.execute(
            "UPDATE deliveries SET attempts = ?, next_attempt_at = ? WHERE seq = ?",
            (attempts, next_attempt_at, seq),
        )

    def finish(self, seq: int, state: str, attempts: int, now: float) -> None:
        self._db.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, finished_at = ? WHERE seq = ?",
            (state, attempts, now, seq),
        )

    def purge(self, finished_before: float) -> int:
        cursor = self._db.execute(
            "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?", (finished_before,)
        )
        return cursor.rowcount

    def forget(
        self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()
    ) -> dict[str, int]:
        """Delete an erased recipient's deliveries, pending and finished, found by recipient tag or by
        message id (rows from before tags were kept have only the latter). Counts by state."""
        tags, messages = sorted(set(recipient_tags)), sorted(set(message_ids))
        counts: collections.Counter[str] = collections.Counter()
        with self._transaction():
            for column, values in (("recipient_tag", tags), ("message_id", messages)):
                for start in range(0, len(values), 500):
                    chunk = values[start : start + 500]
                    where = f"account = ? AND {column} IN ({','.join('?' * len(chunk))})"
                    rows = self._db.execute(
                        f"SELECT state, count(*) FROM deliveries WHERE {where} GROUP BY state",  # noqa: S608 - no values in it
                        (account, *chunk),
                    ).fetchall()
                    counts.update({str(state): int(n) for state, n in rows})
                    self._db.execute(f"DELETE FROM deliveries WHERE {where}", (account, *chunk))  # noqa: S608
        if counts:  # the WAL still holds the rows as they were written: into the file, and the WAL emptied
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return dict(counts)

    def messages_of(self, account: str, recipient_tags: Iterable[str]) -> list[str]:
        """The message ids of these recipients' deliveries (an erasure by tag: which attempts not to log)."""
        tags = sorted(set(recipient_tags))
        found: set[str] = set()
        for start in range(0, len(tags), 500):
            chunk = tags[start : start + 500]
            rows = self._db.execute(
                "SELECT DISTINCT message_id FROM deliveries "  # noqa: S608 - no values in it
                f"WHERE account = ? AND recipient_tag IN ({','.join('?' * len(chunk))})",
                (account, *chunk),
            ).fetchall()
            found.update(str(m) for (m,) in rows)
        return sorted(found)

    def pending(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0])

    def states(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


# -- the directory of webhooks -----------------------------------------------------------------------------


def store_webhooks(store: Store, keyring: Keyring) -> Callable[[], list[Webhook]]:
    """A loader of every live webhook from the ``webhooks`` table (blocking), with its secret unsealed
    (`schemas.webhook_secrets`; a row from before sealing holds it plain). A secret that does not open leaves
    the webhook with an empty one, which `WebhookDispatcher` refuses to sign with; it is logged once."""
    unreadable: set[str] = set()

    def open_secret(account: str, webhook_id: str, stored: str) -> str:
        try:
            return unseal(keyring, stored, account=account, webhook_id=webhook_id)
        except SecretUnreadable as exc:
            if webhook_id not in unreadable:
                unreadable.add(webhook_id)
                log.error(  # noqa: TRY400 - the reason is the message; a traceback would add nothing
                    "webhooks: the secret of %s (account %s) cannot be read: %s", webhook_id, account, exc
                )
            return ""

    def load() -> list[Webhook]:
        rows = store.query(
            f"""SELECT account, webhook_id, url, events, secret, created_at
                FROM {store.database}.webhooks FINAL WHERE NOT deleted"""  # noqa: S608 - a validated name
        )
        return [Webhook(a, w, u, tuple(e), open_secret(a, w, s), c) for a, w, u, e, s, c in rows]

    return load


class WebhookDirectory:
    """Every live webhook, reloaded at most every ``refresh_s`` (a new or deleted webhook takes effect within
    that). A failed reload keeps the last list; with no list yet, `fresh` raises `StoreError`, so that
    notices are not matched against nothing (the caller retries them)."""

    def __init__(
        self,
        load: Callable[[], Sequence[Webhook]],
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.clock = clock
        self._by_account: dict[str, list[Webhook]] = {}
        self._by_id: dict[str, Webhook] = {}
        self._loaded_at: float | None = None
        self._lock: asyncio.Lock | None = None

    async def fresh(self) -> None:
        if self._loaded_at is not None and self.clock() - self._loaded_at < self.refresh_s:
            return
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._loaded_at is not None and self.clock() - self._loaded_at < self.refresh_s:
                return
            try:
                webhooks = await asyncio.to_thread(self._load)
            except StoreError as exc:
                if self._loaded_at is None:
                    raise
                log.warning("webhooks: could not reload the directory (%s); keeping the last one", exc)
                self._loaded_at = self.clock()
                return
            by_account: dict[str, list[Webhook]] = collections.defaultdict(list)
            for w in webhooks:
                by_account[w.account].append(w)
            self._by_account = dict(by_account)
            self._by_id = {w.webhook_id: w for w in webhooks}
            self._loaded_at = self.clock()

    def of_account(self, account: str) -> list[Webhook]:
        return self._by_account.get(account, [])

    def get(self, webhook_id: str) -> Webhook | None:
        return self._by_id.get(webhook_id)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


# -- the dispatcher ----------------------------------------------------------------------------------------


class AttemptLog:
    """Buffers one row per attempt for the ``webhook_deliveries`` table; `flush` inserts them. Bounded: when
    the store is away the oldest rows go first (it is a log; the outbox holds the state)."""

    def __init__(self, store: Store | None, max_rows: int = 50_000) -> None:
        self.store = store
        self.max_rows = max_rows
        self._rows: collections.deque[list[Any]] = collections.deque(maxlen=max_rows)
        # Erased messages (account, message id) -> until when: an attempt that was in flight during the
        # erasure is not logged after it (the API deletes the logged rows once the outbox forgot them).
        self._erased: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # `forget` comes from the API's thread
        # Held while a flush's rows are on their way to the store: `forget` waits for them, so the delete
        # that follows it (api.erasure_residue) finds them stored rather than missing rows still in flight.
        self._flushing = threading.Lock()

    def record(
        self,
        *,
        pending: PendingDelivery,
        attempt: int,
        status: str,
        response_code: int,
        error: str,
        at: float,
        next_attempt_at: float | None,
        duration_ms: int,
    ) -> None:
        if self.store is None:
            return
        d = pending.delivery
        row = [
            d.account, d.webhook_id, d.delivery_id, d.notice_id, d.message_id, d.type, attempt, status,
            response_code, error, datetime.fromtimestamp(at, UTC),
            None if next_attempt_at is None else datetime.fromtimestamp(next_attempt_at, UTC), duration_ms,
        ]  # fmt: skip
        with self._lock:
            if (d.account, d.message_id) not in self._erased:
                self._rows.append(row)

    async def flush(self) -> None:
        if self.store is None or not self._rows:
            return
        await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        assert self.store is not None  # noqa: S101 - flush checked
        with self._flushing:
            with self._lock:
                rows = list(self._rows)
                self._rows.clear()
            if not rows:
                return
            try:
                self.store.insert("webhook_deliveries", DELIVERY_COLUMNS, rows)
            except StoreError as exc:
                log.warning("webhooks: could not log %d attempts (%s); keeping them", len(rows), exc)
                with self._lock:  # not those of messages erased meanwhile
                    self._rows.extendleft(r for r in reversed(rows) if (r[0], r[4]) not in self._erased)

    def forget(self, account: str, message_ids: Iterable[str], keep_s: float = 3600.0) -> int:
        """Drop the unflushed rows of erased messages and log none of theirs for ``keep_s``; how many. Waits
        for a flush in progress (blocking: never from the event loop's thread)."""
        now = time.monotonic()
        with self._flushing, self._lock:
            self._erased = {key: until for key, until in self._erased.items() if until > now}
            self._erased.update(dict.fromkeys(((account, m) for m in message_ids), now + keep_s))
            kept = [r for r in self._rows if (r[0], r[4]) not in self._erased]
            dropped = len(self._rows) - len(kept)
            self._rows.clear()
            self._rows.extend(kept)
        return dropped


@dataclass(frozen=True, slots=True)
class _Outcome:
    next_due: float | None  # None: the lane goes on at once


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one attempt got: the status code (0: no answer), what went wrong, and whether trying again can
    help (a target the SSRF rule refuses is failed at once, not retried)."""

    status_code: int
    error: str = ""
    retriable: bool = True


class WebhookDispatcher:
    """Delivers notices to webhooks over HTTP, at least once, in order per message, with retries.

    Delivery order and guarantees:

    1. `accept` plans one delivery per (notice, matching webhook of the notice's account), with a
       deterministic id, and writes them to the outbox (SQLite, fsync'd) before it returns; a delivery id
       already in the outbox (a replayed notice, pending or finished within ``keep_finished_s``) is ignored.
       In Kafka mode the consumer commits only after `accept` returned.
    2. Deliveries of one webhook and one message form a lane; a lane sends one delivery at a time, oldest
       first, and the next only once the one before it was delivered or given up. Lanes run concurrently
       (at most ``max_in_flight`` in all, ``max_in_flight_per_webhook`` per webhook), so one failing endpoint
       holds up only its own lanes, and never the processor.
    3. An attempt is ``POST url`` with the JSON body ``{"id", "type", "created_at", "data"}`` and the headers
       ``Pixelpipe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
       ``Pixelpipe-Delivery-Id``, ``Pixelpipe-Event-Id`` (= body ``id``) and ``Pixelpipe-Attempt``. A 2xx
       answer within ``timeout_s`` delivers it; anything else (another status, a timeout, a refused
       connection; redirects are not followed) is a failure, retried on ``policy`` (1 s, 2 s, 4 s … 10 min,
       for over an hour by default), then given up (``failed``). A delivery whose webhook was deleted is
       dropped (``cancelled``). A target the SSRF rule refuses (`schemas.webhook_guard`: checked on the URL,
       then on every address at connect time, see `processors.webhook_transport`) is ``failed`` at once,
       with the reason as its error; unless ``allow_private``, only public addresses are called.
    4. Every attempt is logged to ``webhook_deliveries`` (when a store is given). A stop cancels attempts in
       flight; they stay pending in the outbox and are sent again at the next start — so a receiver may see
       a delivery twice and deduplicates on the body's ``id``.
    """

    def __init__(
        self,
        *,
        outbox_path: Path,
        directory: WebhookDirectory,
        policy: RetryPolicy | None = None,
        attempt_log: AttemptLog | None = None,
        timeout_s: float = 10.0,
        max_in_flight: int = 64,
        max_in_flight_per_webhook: int = 4,
        keep_finished_s: float = 86_400.0,
        housekeeping_s: float = 1.0,
        sweep_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "pixelpipe-webhooks/0.1",
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.outbox_path = outbox_path
        self.directory = directory
        self.policy = policy or RetryPolicy()
        self.attempt_log = attempt_log or AttemptLog(None)
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_webhook = max_in_flight_per_webhook
        self.keep_finished_s = keep_finished_s
        self.housekeeping_s = housekeeping_s
        self.sweep_s = sweep_s
        self.clock = clock
        self._transport = transport  # given (tests): used as it is; by default a `GuardedTransport`
        self._user_agent = user_agent
        self.allow_private = allow_private
        self._resolver = resolver
        self._rng = random.SystemRandom()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._outbox: Outbox | None = None
        self._client: httpx.AsyncClient | None = None
        self._due: list[tuple[float, str]] = []  # heap of (due at, lane); stale entries are skipped
        self._scheduled: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._per_webhook: dict[str, asyncio.Semaphore] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.delivered = 0
        self.failed = 0

    # -- lifecycle

    async def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pixelpipe-outbox")
        self._outbox = await self._call(Outbox, self.outbox_path)
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=32)
        backend = GuardedBackend(allow_private=self.allow_private, resolver=self._resolver)
        self._client = httpx.AsyncClient(
            transport=self._transport or GuardedTransport(backend, limits=limits),
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy and no .netrc credentials from the environment
            headers={"User-Agent": self._user_agent, "Content-Type": "application/json"},
        )
        self._wake = asyncio.Event()
        try:
            await self.directory.fresh()
        except StoreError as exc:  # start anyway: `accept` raises (and is retried) until the store answers
            log.warning("webhooks: the directory is not loaded yet (%s)", exc)
        heads = await self._call(self._outbox.heads)
        for lane, due in heads:
            self._schedule(lane, due)
        if heads:
            log.info("webhooks: %d lanes pending in the outbox from an earlier run", len(heads))
        self._task = asyncio.create_task(self._dispatch(), name="pixelpipe-webhooks")

    async def stop(self, deadline_s: float = 3.0) -> None:
        """Let attempts in flight finish within ``deadline_s`` (the rest stay pending), then close."""
        if self._task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        await asyncio.wait({self._task}, timeout=1.0)
        running = set(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=deadline_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self.attempt_log.flush()
        if self._client is not None:
            await self._client.aclose()
        if self._outbox is not None:
            await self._call(self._outbox.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- intake

    async def accept(self, notices: Sequence[Notice]) -> None:
        """As a hub sink (or the Kafka consumer's handler): durable in the outbox when it returns."""
        await self.directory.fresh()
        deliveries = plan_deliveries(notices, self.directory.of_account)
        if not deliveries:
            return
        assert self._outbox is not None  # noqa: S101 - start() opened it
        lanes = await self._call(self._outbox.add, deliveries, self.clock())
        now = self.clock()
        for lane in lanes:
            if lane not in self._running and lane not in self._scheduled:
                self._schedule(lane, now)

    async def pending(self) -> int:
        assert self._outbox is not None  # noqa: S101
        return await self._call(self._outbox.pending)

    def forget(
        self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()
    ) -> concurrent.futures.Future[dict[str, int]]:
        """`Outbox.forget` on the outbox's thread, from any thread (a lane finds its deleted head gone)."""
        assert self._executor is not None  # noqa: S101 - start() made it
        assert self._outbox is not None  # noqa: S101
        tags, messages = list(recipient_tags), list(message_ids)
        outbox = self._outbox

        def purge() -> dict[str, int]:
            # Erased by tag too (another process's erasure, through the privacy topic): their attempts
            # neither. Here, off the event loop: `AttemptLog.forget` waits for a flush in progress.
            self.attempt_log.forget(account, [*messages, *outbox.messages_of(account, tags)])
            return outbox.forget(account, tags, messages)

        return self._executor.submit(purge)

    async def states(self) -> dict[str, int]:
        """Outbox rows by state (pending, delivered, failed, cancelled)."""
        assert self._outbox is not None  # noqa: S101
        return await self._call(self._outbox.states)

    # -- the loop

    def _schedule(self, lane: str, at: float) -> None:
        current = self._scheduled.get(lane)
        if current is not None and current <= at:
            return
        self._scheduled[lane] = at
        heapq.heappush(self._due, (at, lane))
        if self._wake is not None:
            self._wake.set()

    async def _dispatch(self) -> None:
        assert self._wake is not None  # noqa: S101 - start() made it
        assert self._outbox is not None  # noqa: S101
        next_housekeeping = next_sweep = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            now = self.clock()
            while self._due and len(self._running) < self.max_in_flight:
                at, lane = self._due[0]
                if at > now:
                    break
                heapq.heappop(self._due)
                if self._scheduled.get(lane) != at or lane in self._running:
                    continue  # superseded by an earlier schedule, or already going
                del self._scheduled[lane]
                task = asyncio.create_task(self._run_lane(lane), name=f"webhook-lane-{lane[:40]}")
                self._running[lane] = task
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + self.housekeeping_s
                await self._housekeeping()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_s
                # Heals a lane the in-memory schedule lost track of (it never should; cheap insurance).
                for lane, due in await self._call(self._outbox.heads):
                    if lane not in self._running:
                        self._schedule(lane, due)
            timeout = self.housekeeping_s
            if self._due and len(self._running) < self.max_in_flight:
                timeout = min(timeout, max(0.0, self._due[0][0] - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _housekeeping(self) -> None:
        assert self._outbox is not None  # noqa: S101
        await self.attempt_log.flush()
        await self._call(self._outbox.purge, self.clock() - self.keep_finished_s)
        OUTBOX_PENDING.set(await self._call(self._outbox.pending))

    async def _run_lane(self, lane: str) -> None:
        """Send the lane's deliveries in order until it is empty or its head waits for a retry."""
        assert self._outbox is not None  # noqa: S101
        next_due: float | None = None
        try:
            while not self._stopping:
                head = await self._call(self._outbox.head, lane)
                if head is None:
                    break
                if head.next_attempt_at > self.clock():
                    next_due = head.next_attempt_at
                    break
                outcome = await self._attempt(head)
                if outcome.next_due is not None:
                    next_due = outcome.next_due
                    break
        except Exception:
            log.exception("webhooks: lane %r failed; trying again in 5 s", lane)
            next_due = self.clock() + 5.0
        finally:
            del self._running[lane]
            if next_due is not None and not self._stopping:
                self._schedule(lane, next_due)
            elif self._wake is not None:
                self._wake.set()  # a slot is free

    async def _attempt(self, head: PendingDelivery) -> _Outcome:
        assert self._outbox is not None  # noqa: S101 - start() opened it
        assert self._client is not None  # noqa: S101
        d = head.delivery
        await self.directory.fresh()  # a webhook deleted meanwhile is seen within refresh_s
        webhook = self.directory.get(d.webhook_id)
        now = self.clock()
        if webhook is None:
            await self._call(self._outbox.finish, head.seq, "cancelled", head.attempts, now)
            self.attempt_log.record(
                pending=head, attempt=head.attempts, status="cancelled", response_code=0,
                error="webhook deleted", at=now, next_attempt_at=None, duration_ms=0,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("cancelled").inc()
            return _Outcome(None)
        attempt = head.attempts + 1
        semaphore = self._per_webhook.setdefault(
            d.webhook_id, asyncio.Semaphore(self.max_in_flight_per_webhook)
        )
        async with semaphore:
            started = time.monotonic()
            answer = await self._post(webhook, head, attempt)
            duration_ms = int((time.monotonic() - started) * 1000)
        status_code, error = answer.status_code, answer.error
        now = self.clock()
        if 200 <= status_code < 300:
            await self._call(self._outbox.finish, head.seq, "delivered", attempt, now)
            self.attempt_log.record(
                pending=head, attempt=attempt, status="delivered", response_code=status_code, error="",
                at=now, next_attempt_at=None, duration_ms=duration_ms,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("delivered").inc()
            self.delivered += 1
            return _Outcome(None)
        if attempt >= self.policy.max_attempts or not answer.retriable:
            await self._call(self._outbox.finish, head.seq, "failed", attempt, now)
            self.attempt_log.record(
                pending=head, attempt=attempt, status="failed", response_code=status_code, error=error,
                at=now, next_attempt_at=None, duration_ms=duration_ms,
            )  # fmt: skip
            WEBHOOK_ATTEMPTS.labels("failed").inc()
            self.failed += 1
            log.warning(
                "webhooks: gave up on %s to %s after %d attempts (%s)",
                d.delivery_id,
                webhook.url,
                attempt,
                error,
            )
            return _Outcome(None)
        delay = self.policy.delay(attempt)
        next_due = now + delay + self._rng.uniform(0, delay * self.policy.jitter)
        await self._call(self._outbox.retry_at, head.seq, attempt, next_due)
        self.attempt_log.record(
            pending=head, attempt=attempt, status="retrying", response_code=status_code, error=error,
            at=now, next_attempt_at=next_due, duration_ms=duration_ms,
        )  # fmt: skip
        WEBHOOK_ATTEMPTS.labels("retrying").inc()
        log.info("webhooks: %s to %s failed (%s); attempt %d in %.1fs", d.delivery_id, webhook.url, error,
                 attempt + 1, next_due - now)  # fmt: skip
        return _Outcome(next_due)

    async def _post(self, webhook: Webhook, head: PendingDelivery, attempt: int) -> _Answer:
        """One HTTP attempt: the status code (0 when there was no answer) and what went wrong."""
        assert self._client is not None  # noqa: S101
        d = head.delivery
        if not webhook.secret:
            return _Answer(0, "the signing secret cannot be read with the keys in PIXELPIPE_SECRET")
        try:  # again here: rows from before the rule, or from an API that allowed what this one does not
            check_url(webhook.url, allow_private=self.allow_private)
        except BlockedTarget as exc:
            return _Answer(0, f"refused: {exc}"[:500], retriable=False)
        headers = {
            SIGNATURE_HEADER: sign(webhook.secret, int(self.clock()), d.body),
            DELIVERY_HEADER: d.delivery_id,
            EVENT_HEADER: d.notice_id,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._client.stream("POST", webhook.url, content=d.body, headers=headers) as response:
                read = 0
                # Drain a little of the answer, so the connection can be reused; never all of a huge one.
                async for chunk in response.aiter_raw() if not response.is_stream_consumed else _nothing():
                    read += len(chunk)
                    if read > 65_536:
                        break
                code = response.status_code
        except BlockedTarget as exc:  # raised by `GuardedBackend` at connect time, after resolving the name
            return _Answer(0, f"refused: {exc}"[:500], retriable=False)
        except httpx.HTTPError as exc:
            return _Answer(0, f"{type(exc).__name__}: {exc}"[:500])
        return _Answer(code, "" if 200 <= code < 300 else f"HTTP {code}")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an outbox call on the outbox's own thread (SQLite connections stay on one thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


# -- the notice path of one process, assembled -------------------------------------------------------------


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Notifications:
    """What one process runs of the notice path, started and stopped in the order that loses nothing.

    Start: dispatcher (opens the outbox) → producers → hub → consumers. Stop, after the processor has drained:
    live streams end → the hub hands on what is queued → consumers → dispatcher → producers.
    """

    hub: NoticeHub | None = None
    live: LiveFeed | None = None
    dispatcher: WebhookDispatcher | None = None
    producers: list[Service] = dataclasses.field(default_factory=list)
    consumers: list[Service] = dataclasses.field(default_factory=list)

    def listeners(self) -> list[Callable[[Stored], None]]:
        """What the processor's ``on_stored`` must call."""
        return [self.hub.publish] if self.hub is not None else []

    def durable(self) -> asyncio.Future[None]:
        """The processor's ``notices_durable`` ticket: `NoticeHub.durable`, or done at once without a hub."""
        if self.hub is not None:
            return self.hub.durable()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def start(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.start()
        for producer in self.producers:
            await producer.start()
        if self.hub is not None:
            await self.hub.start()
        for consumer in self.consumers:
            await consumer.start()

    async def stop(self) -> None:
        if self.live is not None:
            self.live.close()
        if self.hub is not None:
            await self.hub.stop()
        for consumer in self.consumers:
            await consumer.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        for producer in self.producers:
            await producer.stop()


def in_process(
    store: Store,
    outbox_path: Path,
    *,
    keyring: Keyring,
    allow_private: bool = False,
    policy: RetryPolicy | None = None,
    heartbeat_s: float = 15.0,
    refresh_s: float = 1.0,
) -> Notifications:
    """One process with the in-process bus: the hub feeds the live feed and the dispatcher directly."""
    live = LiveFeed(heartbeat_s=heartbeat_s)
    dispatcher = WebhookDispatcher(
        outbox_path=outbox_path,
        directory=WebhookDirectory(store_webhooks(store, keyring), refresh_s=refresh_s),
        policy=policy,
        attempt_log=AttemptLog(store),
        allow_private=allow_private,
    )
    hub = NoticeHub(lookup=MessageLookup(store), sinks=[live.accept, dispatcher.accept])
    return Notifications(hub=hub, live=live, dispatcher=dispatcher)
