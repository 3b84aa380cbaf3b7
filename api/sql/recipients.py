"""A recipient's SQL and answer: their messages (newest first), their human opens, the campaigns they were
sent (the audience of their best time's fallback, `api.sql.best_time`), and the shaping of
``GET /v1/recipients/{recipient}``. Reads ``sends`` and ``events``; the recipient is given normalised
(`schemas.recipient`). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from api.sql import pages
from api.sql.best_time import BestTime
from api.sql.common import Query, iso_ms


def recipient_messages(db: str, account: str, recipient: str, *, limit: int) -> Query:
    """A recipient's messages, newest first (``limit`` + 1 rows, to tell if there are more)."""
    return Query(
        f"""SELECT message_id, campaign_id, toUnixTimestamp64Milli(sent_at) AS sent_ms
            FROM {db}.sends WHERE account = {{account:String}} AND recipient = {{recipient:String}}
            ORDER BY sent_at DESC, message_id ASC LIMIT 1 BY message_id LIMIT {{limit:UInt32}}""",
        {"account": account, "recipient": recipient, "limit": pages.check_limit(limit) + 1},
    )


def recipient_campaigns(db: str, account: str, recipient: str) -> Query:
    """Every campaign a recipient was sent (the audience of the best-time fallback)."""
    return Query(
        f"""SELECT DISTINCT campaign_id FROM {db}.sends
            WHERE account = {{account:String}} AND recipient = {{recipient:String}}""",
        {"account": account, "recipient": recipient},
    )


def recipient_opens(db: str, account: str, recipient: str) -> Query:
    """Every human open of a recipient's messages, newest first, one row per hit: (epoch ms, time zone,
    client, device, os, country, city, message_id)."""
    return Query(
        f"""SELECT toUnixTimestamp64Milli(received_at), time_zone, client, device, os, country, city,
                   message_id
            FROM {db}.events
            WHERE account = {{account:String}} AND kind = 'open' AND verdict = 'human'
              AND (campaign_id, message_id) IN (
                SELECT campaign_id, message_id FROM {db}.sends
                WHERE account = {{account:String}} AND recipient = {{recipient:String}})
            ORDER BY received_at DESC, hit_id LIMIT 1 BY hit_id""",
        {"account": account, "recipient": recipient},
    )


def shape_recipient(
    recipient: str,
    *,
    message_rows: Sequence[tuple[Any, ...]],
    limit: int,
    open_rows: Sequence[tuple[Any, ...]],
    count_rows: Iterable[tuple[Any, ...]],
    history: int,
    best: BestTime,
) -> dict[str, Any]:
    counts = {row[0]: row[1:] for row in count_rows}
    messages = []
    for message_id, campaign_id, sent_ms in message_rows[:limit]:
        opens, _, clicks, first_open_ms = counts.get(message_id, (0, 0, 0, 0))
        messages.append(
            {
                "message_id": message_id,
                "campaign_id": campaign_id,
                "sent_at": iso_ms(sent_ms),
                "opens": int(opens),
                "clicks": int(clicks),
                "first_open_at": iso_ms(first_open_ms) if opens else None,
            }
        )
    return {
        "recipient": recipient,
        "messages": messages,
        "more_messages": len(message_rows) > limit,
        "opens": len(open_rows),
        "open_history": [
            {
                "at": iso_ms(at),
                "message_id": message_id,
                "client": client or None,
                "device": device or None,
                "os": os_ or None,
                "country": country or None,
                "city": city or None,
                "time_zone": tz or None,
            }
            for at, tz, client, device, os_, country, city, message_id in open_rows[:history]
        ],
        "best_time_to_send": best.as_dict(),
    }
