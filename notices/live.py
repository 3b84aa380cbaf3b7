"""The live feed: the last notices of each account in this process, and the streams that follow them.

Owns the per-account rings (`_Ring`), the event ids (``EPOCH-SEQ``, `parse_event_id`) and resuming after a
``Last-Event-ID`` (`LiveFeed.stream`, the `schemas.live.LiveNotices` the API is given). Must never hold
anything up: a slow reader only falls behind in the ring, and a stream never sees another account's notices.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson
from prometheus_client import Gauge

from schemas.live import LiveItem
from schemas.notices import REMINDER_NOTICE_TYPES, Notice, notice_data

LIVE_STREAMS = Gauge("pixelpipe_live_streams", "Open GET /v1/live streams")
REMINDERS_KEPT = 100_000  # reminder notice ids remembered, so one emitted twice is shown once


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
        # Reminder notices (issue 20) taken, by id: a reminder emitted again (a crash between its emission
        # and its record, `notices.reminders`) is the same notice, and shown once.
        self._reminders: collections.OrderedDict[str, None] = collections.OrderedDict()
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
            if n.type in REMINDER_NOTICE_TYPES and not self._first_reminder(n.id):
                continue
            self._seq += 1
            ring = self._rings.get(n.account)
            if ring is None:
                ring = self._rings[n.account] = _Ring(collections.deque(maxlen=self.ring_size))
            if len(ring.entries) == self.ring_size:
                ring.evicted_through = ring.entries[0][0]
            ring.entries.append((self._seq, n.type, n, n.recipient_tag))
            woken.add(n.account)

    def _first_reminder(self, notice_id: str) -> bool:
        if notice_id in self._reminders:
            return False
        self._reminders[notice_id] = None
        while len(self._reminders) > REMINDERS_KEPT:
            self._reminders.popitem(last=False)
        return True

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
