"""The campaigns' MPP-only messages and implied opens (`api.sql.open_rates.OpenFacts`), exact and fast:
counted per bucket of message hashes, and read again only for the buckets whose data changed since this
process last counted them (`api.bucket_numbers`; the buckets' parts signed by `api.sql.open_rates.open_parts`,
counted by `api.sql.open_rates.campaigns_open_counts`).

Why: both are set differences over every message of a campaign (opened by anyone less opened otherwise than
by Apple's prefetch; clicked by a person less opened by anyone), which cannot be summed from the rollups'
lengths; counted whole they cost ~0.5-2.6 s for the benchmark's largest campaign, per bucket they cost the
buckets a campaign's new opens touched.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.bucket_numbers import MAX_CAMPAIGNS, BucketNumbers, Read
from api.sql import open_rates


class OpenNumbers(BucketNumbers):
    """Per (database, account, campaign), the `api.sql.open_rates.OPEN_COUNTS` of each bucket and the parts
    they were counted from."""

    def __init__(self, max_campaigns: int = MAX_CAMPAIGNS) -> None:
        counts = open_rates.campaigns_open_counts
        super().__init__(open_rates.open_parts, counts, len(open_rates.OPEN_COUNTS), max_campaigns)

    def facts(
        self, run: Read, db: str, account: str, campaign_ids: Sequence[str]
    ) -> dict[str, open_rates.OpenFacts]:
        """Each campaign's `OpenFacts` (zeros for a campaign without an open or a click)."""
        counted = self.read(run, db, account, campaign_ids)
        return {c: open_rates.shape_facts(counted.get(c)) for c in campaign_ids}
