"""The replay-flood rule: one client fetching one message's pixel (or one of its links) over and over.

A person opens an email a few times at most in a minute, and a mail client may fetch the pixel twice on one
open; a script replaying a pixel URL fetches it thousands of times. So, per *bucket* — one message's pixel,
or one link of it, from one network (the client address's /24, or /48 for IPv6: what is stored of it) — a
counted hit (human or machine) is filtered as ``bot``/``replay_flood`` when the bucket's ``limit`` (10)
previous counted-looking hits all fall within ``window_ms`` (60 s) before it. Every such hit counts in the
bucket, filtered or not, so a flood stays filtered for as long as it lasts and the first ``limit`` hits of
it stay counted: ``unique_opens`` never changes, and 10,000 fetches in 10 s make exactly 10 opens. Hits
already judged bots or invalid take no part (they are filtered anyway).

Why not the message alone: one message belongs to one recipient, but a forwarded email is read by its new
readers from their own networks; and why not the exact address: an IPv6 client picks a new address within
its /64 at will, and a host of a /24 is as good as another to a script.

Event time (the edge's ``received_at``), and the hits of a message arrive on one partition in order, so the
same hits read again in the same order are judged the same way. The only state is the bucket's last
``limit`` event times; a bucket whose newest hit is older than the window (plus ``skew_ms``) behind the newest
hit of its partition is dropped, so memory is bounded by the hits of one window (and by ``max_buckets`` in
any case). Pure: no I/O, no clock.

Across a crash or a rebalance: a hit's verdict depends only on the hits of its partition within `reach_ms`
(window + skew) of event time before it, so the runner, reading a partition anew, first replays the records
of that reach before its first hit into this filter alone (`processors.runner.HitRunner`, rewinding with
`processors.kafka_source.KafkaSource.rewind`): the state is then what an uninterrupted run had, as is every
verdict, of a hit read again or a new one. Chosen over the alternatives because it is exact and bounded:
seeding from what ClickHouse stored would need each hit's network and partition order (the stored address
may be hashed or dropped, and erasure deletes rows); keeping the stored verdict of a hit read again settles
the hits the run before stored, but not the new ones after them, which would start from empty buckets (up to
``limit`` more counted per bucket); rewinding by a number of records is unbounded in time, by time is bounded
by a minute of the partition's traffic. The runner keeps the stored verdict of a hit read again as well, for
the cases the replay cannot agree (see `ReplayFlood`).
"""

from __future__ import annotations

import itertools
from typing import Final

from processors.pipeline import ProcessedHit
from schemas.events import RawHit
from schemas.verdicts import Classification, Verdict

FLOOD: Final = Classification(Verdict.BOT, "replay_flood")
_COUNTED: Final = frozenset(v for v in Verdict if v.counted)  # a set lookup: `counted` is a call per hit
DEFAULT_LIMIT: Final = 10
DEFAULT_WINDOW_MS: Final = 60_000


def bucket_key(hit: RawHit, network: str) -> int:
    """The bucket of a hit: its account, message, kind and link, and the network it came from (``network``:
    the /24 or /48 of its address; the address text when it is not one). A hash, not the tuple: a bucket is
    kept for a minute for every hit, and an int costs a fraction of five strings. Two buckets colliding (one
    chance in 2**64 per pair) would only share a limit."""
    return hash((hit.account, hit.message_id, hit.kind, hit.link_index, network))


class _Partition:
    """One partition's buckets (bucket -> its last event time, or its last ``limit`` times) and the newest
    event time read from it. Per partition, not per processor: a partition's verdicts then depend on its own
    hits only, whichever other partitions its consumer owns and however far behind they are."""

    __slots__ = ("buckets", "next_sweep_ms", "watermark_ms")

    def __init__(self) -> None:
        self.buckets: dict[int, int | list[int]] = {}
        self.watermark_ms = 0
        self.next_sweep_ms = 0


