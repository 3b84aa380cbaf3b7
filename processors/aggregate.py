"""Aggregate opens in the processors (issue 19, `schemas.aggregate_opens`): one judged and turned into an
``aggregate_opens`` row that names nobody, and the batch's insert. Pure, but for the classification's caches.

The runner (`processors.runner`) takes a line of the raw-hit topic that is an aggregate open (its start,
`schemas.aggregate_opens.is_aggregate_line`), decodes it (malformed: a dead letter, as a hit), judges it with
the hits' own classification (`processors.pipeline.HitProcessor`: the user agent and the address ranges; no
timing, the token has no send time), and stores it with the batch it came in, before the batch's offsets are
committed: one insert into ``aggregate_opens`` with its own deduplication token (a digest of the batch's ids).
The row holds the account, the campaign, the hour, who opened (`who_of`: person, machine, bot) and the
classification's reason (a client's kind, such as Apple's privacy proxy, never a person's), and a 64-bit hash
of the open's random id, so a batch stored again after a crash is one set of rows once merged
(ReplacingMergeTree), and counted exactly (``uniqExact(hit)``) before. No address, no user agent, no place, no
message, no recipient. Aggregate opens take no part in the replay-flood filter (no message to bucket by) and
make no notice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from processors.pipeline import HitProcessor
from processors.rows import InsertPlan
from schemas.aggregate_opens import AggregateOpen
from schemas.events import RawHit
from schemas.verdicts import Classification, Verdict

AGGREGATE_TABLE: Final = "aggregate_opens"
AGGREGATE_COLUMNS: Final = ("account", "campaign_id", "hour", "who", "reason", "hit")
_WHO: Final = {Verdict.HUMAN: "person", Verdict.MACHINE: "machine"}


@dataclass(frozen=True, slots=True)
class PendingAggregate:
    """An aggregate open judged, waiting for its batch's insert: its row, and its line and bus position (for
    the dead letters if the store refuses it for good)."""

    row: list[Any]
    line: bytes
    source: str


def who_of(classification: Classification) -> str:
    """``person`` (a human verdict, proxies' included), ``machine`` (machine opens: privacy proxies'
    prefetches, gateways) or ``bot`` (bots, scanners, tools)."""
    return _WHO.get(classification.verdict, "bot")


def judge(processor: HitProcessor, record: AggregateOpen, source: str) -> Classification:
    """The classification of an aggregate open, as an open of the same client would get."""
    hit = RawHit(
        hit_id=record.aggregate_of,
        kind="open",
        received_at_ms=record.received_at_ms,
        ip=record.ip,
        user_agent=record.user_agent,
        token_ok=True,
        account=record.account,
        campaign_id=record.campaign_id,
    )
    return processor.process(hit, source).classification


def hit_hash(aggregate_of: str) -> int:
    """64 bits of SHA-256 of the open's id: unique per open, without the id's time in milliseconds."""
    return int.from_bytes(hashlib.sha256(aggregate_of.encode()).digest()[:8], "big")


def aggregate_row(record: AggregateOpen, classification: Classification) -> list[Any]:
    """The ``aggregate_opens`` row (`AGGREGATE_COLUMNS`): nothing of the client but who it was."""
    hour = datetime.fromtimestamp(record.received_at_ms // 3_600_000 * 3600, UTC)
    hit = hit_hash(record.aggregate_of)
    return [record.account, record.campaign_id, hour, who_of(classification), classification.reason, hit]


def plan_aggregate_insert(rows: Sequence[Sequence[Any]]) -> InsertPlan | None:
    """The batch's insert into ``aggregate_opens``, its deduplication token a digest of the rows' hashes (an
    identical retry is stored once); None without rows."""
    if not rows:
        return None
    digest = hashlib.sha256("\n".join(str(r[5]) for r in rows).encode()).hexdigest()[:32]
    return InsertPlan(AGGREGATE_TABLE, AGGREGATE_COLUMNS, rows, f"{AGGREGATE_TABLE}:{digest}")
