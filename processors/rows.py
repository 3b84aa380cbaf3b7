"""Turn a classified hit into a ClickHouse row, and plan the inserts of a batch. Pure.

This is where the client's address leaves memory, so it is cut here (`processors.privacy`); and where an
invalid token leaves it: only its shape is kept (`stored_token_shape`; the edge publishes no more).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from processors.pipeline import ProcessedHit
from processors.privacy import IpStorage, stored_address
from schemas.tokens import token_shape
from schemas.verdicts import Classification, Verdict

EVENT_COLUMNS: Final = (
    "hit_id", "kind", "account", "campaign_id", "message_id", "sent_at", "received_at", "link_index", "url",
    "verdict", "reason", "via_proxy", "country", "city", "time_zone", "asn", "as_org", "ip", "device", "os",
    "client", "user_agent", "source",
)  # fmt: skip
FILTERED_COLUMNS: Final = (*EVENT_COLUMNS, "token_head")
# What a processor stores (`row`): the columns above and the recipient's tag (hex of the token's, '' for an
# invalid token; 0012_engagement.sql), which the engagement rollup is keyed by.
STORED_EVENT_COLUMNS: Final = (*EVENT_COLUMNS, "recipient_tag")
STORED_FILTERED_COLUMNS: Final = (*FILTERED_COLUMNS, "recipient_tag")
TOKEN_HEAD_CHARS: Final = 64  # what edges before the token's shape passed of an invalid token


def stored_token_shape(token_head: str) -> str:
    """What ``filtered_hits.token_head`` keeps: the shape the edge published (`schemas.tokens.token_shape`),
    or, from an older edge that published an invalid token's first 64 characters, that head's shape -- never
    the characters themselves. A shape has spaces, which base64url never has."""
    if not token_head or " " in token_head:
        return token_head
    return token_shape(token_head, truncated_at=TOKEN_HEAD_CHARS)


EVENTS_TABLE: Final = "events"
FILTERED_TABLE: Final = "filtered_hits"


# Per verdict: its text, and whether it is counted (enum properties are Python calls; a dict lookup is not).
_VERDICTS: Final = {verdict: (verdict.value, verdict.counted) for verdict in Verdict}


def row(p: ProcessedHit, c: Classification, ip_storage: IpStorage) -> tuple[str, list[Any]]:
    """The table and the row for one hit with its final classification.

    ``sent_at`` and ``received_at`` (DateTime64(3) columns) are integer milliseconds: clickhouse-connect
    writes integers as the column's ticks as they are, where it would turn each datetime back into ticks in
    Python (and building the datetimes here cost as much again)."""
    h, g, a = p.hit, p.geo, p.agent
    verdict, counted = _VERDICTS[c.verdict]
    values: list[Any] = [
        h.hit_id, h.kind, h.account, h.campaign_id, h.message_id, h.sent_at * 1000,
        h.received_at_ms, h.link_index, h.url, verdict, c.reason, c.via_proxy, g.country,
        g.city, g.time_zone, g.asn, g.as_org, stored_address(h.ip, p.address, ip_storage), a.device, a.os,
        a.client, h.user_agent, p.source,
    ]  # fmt: skip
    tag = h.recipient_tag if h.token_ok else ""
    if counted:
        values.append(tag)
        return EVENTS_TABLE, values
    values.append(stored_token_shape(h.token_head))
    values.append(tag)
    return FILTERED_TABLE, values


@dataclass(frozen=True, slots=True)
class InsertPlan:
    table: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    dedup_token: str


def plan_inserts(rows_by_table: dict[str, list[list[Any]]]) -> list[InsertPlan]:
    """One insert per table; the dedup token is a digest of the batch's hit ids, so a retry of the same
    batch (same rows) is stored once however the retry happens."""
    plans = []
    for table, columns in ((EVENTS_TABLE, STORED_EVENT_COLUMNS), (FILTERED_TABLE, STORED_FILTERED_COLUMNS)):
        rows = rows_by_table.get(table) or []
        if rows:
            digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()[:32]
            plans.append(InsertPlan(table, columns, rows, f"{table}:{digest}"))
    return plans
