"""The SQL of a campaign's aggregate opens (issue 19, ``aggregate_opens``, 0011): the opens of its campaign
pixel, which name nobody, by who opened. Pure builder and shaper.

They are not unique opens: with no identity they cannot be told apart per person (a reader who opens twice
counts twice, and a campaign's individually tracked opens are not among them). ``aggregate_opens`` counts
people (with ``include_machine``, machines too, as ``opens`` does), ``aggregate_machine_opens`` machine opens
(privacy proxies' prefetches, gateways), ``aggregate_filtered`` bots and scanners.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.sql.common import CAMPAIGN_SCOPE, Query


def aggregate_counts(db: str, account: str, campaign_id: str) -> Query:
    """(people, machines, bots, whether any send of the campaign was tracked in aggregate): exact, each
    open once (``uniqExact`` of its hash, before merges too)."""
    return Query(
        f"""SELECT uniqExactIf(hit, who = 'person'), uniqExactIf(hit, who = 'machine'),
                   uniqExactIf(hit, who = 'bot'),
                   (SELECT count() > 0 FROM (SELECT 1 FROM {db}.sends
                        WHERE {CAMPAIGN_SCOPE} AND tracking = 'aggregate' LIMIT 1))
            FROM {db}.aggregate_opens WHERE {CAMPAIGN_SCOPE}""",
        {"account": account, "campaign_id": campaign_id},
    )


def shape_aggregate(rows: Sequence[Sequence[Any]], *, include_machine: bool) -> dict[str, int] | None:
    """The fields stats and summary gain, or None for a campaign with neither an aggregate open nor a send
    tracked in aggregate (answered as before aggregate opens existed)."""
    people, machines, bots, aggregate_sends = rows[0] if rows else (0, 0, 0, False)
    if not (people or machines or bots or aggregate_sends):
        return None
    return {
        "aggregate_opens": int(people) + (int(machines) if include_machine else 0),
        "aggregate_machine_opens": int(machines),
        "aggregate_filtered": int(bots),
    }
