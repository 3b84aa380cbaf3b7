"""Stored delivery events for the tests of delivery notices, and how a test hands them to a running hub as the
delivery loader does (on the hub's event loop, after the events were stored)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from notices.wiring import Notifications
from schemas.delivery_events import DeliveryEvent, delivery_id

OCCURRED_MS = 1_700_000_100_000  # 2023-11-14T22:15:00Z

# What SendGrid's Event Webhook says of each, as the reader keeps it (the provider's own event name).
_DETAILS: dict[str, dict[str, Any]] = {
    "delivered": {"provider_type": "delivered", "smtp_code": 250, "diagnostic": "250 2.0.0 OK 1700000100"},
    "bounce": {
        "provider_type": "bounce",
        "bounce_type": "hard",
        "smtp_status": "5.1.1",
        "smtp_code": 550,
        "diagnostic": "550 5.1.1 The email account that you tried to reach does not exist.",
    },
    "complaint": {"provider_type": "spamreport"},
}


def delivery_event(event: str, message: str, seq: int = 1, **fields: Any) -> DeliveryEvent:
    """A SendGrid event about ``message`` of acme's campaign ``spring``, matched to its send (to
    ``<message>@example.com``) as the loader stores it; ``seq`` ms after `OCCURRED_MS`. ``fields`` replace
    any of these."""
    account = fields.get("account", "acme")
    provider_event_id = f"sg-{message}-{event}-{seq}"
    sample: dict[str, Any] = {
        "delivery_id": delivery_id(account, "sendgrid", provider_event_id),
        "account": account,
        "provider": "sendgrid",
        "provider_event_id": provider_event_id,
        "event": event,
        "occurred_at_ms": OCCURRED_MS + seq,
        "received_at_ms": OCCURRED_MS + seq + 700,
        "message_id": message,
        "campaign_id": "spring",
        "provider_message_id": f"sgmsg-{message}.filter0001",
        "recipient": f"{message}@example.com",
        **_DETAILS.get(event, {}),
    }
    return DeliveryEvent(**{**sample, **fields})


async def _hand_on(notifications: Notifications, events: Sequence[DeliveryEvent]) -> None:
    for listener in notifications.delivery_listeners():
        listener(events)
    await notifications.durable()


def stored_deliveries(notifications: Notifications, events: Sequence[DeliveryEvent]) -> Future[None]:
    """What the delivery loader does after storing ``events`` in a process served on another thread: call the
    listeners on the hub's event loop; the future completes once their notices are durable (handed to every
    sink). ``.result(timeout)`` from a thread, ``asyncio.wrap_future`` from a test's own loop."""
    hub = notifications.hub
    assert hub is not None
    assert hub._task is not None  # started: its loop is the process's
    return asyncio.run_coroutine_threadsafe(_hand_on(notifications, events), hub._task.get_loop())
