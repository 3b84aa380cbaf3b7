"""Deliveries: which webhook gets which notice (`plan_deliveries`, pure), under which id (`delivery_id`,
deterministic, so a replayed notice is the same delivery) and with which body (`webhook_body`).

Must never give a notice to a webhook of another account, or to one that did not ask for its type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from schemas.notices import Notice, Webhook, created_at_iso, notice_data, wanted_by


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice for one webhook. ``lane``: deliveries of one lane go out one at a time, in order."""

    delivery_id: str
    webhook_id: str
    lane: str
    notice_id: str
    account: str
    message_id: str
    type: str
    body: bytes
    recipient_tag: str = ""  # hex; how an erasure finds the delivery ("" in rows from before it was kept)


def delivery_id(webhook_id: str, notice_id: str) -> str:
    """Deterministic: the same notice for the same webhook is the same delivery, however often it comes."""
    return "dlv_" + hashlib.sha256(f"{webhook_id}\x1f{notice_id}".encode()).hexdigest()[:32]


def webhook_body(notice: Notice) -> bytes:
    """``{"id", "type", "created_at", "data"}``; ``id`` is the notice's (the hit's) id, for deduplication."""
    return orjson.dumps(
        {
            "id": notice.id,
            "type": notice.type,
            "created_at": created_at_iso(notice),
            "data": notice_data(notice),
        }
    )


def plan_deliveries(
    notices: Iterable[Notice], webhooks_of: Callable[[str], Sequence[Webhook]]
) -> list[Delivery]:
    """Every (notice, webhook) pair the webhook's account and events ask for, in notice order. Pure."""
    deliveries = []
    for n in notices:
        body: bytes | None = None
        for webhook in webhooks_of(n.account):
            if webhook.account != n.account or not wanted_by(webhook.events, n):
                continue
            body = body or webhook_body(n)
            deliveries.append(
                Delivery(
                    delivery_id=delivery_id(webhook.webhook_id, n.id),
                    webhook_id=webhook.webhook_id,
                    lane=f"{webhook.webhook_id}\x1f{n.account}\x1f{n.message_id}",
                    notice_id=n.id,
                    account=n.account,
                    message_id=n.message_id,
                    type=n.type,
                    body=body,
                    recipient_tag=n.recipient_tag,
                )
            )
    return deliveries
