"""Numbers of a campaign's messages counted per bucket of message hashes, and counted again only for the
buckets whose data changed since this process last counted them: `BucketNumbers`, given the two queries of
what it counts (`api.delivery_numbers`: messages by delivery status; `api.open_numbers`: MPP-only messages
and implied opens).

Why: a number that needs every set a message is in (delivered, bounced, opened ...; opened by anyone and
clicked by a person) cannot be summed from the rollups' lengths as opens are; counting it means a union of
every message of the campaign (~1.4 M in the benchmark's largest campaign: ~1 s on two cores). But the sets
of a bucket change only when a part holding its rows changes, and a ClickHouse part never changes: an
insert, a merge or a mutation (an erasure, a TTL) writes a new part under a new name. So each answer first
reads, per bucket, a signature of the parts holding its rows (``parts``: a few ms), then counts the buckets
whose signature differs from the one their cached counts were made with (``counts``), and adjusts the
totals. A live campaign's new events touch some of its 4096 buckets; a merge into the campaign's big part
makes one answer count them all again.

Exact (but for 64-bit signature collisions): a bucket's counts are those of the parts it was listed with,
or newer (a part written between the listing and the count is counted, then the bucket is counted again
next time). The cache is this process's (a bounded LRU of campaigns), guarded by a lock: handlers run in
worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

from api.sql.common import Query

MAX_CAMPAIGNS: Final = 256  # campaigns whose bucket counts are kept
BUCKETS: Final = 4096  # the rollups' message buckets (hash % 4096, 0002_rollups.sql)

Read = Callable[[Query], list[tuple[Any, ...]]]
Counts = tuple[int, ...]
# (db, account, campaign ids) -> rows ``(campaign_id, bucket, signature)``
PartsQuery = Callable[[str, str, Sequence[str]], Query]
# (db, account, campaign ids, buckets or None for all) -> rows ``(campaign_id, bucket, *counts)``
CountsQuery = Callable[[str, str, Sequence[str], Sequence[int] | None], Query]


class _Campaign:
    """One campaign's buckets (bucket -> (signature, counts)) and their sum."""

    __slots__ = ("buckets", "nothing", "totals")

    def __init__(self, nothing: Counts) -> None:
        self.nothing = nothing
        self.buckets: dict[int, tuple[int, Counts]] = {}
        self.totals: list[int] = list(nothing)

    def put(self, bucket: int, signature: int, counts: Counts) -> None:
        old = self.buckets.get(bucket, (0, self.nothing))[1]
        self.buckets[bucket] = (signature, counts)
        self.totals = [t - o + n for t, o, n in zip(self.totals, old, counts, strict=True)]

    def drop(self, bucket: int) -> None:
        self.put(bucket, 0, self.nothing)
        del self.buckets[bucket]


class BucketNumbers:
    """Per (database, account, campaign), the counts of each bucket and the parts they were counted from;
    ``width`` numbers per bucket, summed over the buckets."""

    def __init__(
        self, parts: PartsQuery, counts: CountsQuery, width: int, max_campaigns: int = MAX_CAMPAIGNS
    ) -> None:
        self.parts = parts
        self.counts = counts
        self.nothing: Counts = (0,) * width
        self.max_campaigns = max_campaigns
        self._campaigns: OrderedDict[tuple[str, str, str], _Campaign] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._campaigns)} campaigns)"

    def read(self, run: Read, db: str, account: str, campaign_ids: Sequence[str]) -> dict[str, Counts]:
        """Each campaign's numbers, for the campaigns of ``campaign_ids`` that have rows (none: left out)."""
        listed: dict[str, dict[int, int]] = {}
        for campaign_id, bucket, signature in run(self.parts(db, account, campaign_ids)):
            listed.setdefault(campaign_id, {})[int(bucket)] = int(signature)
        with self._lock:
            known = {c: self._campaigns.get((db, account, c)) for c in listed}
            stale = {
                c: [
                    b
                    for b, sig in buckets.items()
                    if (k := known[c]) is None or k.buckets.get(b, (None,))[0] != sig
                ]
                for c, buckets in listed.items()
            }
        stale = {c: buckets for c, buckets in stale.items() if buckets}
        counted: dict[str, dict[int, Counts]] = {c: {} for c in stale}
        if stale:
            every = sorted({b for buckets in stale.values() for b in buckets})
            # One read for every stale bucket of these campaigns (another campaign's unchanged buckets that
            # come back too are counted all the same).
            q = self.counts(db, account, sorted(stale), None if len(every) == BUCKETS else every)
            for campaign_id, bucket, *counts in run(q):
                if campaign_id in counted:
                    counted[campaign_id][int(bucket)] = tuple(int(n) for n in counts)
        totals: dict[str, Counts] = {}
        with self._lock:
            for campaign_id, buckets in listed.items():
                key = (db, account, campaign_id)
                campaign = self._campaigns.get(key) or _Campaign(self.nothing)
                for bucket in stale.get(campaign_id, ()):
                    # a recounted bucket without a row holds no message any more (an erasure emptied it)
                    campaign.put(bucket, buckets[bucket], counted[campaign_id].get(bucket, self.nothing))
                for bucket in [b for b in campaign.buckets if b not in buckets]:
                    campaign.drop(bucket)
                self._remember(key, campaign)
                totals[campaign_id] = tuple(campaign.totals)
        return totals

    def _remember(self, key: tuple[str, str, str], campaign: _Campaign) -> None:
        self._campaigns[key] = campaign
        self._campaigns.move_to_end(key)
        while len(self._campaigns) > self.max_campaigns:
            self._campaigns.popitem(last=False)
