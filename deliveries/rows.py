"""A matched delivery event as a row of ``deliveries``, and the insert of a batch with its deduplication
token. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, Final

from deliveries.matching import Matched

TABLE: Final = "deliveries"
COLUMNS: Final = (
    "delivery_id", "account", "campaign_id", "message_id", "recipient", "provider", "provider_event_id",
    "provider_message_id", "event", "bounce_type", "smtp_status", "smtp_code", "diagnostic", "provider_type",
    "matched_by", "unmatched_reason", "occurred_at", "received_at", "recipient_tag",
)  # fmt: skip


def row(m: Matched) -> list[Any]:
    """The row of one stored event. Times are integer milliseconds: clickhouse-connect writes them as the
    DateTime64(3) columns' ticks as they are."""
    e = m.event
    return [
        e.delivery_id, e.account, e.campaign_id, e.message_id, e.recipient, e.provider, e.provider_event_id,
        e.provider_message_id, e.event, e.bounce_type, e.smtp_status, e.smtp_code, e.diagnostic,
        e.provider_type, m.matched_by, m.unmatched_reason, e.occurred_at_ms, e.received_at_ms,
        m.recipient_tag,
    ]  # fmt: skip


def dedup_token(delivery_ids: Iterable[str]) -> str:
    """The batch's insert_deduplication_token: a digest of its delivery ids in order, so a retry of the same
    batch (the same records read again after a crash before the commit) is stored once."""
    return "deliveries:" + hashlib.sha256("\n".join(delivery_ids).encode()).hexdigest()[:32]


def first_of_each(batch: Sequence[Matched]) -> list[Matched]:
    """The batch without repeats of a delivery id (a provider's retry in the same batch), first kept. A repeat
    in another batch is a second row of the same id: counts read ``uniqExact(delivery_id)`` and the rollups
    keep sets of message hashes, so it counts once either way."""
    seen: set[str] = set()
    kept = []
    for m in batch:
        if m.event.delivery_id not in seen:
            seen.add(m.event.delivery_id)
            kept.append(m)
    return kept
