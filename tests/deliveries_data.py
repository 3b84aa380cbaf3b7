"""Delivery events for tests: one builder with the defaults a mail service's event has."""

from __future__ import annotations

from typing import Any

from schemas.delivery_events import DeliveryEvent, delivery_id

OCCURRED_MS = 1_764_000_000_000  # 2025-11-24


def delivery(
    provider_event_id: str, *, account: str = "acme", provider: str = "sendgrid", **fields: Any
) -> DeliveryEvent:
    """A ``delivered`` event (unless ``event`` says otherwise) of ``account`` at ``provider``."""
    values: dict[str, Any] = {
        "event": "delivered",
        "occurred_at_ms": OCCURRED_MS,
        "received_at_ms": OCCURRED_MS + 1000,
        **fields,
    }
    return DeliveryEvent(
        delivery_id=delivery_id(account, provider, provider_event_id),
        account=account,
        provider=provider,  # type: ignore[arg-type]  # tests name providers as text
        provider_event_id=provider_event_id,
        **values,
    )
