"""Our own delivery-event format, for any MTA without a webhook of its own (Postfix, Haraka, PowerMTA log
shippers): the signature (pixelpipe's webhook scheme, `schemas.webhook_signature`, in a
``Pixelpipe-Signature`` header) and the JSON ``{"events": [...]}``, read into delivery events. Pure. The
README documents the format ("Delivery events from any MTA").

The signature's time must lie within 72 hours before the edge took the request in (a shipper retries that
long, re-sending what it signed) and no more than 5 minutes after (clock skew): a captured request cannot be
replayed forever, and a replay within the window is harmless (the same ``id``, stored once).
"""

from __future__ import annotations

from typing import Final

from deliveries.bounces import ProviderSays, classify, smtp_code_of, smtp_status_of
from deliveries.providers.fields import Fields, delivery, json_body
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned
from schemas.delivery_events import DELIVERY_KINDS, DeliveryEvent, DeliveryKind
from schemas.secret import Secret
from schemas.webhook_signature import refusal

SIGNATURE_HEADER: Final = "pixelpipe-signature"
PAST_TOLERANCE_S: Final = 72 * 3600
FUTURE_TOLERANCE_S: Final = 300
_KINDS: Final[dict[str, DeliveryKind]] = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounce",
    "dropped": "dropped",
    "complaint": "complaint",
    "unsubscribe": "unsubscribe",
}
_BOUNCE_TYPES: Final[dict[str, ProviderSays]] = {"": "", "hard": "hard", "soft": "soft"}


def verify(inbound: Inbound, secret: Secret, *, now_ms: int) -> None:
    """`Unsigned` without the header, `Forged` unless it signs the body at a time within the tolerance."""
    header = inbound.headers.get(SIGNATURE_HEADER, "").strip()
    if not header:
        raise Unsigned("no Pixelpipe-Signature header")
    if not secret:
        raise Forged("the account has no signing secret")
    why = refusal(
        secret.reveal(),
        header,
        inbound.body,
        now=now_ms / 1000,
        past_s=PAST_TOLERANCE_S,
        future_s=FUTURE_TOLERANCE_S,
    )
    if why:
        raise Forged(why)


def read(inbound: Inbound, secret: Secret, *, now_ms: int | None = None) -> list[DeliveryEvent]:
    """The delivery events of one signed request, all or none. ``now_ms`` (default: when the edge took the
    request in) is what the signature's time is checked against."""
    verify(inbound, secret, now_ms=inbound.received_at_ms if now_ms is None else now_ms)
    body = Fields(json_body(inbound.body))
    events = body.raw("events")
    if not isinstance(events, list):
        raise Malformed("events is missing or not an array")
    return [_event(inbound, Fields(raw, f"events[{index}]")) for index, raw in enumerate(events)]


def _event(inbound: Inbound, fields: Fields) -> DeliveryEvent:
    name = fields.text("event", required=True)
    kind = _KINDS.get(name)
    if kind is None:
        raise Malformed(f"{fields.path('event')} is not one of {', '.join(DELIVERY_KINDS)}")
    says = _BOUNCE_TYPES.get(fields.text("bounce_type"))
    if says is None:
        raise Malformed(f"{fields.path('bounce_type')} is not hard or soft")
    if says and kind != "bounce":
        raise Malformed(f"{fields.path('bounce_type')} is only for a bounce")
    diagnostic = fields.text("diagnostic")
    status = fields.text("smtp_status") or smtp_status_of(diagnostic)
    code = fields.code("smtp_code") or smtp_code_of(diagnostic)
    return delivery(
        inbound,
        "generic",
        fields.text("id", required=True),
        kind,
        fields.time_ms("occurred_at"),
        ids=(fields.text("message_id"), fields.text("campaign_id")),
        provider_message_id=fields.text("provider_message_id"),
        recipient=fields.text("recipient"),
        bounce_type=classify(says, status, code, diagnostic) if kind == "bounce" else "",
        smtp_status=status,
        smtp_code=code,
        diagnostic=diagnostic,
        provider_type=name,
    )
