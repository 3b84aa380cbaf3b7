"""The campaigns' delivery numbers (`api.sql.deliveries.COUNTS`), exact and fast: counted per bucket of
message hashes, and read again only for the buckets whose data changed since this process last counted them.

Why: a message's status needs every set it is in (delivered, bounced, opened ...), so the numbers cannot be
summed from the rollups' lengths as opens are; counting them means a union of every message of the
campaign (~1.4 M in the benchmark's largest campaign: ~0.5 s on two cores). But the sets of a bucket change
only when a part holding its rows changes, and a ClickHouse part never changes: an insert, a merge or a
mutation (an erasure, a TTL) writes a new part under a new name. So each answer first lists, per bucket, the
names of the parts holding its rows (`api.sql.deliveries.delivery_parts`: key columns only, a few ms), then
counts the buckets whose list differs from the one their cached counts were made from, and sums. A live
campaign's new events touch a few hundred of its 4096 buckets; a merge into the campaign's big part makes
one answer count them all again.

Exact: a bucket's counts are those of the parts it was listed with, or newer (a part written between the
listing and the count is counted, then the bucket is counted again next time). The cache is this process's
(a bounded LRU of campaigns), guarded by a lock: handlers run in worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

from api.sql import deliveries
from api.sql.common import Query

MAX_CAMPAIGNS: Final = 256  # campaigns whose bucket counts are kept

Read = Callable[[Query], list[tuple[Any, ...]]]
Buckets = dict[int, tuple[tuple[str, ...], tuple[int, ...]]]  # bucket -> (its parts, its COUNTS)


class DeliveryNumbers:
    """Per (database, account, campaign), the counts of each bucket and the parts they were counted from."""

    def __init__(self, max_campaigns: int = MAX_CAMPAIGNS) -> None:
        self.max_campaigns = max_campaigns
        self._campaigns: OrderedDict[tuple[str, str, str], Buckets] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DeliveryNumbers({len(self._campaigns)} campaigns)"

    def read(
        self, run: Read, db: str, account: str, campaign_ids: Sequence[str]
    ) -> dict[str, tuple[int, ...]]:
        """Each campaign's `COUNTS`, for the campaigns of ``campaign_ids`` that have rows (none: left out)."""
        listed: dict[str, dict[int, tuple[str, ...]]] = {}
        for campaign_id, bucket, parts in run(deliveries.delivery_parts(db, account, campaign_ids)):
            listed.setdefault(campaign_id, {})[int(bucket)] = tuple(parts)
        with self._lock:
            known = {c: dict(self._campaigns.get((db, account, c), {})) for c in listed}
        stale: dict[str, list[int]] = {
            c: [b for b, parts in buckets.items() if known[c].get(b, ((), ()))[0] != parts]
            for c, buckets in listed.items()
        }
        stale = {c: sorted(b) for c, b in stale.items() if b}
        fresh: dict[str, Buckets] = {c: {} for c in stale}
        if stale:
            every = sorted({b for buckets in stale.values() for b in buckets})
            # One read for every stale bucket of every campaign; a campaign's unchanged buckets come back
            # too when another campaign needs them (counted, and cached, all the same).
            q = deliveries.campaigns_delivery(
                db, account, sorted(stale), None if len(every) == 4096 else every
            )
            for campaign_id, bucket, *counts in run(q):
                if campaign_id in fresh:
                    parts = listed[campaign_id].get(int(bucket), ())
                    fresh[campaign_id][int(bucket)] = (parts, tuple(int(n) for n in counts))
        totals: dict[str, tuple[int, ...]] = {}
        with self._lock:
            for campaign_id, buckets in listed.items():
                counted, recounted = known[campaign_id], set(stale.get(campaign_id, ()))
                # a recounted bucket without a row holds no message any more (an erasure emptied its sets)
                kept: Buckets = {
                    b: fresh[campaign_id].get(b, (parts, _NOTHING)) if b in recounted else counted[b]
                    for b, parts in buckets.items()
                }
                self._remember((db, account, campaign_id), kept)
                totals[campaign_id] = tuple(sum(c[i] for _, c in kept.values()) for i in range(len(_NOTHING)))
        return totals

    def _remember(self, key: tuple[str, str, str], buckets: Buckets) -> None:
        self._campaigns[key] = buckets
        self._campaigns.move_to_end(key)
        while len(self._campaigns) > self.max_campaigns:
            self._campaigns.popitem(last=False)


_NOTHING: Final = (0,) * len(deliveries.COUNTS)
