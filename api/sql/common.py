"""What every SQL builder and shaper of the API shares: a query (text and bound parameters), the refusal of a
value the API cannot answer, the scope of one account's campaign, how times and rates are written in answers,
and what the numbers counted per bucket of message hashes read (`bucket_parts`, `only_buckets`). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from schemas.errors import PixelpipeError

# Every table the API reads is ordered by this prefix, so ClickHouse reads only the granules of one
# account's campaign.
CAMPAIGN_SCOPE: Final = "account = {account:String} AND campaign_id = {campaign_id:String}"


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    parameters: dict[str, Any]


class BadQuery(PixelpipeError, ValueError):
    """A query value the API cannot answer (answered as 400, with this message)."""


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with milliseconds, or None for ClickHouse's empty (epoch) value."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.timestamp() <= 0:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(epoch_ms: int) -> str | None:
    """`iso` of epoch milliseconds."""
    return iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def bucket_parts(db: str, rows: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Per campaign and bucket of message hashes, a signature of the data parts that hold the rollup rows
    ``rows`` selects (a condition naming ``{account:String}`` and ``{campaign_ids:Array(String)}``): the sum
    of a hash of each row's part name, rows ``(campaign_id, bucket, signature)``. A part never changes (an
    insert, merge or mutation writes a new one, under a new name) and neither do its rows, so a bucket with
    the same signature holds the same sets: its counts need not be read again (`api.bucket_numbers`). Two
    different sets of parts give the same signature with p ~ 2^-64."""
    return Query(
        f"""SELECT campaign_id, bucket, sum(cityHash64(_part)) FROM {db}.rollups
            WHERE {rows} GROUP BY campaign_id, bucket""",
        {"account": account, "campaign_ids": list(campaign_ids)},
    )


def only_buckets(parameters: dict[str, Any], buckets: Sequence[int] | None) -> str:
    """The condition (with its leading AND) that keeps a count to ``buckets``, its parameter added to
    ``parameters``; '' for every bucket (None)."""
    if buckets is None:
        return ""
    parameters["buckets"] = list(buckets)
    return " AND bucket IN {buckets:Array(UInt16)}"