class ReplayFlood:
    """Per bucket, the event times of its last ``limit`` hits; `admit` says whether one more is counted.

    State is per partition (a message's hits are all on one), so a partition that is revoked is forgotten
    with it. A partition's verdicts are a function of its own hits in order: the verdict of a hit depends only
    on the counted hits of its bucket read before it whose event time is within the window before it. So
    after a restart or a rebalance the runner replays that much of the partition into this filter first (the
    records of the ``window_ms + skew_ms`` before the first one it has to judge: `processors.runner`), and
    every hit, read again or new, gets the verdict an uninterrupted run gave it or would have. Exact as long
    as a partition's hits are never more than ``skew_ms`` out of event-time order (the edges' clocks agree
    within it), ``max_buckets`` is not reached (an eviction is lenient: see `_evict`), the reach is still in
    the topic's retention, and the settings did not change; where it is not, a hit read again still keeps
    the verdict it was stored with (the runner looks it up), so it never counts on both sides.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_ms: int = DEFAULT_WINDOW_MS,
        *,
        skew_ms: int = 5_000,
        max_buckets: int = 2_000_000,
    ) -> None:
        if limit < 0 or window_ms < 1 or skew_ms < 0 or max_buckets < 1:
            raise ValueError("limit must be >= 0 (0: off), window_ms and max_buckets >= 1, skew_ms >= 0")
        self.limit = limit
        self.window_ms = window_ms
        self.skew_ms = skew_ms
        self.max_buckets = max_buckets
        self._partitions: dict[int, _Partition] = {}
        self._size = 0
        self.filtered = 0  # hits this filter has turned into floods (in the metrics as kind, "bot")

    def __len__(self) -> int:
        """Buckets kept."""
        return self._size

    @property
    def reach_ms(self) -> int:
        """How far back in event time a hit's verdict can depend on other hits: what a restarted partition
        must replay before its first hit to judge it (and every later one) as before."""
        return self.window_ms + self.skew_ms

    def classify(self, processed: ProcessedHit, partition: int) -> Classification:
        """The hit's final classification as far as floods go: `FLOOD` for a counted hit of a flooded bucket,
        else the classifier's. ``partition``: the bus partition it was read from."""
        c = processed.classification
        if c.verdict not in _COUNTED or not self.limit:
            return c  # bots and invalid hits are filtered already and take no part (and 0 is off)
        hit, address = processed.hit, processed.address
        network = hit.ip if address is None else address.truncated
        return c if self.admit(partition, bucket_key(hit, network), hit.received_at_ms) else FLOOD

    def admit(self, partition: int, key: int, at_ms: int) -> bool:
        """Count one more hit of bucket ``key`` at ``at_ms``: False when it is a flood (filter it)."""
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = _Partition()
        if at_ms > state.watermark_ms:
            state.watermark_ms = at_ms
            if at_ms >= state.next_sweep_ms:
                self._sweep(state)
        buckets = state.buckets
        times = buckets.get(key)
        if times is None:
            buckets[key] = at_ms
            self._size += 1
            if self._size > self.max_buckets:
                self._evict()
            return True
        # Moved to the end: the dict stays in the order of each bucket's newest hit, so a sweep stops at the
        # first bucket it keeps and an eviction takes the least recent.
        del buckets[key]
        if isinstance(times, int):
            times = [times]
        buckets[key] = times
        # A flood when the last `limit` hits all fall within the window before this one. (Event times are in
        # order on a partition; the oldest of them by time, not by arrival, keeps a late hit lenient.)
        flood = len(times) >= self.limit and at_ms - min(times) < self.window_ms
        times.append(at_ms)
        if len(times) > self.limit:
            del times[0]
        if flood:
            self.filtered += 1
        return not flood

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the buckets of partitions this consumer no longer owns."""
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                self._size -= len(state.buckets)

    def _sweep(self, state: _Partition) -> None:
        """Drop the partition's buckets no later hit can be a flood of: their newest hit is a window (and the
        allowed clock skew between edges) behind the partition's newest hit. Buckets are in the order of their
        newest hit, so this walks only the ones it drops (a late hit's bucket waits behind a newer one until
        that goes). Runs every second (or quarter window) of the partition's event time."""
        horizon = state.watermark_ms - self.window_ms - self.skew_ms
        buckets = state.buckets
        stale = []
        for k, t in buckets.items():
            if (t if isinstance(t, int) else t[-1]) >= horizon:
                break
            stale.append(k)
        for k in stale:
            del buckets[k]
        self._size -= len(stale)
        state.next_sweep_ms = state.watermark_ms + max(1, min(self.window_ms // 4, 1_000))

    def _evict(self) -> None:
        """Over ``max_buckets`` within one window (a flood of distinct messages): drop the least recent
        buckets, a tenth at a time. Lenient: an evicted bucket starts again empty."""
        excess = self._size - self.max_buckets + self.max_buckets // 10
        for state in self._partitions.values():
            if excess <= 0:
                break
            buckets = state.buckets
            victims = list(itertools.islice(buckets, excess))  # the least recent first (see `admit`)
            for k in victims:
                del buckets[k]
            self._size -= len(victims)
            excess -= len(victims)
