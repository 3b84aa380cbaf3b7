"""The campaigns' delivery numbers (`api.sql.deliveries.COUNTS`: messages by delivery status, and the messages
counted as sent without a send), exact and fast: counted per bucket of message hashes, and read again only
for the buckets whose data changed since this process last counted them (`api.bucket_numbers`).

Why: a message's status needs every set it is in (delivered, bounced, opened ...), so the numbers cannot be
summed from the rollups' lengths as opens are; counting them means a union of every message of the
campaign (~1.4 M in the benchmark's largest campaign: ~1 s on two cores). The buckets' parts are signed by
`api.sql.deliveries.delivery_parts` and counted by `api.sql.deliveries.campaigns_delivery`.
"""

from __future__ import annotations

from api.bucket_numbers import MAX_CAMPAIGNS, BucketNumbers
from api.sql import deliveries


class DeliveryNumbers(BucketNumbers):
    """Per (database, account, campaign), the delivery counts of each bucket and the parts they were counted
    from."""

    def __init__(self, max_campaigns: int = MAX_CAMPAIGNS) -> None:
        super().__init__(
            deliveries.delivery_parts, deliveries.campaigns_delivery, len(deliveries.COUNTS), max_campaigns
        )
