"""A campaign's stats inputs kept with the data parts they were read from, and read again only when those
parts change.

A campaign's stats (`api.campaigns.campaign_summary`) read every rollup row of the campaign: the exact counts
(`api.sql.campaigns.campaign_counts`, unions of message sets: 25-35 ms for the benchmark's largest campaign of
1.4 M messages), the delivery numbers (`api.delivery_numbers`) and the MPP-only messages and implied opens
(`api.open_numbers`). A ClickHouse part never changes (an insert, a merge, a mutation or a TTL writes a new
part under a new name), so the same parts hold the same rows and give the same answer. Each read therefore
first asks for the signature of the parts that hold the campaign's rollup rows
(`api.sql.campaigns.campaign_parts`: the sum of a hash of each row's part name, reading the key columns of the
campaign's range only: a few ms) and reuses what it computed under the same signature. A campaign being opened
right now changes its parts with every insert (each flush of the processors), and its answer is computed again
each time; a settled one, or one whose neighbours are being opened, is answered from here. `read_many` does
the same for a page of campaigns (the campaign list) with one signature query, and computes the changed ones
together.

Exact (but for 64-bit signature collisions): what was computed under a signature reads those parts or newer
ones (a part written between the signature and the read is counted, then the next signature differs and the
answer is computed again). The cache is this process's, a bounded LRU guarded by a lock: handlers run in
worker threads. Failures (an unknown campaign, a store error) are never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final, TypeVar

from api.sql import campaigns as sql
from api.sql.common import Query

MAX_ENTRIES: Final = 512  # answers kept (a campaign with and without machine opens is two)

T = TypeVar("T")
Read = Callable[[Query], list[tuple[Any, ...]]]


class CampaignReads:
    """Per (database, account, campaign, variant), the last value computed and the signature it was read
    under."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._kept: OrderedDict[tuple[str, str, str, Hashable], tuple[tuple[int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CampaignReads({len(self._kept)} kept)"

    def read(
        self,
        run: Read,
        db: str,
        account: str,
        campaign_id: str,
        *,
        variant: Hashable,
        compute: Callable[[], T],
    ) -> T:
        """``compute()``'s value for this campaign (``variant``: what else it depends on), reused while the
        parts holding the campaign's rollup rows are the same."""
        rows = run(sql.campaign_parts(db, account, campaign_id))
        signature = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        key = (db, account, campaign_id, variant)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == signature and signature[1] > 0:
                self._kept.move_to_end(key)
                value: T = kept[1]
                return value
        value = compute()
        if signature[1] > 0:  # a campaign without rows (unknown, or all erased) is not kept
            with self._lock:
                self._keep(key, signature, value)
        return value

    def read_many(
        self,
        run: Read,
        db: str,
        account: str,
        campaign_ids: Sequence[str],
        *,
        variant: Hashable,
        compute: Callable[[list[str]], Mapping[str, T]],
    ) -> dict[str, T]:
        """`read` of several campaigns with one signature query (`api.sql.campaigns.campaigns_parts`):
        ``compute(changed)`` gives the value of each campaign of ``changed`` (those whose parts changed, or
        that were never read), in one go."""
        if not campaign_ids:
            return {}
        rows = run(sql.campaigns_parts(db, account, campaign_ids))
        signatures = {str(c): (int(s), int(n)) for c, s, n in rows}
        values: dict[str, T] = {}
        with self._lock:
            for campaign_id in campaign_ids:
                key = (db, account, campaign_id, variant)
                kept = self._kept.get(key)
                signature = signatures.get(campaign_id, (0, 0))
                if kept is not None and kept[0] == signature and signature[1] > 0:
                    self._kept.move_to_end(key)
                    values[campaign_id] = kept[1]
        changed = [c for c in campaign_ids if c not in values]
        if changed:
            computed = compute(changed)
            with self._lock:
                for campaign_id in changed:
                    values[campaign_id] = computed[campaign_id]
                    signature = signatures.get(campaign_id, (0, 0))
                    if signature[1] > 0:
                        self._keep((db, account, campaign_id, variant), signature, computed[campaign_id])
        return values

    def kept_signature(
        self, db: str, account: str, campaign_id: str, *, variant: Hashable
    ) -> tuple[int, int] | None:
        """The signature the kept value was read under (None: nothing kept)."""
        with self._lock:
            kept = self._kept.get((db, account, campaign_id, variant))
        return kept[0] if kept is not None else None

    def _keep(self, key: tuple[str, str, str, Hashable], signature: tuple[int, int], value: Any) -> None:
        self._kept[key] = (signature, value)
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
