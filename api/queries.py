"""The SQL the API asks, and how answers are shaped. Pure: SQL text and parameters in, dicts out.

Every query starts from ``account`` (and ``campaign_id`` where known): the tables are ordered by that prefix,
so ClickHouse reads only the granules of one account's campaign. Counts are ``uniqExact(hit_id)``: a hit
stored twice (a replay) still counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    parameters: dict[str, Any]


def send_of_message(db: str, account: str, message_id: str) -> Query:
    return Query(
        f"""SELECT campaign_id, recipient, sent_at, links
            FROM {db}.sends
            WHERE account = {{account:String}} AND message_id = {{message_id:String}}
            ORDER BY registered_at DESC LIMIT 1""",
        {"account": account, "message_id": message_id},
    )


def message_of_hits(db: str, account: str, message_id: str) -> Query:
    """A message known only by its counted hits (its send expired before them): (campaign_id, sent_at)."""
    return Query(
        f"""SELECT campaign_id, min(sent_at) FROM {db}.events
            WHERE account = {{account:String}} AND message_id = {{message_id:String}}
            GROUP BY campaign_id ORDER BY campaign_id LIMIT 1""",
        {"account": account, "message_id": message_id},
    )


def sends_of_messages(db: str, account: str, message_ids: Sequence[str]) -> Query:
    """What `send_of_message` answers, for many messages in one query: one row per registered id."""
    return Query(
        f"""SELECT message_id, argMax((campaign_id, recipient, sent_at), registered_at)
            FROM {db}.sends
            WHERE account = {{account:String}} AND message_id IN {{message_ids:Array(String)}}
            GROUP BY message_id""",
        {"account": account, "message_ids": list(message_ids)},
    )


def message_counts(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    return Query(
        f"""SELECT
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'human') AS opens,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine') AS machine_opens,
              minIf(received_at, kind = 'open' AND verdict = 'human') AS first_open_at,
              maxIf(received_at, kind = 'open' AND verdict = 'human') AS last_open_at,
              uniqExactIf(hit_id, kind = 'click' AND verdict = 'human') AS clicks,
              minIf(received_at, kind = 'click' AND verdict = 'human') AS first_click_at
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
              AND message_id = {{message_id:String}}""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def filtered_breakdown(db: str, account: str, campaign_id: str, message_id: str | None = None) -> Query:
    where = "account = {account:String} AND campaign_id = {campaign_id:String}"
    parameters: dict[str, Any] = {"account": account, "campaign_id": campaign_id}
    if message_id is not None:
        where += " AND message_id = {message_id:String}"
        parameters["message_id"] = message_id
    return Query(
        f"""SELECT kind, verdict, reason, uniqExact(hit_id) AS hits
            FROM {db}.filtered_hits WHERE {where}
            GROUP BY kind, verdict, reason ORDER BY hits DESC, reason""",
        parameters,
    )


def campaign_sent(db: str, account: str, campaign_id: str) -> Query:
    return Query(
        f"""SELECT uniqExact(message_id) FROM {db}.sends
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_counts(db: str, account: str, campaign_id: str) -> Query:
    return Query(
        f"""SELECT
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'human') AS opens,
              uniqExactIf(message_id, kind = 'open' AND verdict = 'human') AS unique_opens,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine') AS machine_opens,
              uniqExactIf(message_id, kind = 'open' AND verdict = 'machine') AS unique_machine_opens,
              uniqExactIf(hit_id, kind = 'click' AND verdict = 'human') AS clicks,
              uniqExactIf(message_id, kind = 'click' AND verdict = 'human') AS unique_clicks
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}""",
        {"account": account, "campaign_id": campaign_id},
    )


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with milliseconds, or None for ClickHouse's empty (epoch) value."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.timestamp() <= 0:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Filtered:
    """Filtered hits of a message or campaign: bot clicks, and every hit counted nowhere, by reason."""

    bot_clicks: int
    bot_opens: int
    by_reason: dict[str, int]


def shape_filtered(rows: Iterable[tuple[Any, ...]]) -> Filtered:
    bot_clicks = bot_opens = 0
    by_reason: dict[str, int] = {}
    for kind, verdict, reason, hits in rows:
        if verdict == "bot":
            if kind == "click":
                bot_clicks += hits
            else:
                bot_opens += hits
        by_reason[reason] = by_reason.get(reason, 0) + int(hits)
    return Filtered(bot_clicks, bot_opens, by_reason)


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
