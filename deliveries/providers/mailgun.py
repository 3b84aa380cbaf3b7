"""Mailgun's webhooks: the signature (hex HMAC-SHA256 of timestamp + token under the account's webhook signing
key) and the event it carries, read into a delivery event. Pure. JSON webhooks only (Mailgun's current
format, one event per request); the legacy form-encoded webhooks are refused (400, saying so).

The signature travels inside the JSON (``{"signature": {...}, "event-data": {...}}``), so the body is
parsed before it is verified; nothing of ``event-data`` is read until it has.

Which events: ``delivered``; ``failed`` with ``severity`` ``temporary`` (Mailgun retries: deferred) or
``permanent`` (a hard bounce, Mailgun's own verdict; but a ``reason`` of ``suppress-bounce``,
``suppress-unsubscribe`` or ``suppress-complaint`` means Mailgun never tried, the address being on one of its
suppression lists: dropped); ``rejected`` (Mailgun refused to send it: dropped); ``complained``;
``unsubscribed``. ``accepted``, ``opened``, ``clicked``, ``stored`` and any other are skipped.

Two failure reasons are not Mailgun's verdict on the address: ``old`` (Mailgun gave up retrying after about
8 hours of temporary failures, "Too old"; sent as permanent, and by some accounts as temporary, but either
way the message is given up: a bounce) and ``espblock`` (the mailbox provider blocked the sender, as a
policy refusal). Mailgun's own hard bounces are an address that does not exist, and it puts neither of these
on its bounce list, so for them the codes decide (`deliveries.bounces.classify`).

The event's id is Mailgun's ``id`` with its ``timestamp`` in milliseconds (``id@ms``): Mailgun promises the id
unique within a day only, and a retry resends the same event data, so the pair is stable and unique.

The timestamp is not checked for age: Mailgun retries for hours, and a replay is harmless (the same
`delivery_id`, stored once).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from deliveries.bounces import ProviderSays, classify, smtp_code_of, smtp_status_of
from deliveries.providers.fields import Fields, delivery, json_body, ours
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, DeliveryKind
from schemas.secret import Secret

_KINDS: Final[dict[str, DeliveryKind]] = {
    "delivered": "delivered",
    "rejected": "dropped",
    "complained": "complaint",
    "unsubscribed": "unsubscribe",
}


def signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's signature: hex HMAC-SHA256 of ``timestamp + token`` under the webhook signing key."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify(body: Fields, key: Secret) -> None:
    """`Unsigned` without the signature's three fields, `Forged` unless ``signature`` or ``parent-signature``
    matches. Mailgun adds ``parent-signature`` (the same HMAC under the primary account's signing key) to the
    events of a subaccount's domains, so an account registered with its primary account's key takes them."""
    signed = body.object("signature")
    timestamp, token, given = (signed.text(k) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and given):
        raise Unsigned("no Mailgun signature (signature.timestamp, .token and .signature)")
    expected = signature(key.reveal(), timestamp, token).encode()
    # Both compared always, so the time says nothing of which one matched.
    matches = [
        hmac.compare_digest(expected, s.strip().lower().encode())
        for s in (given, signed.text("parent-signature"))
    ]
    if not key or not any(matches):
        raise Forged("the signature does not verify with the account's Mailgun signing key")


def read(inbound: Inbound, signing_key: Secret, *, now_ms: int | None = None) -> list[DeliveryEvent]:
    """The delivery event of one signed request (none for an event that is not one). ``now_ms`` is not used
    (see the module)."""
    if inbound.content_type.lower().startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise Malformed("a legacy form-encoded Mailgun webhook: use Mailgun's JSON webhooks")
    body = Fields(json_body(inbound.body))
    verify(body, signing_key)
    one = _event(inbound, body.object("event-data"))
    return [] if one is None else [one]


_NOT_ABOUT_THE_ADDRESS: Final = frozenset({"old", "espblock"})


def _kind(name: str, severity: str, reason: str) -> DeliveryKind | None:
    if name == "failed":
        if severity == "temporary" and reason != "old":
            return "deferred"
        return "dropped" if reason.startswith("suppress-") else "bounce"
    return _KINDS.get(name)


def _event(inbound: Inbound, data: Fields) -> DeliveryEvent | None:
    name = data.text("event", required=True)
    severity, reason = data.text("severity"), data.text("reason")
    kind = _kind(name, severity, reason)
    if kind is None:
        return None
    status = data.object("delivery-status")
    reject = data.object("reject")  # a rejected event says why here, having no delivery status
    diagnostic = status.text("message") or status.text("description") or reject.text("reason")
    smtp_status = status.text("enhanced-code") or smtp_status_of(diagnostic)
    code = status.code("code") or smtp_code_of(diagnostic)
    permanent = severity == "permanent" and reason not in _NOT_ABOUT_THE_ADDRESS
    provider_says: ProviderSays = "hard" if permanent else ""
    message_id = data.object("message").object("headers").text("message-id")
    occurred_ms = data.epoch_ms("timestamp")
    return delivery(
        inbound,
        "mailgun",
        # Mailgun's event id is unique within a day only; its retries carry the event's own timestamp.
        f"{data.text('id', required=True)}@{occurred_ms}",
        kind,
        occurred_ms,
        ids=ours(data.object("user-variables")),
        provider_message_id=message_id.strip().removeprefix("<").removesuffix(">"),
        recipient=data.text("recipient"),
        bounce_type=classify(provider_says, smtp_status, code, diagnostic) if kind == "bounce" else "",
        smtp_status=smtp_status,
        smtp_code=code,
        diagnostic=diagnostic,
        provider_type=":".join(p for p in (name, severity, reason) if p),
    )
