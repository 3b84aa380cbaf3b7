"""What every SQL builder and shaper of the API shares: a query (text and bound parameters), the refusal of a
value the API cannot answer, the scope of one account's campaign, and how times and rates are written in
answers. Pure.
"""

from __future__ import annotations

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
