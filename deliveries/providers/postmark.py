"""Postmark's webhooks: the credentials (HTTP basic auth, which Postmark sends when the webhook URL carries
``https://user:password@host/...``) and the one record each request carries, read into a delivery event. Pure.

Records, by ``RecordType``:
- ``Delivery``: delivered. It has no id of its own: its event id is ``Delivery:<MessageID>:<Recipient>:
  <DeliveredAt>`` (one per recipient, and Postmark's retry repeats all three).
- ``Bounce``: by its ``Type``: hard for ``HardBounce``, ``BadEmailAddress`` and ``ManuallyDeactivated``
  (Postmark deactivates the address); soft for ``SoftBounce``, ``Transient``, ``DnsError``, ``Blocked``,
  ``SpamNotification``, ``VirusNotification``, ``DMARCPolicy`` (the address is not the problem); ``Unknown``,
  ``SMTPApiError`` and others: the codes decide (`deliveries.bounces.classify`). A ``SpamComplaint`` type is a
  complaint, ``Unsubscribe`` an unsubscribe; ``TemplateRenderingFailed`` and ``Unconfirmed`` (never sent) are
  dropped. ``AutoResponder``, ``AddressChange``, ``Subscribe``, ``ChallengeVerification``, ``OpenRelayTest``
  and ``InboundError`` say nothing of delivery (the message arrived; a machine replied) and are skipped.
  Event id: ``Bounce:<ID>``.
- ``SpamComplaint``: a complaint, event id ``SpamComplaint:<ID>``.
- ``SubscriptionChange``: an unsubscribe when it suppresses sending because the recipient asked
  (``SuppressSending`` true, ``Origin`` ``Recipient``, ``SuppressionReason`` ``ManualSuppression``: the
  unsubscribe link). Suppressions for a hard bounce or a complaint are skipped (their own webhooks brought
  them), as are reactivations and suppressions by the sender. Event id ``SubscriptionChange:<MessageID>:
  <Recipient>:<ChangedAt>``.
- ``Open``, ``Click`` and any other: skipped.
"""

from __future__ import annotations

import base64
import hmac
from typing import Final

from deliveries.bounces import ProviderSays, classify, smtp_code_of, smtp_status_of
from deliveries.providers.fields import Fields, delivery, json_body, ours
from deliveries.providers.inbound import Forged, Inbound, Unsigned
from schemas.delivery_events import DeliveryEvent, DeliveryKind
from schemas.secret import Secret

_HARD: Final = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_SOFT: Final = frozenset(
    {"SoftBounce", "Transient", "DnsError", "Blocked", "SpamNotification", "VirusNotification", "DMARCPolicy"}
)
_NOT_A_BOUNCE: Final[dict[str, DeliveryKind]] = {
    "SpamComplaint": "complaint",
    "Unsubscribe": "unsubscribe",
    "TemplateRenderingFailed": "dropped",
    "Unconfirmed": "dropped",
}
_SAYS_NOTHING_OF_DELIVERY: Final = frozenset(
    {"AutoResponder", "AddressChange", "Subscribe", "ChallengeVerification", "OpenRelayTest", "InboundError"}
)


def verify(inbound: Inbound, username: Secret, password: Secret) -> None:
    """`Unsigned` without basic-auth credentials, `Forged` unless both match the account's (compared in
    constant time, both always, so the time says nothing of which was wrong)."""
    scheme, _, encoded = inbound.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unsigned("no basic-auth credentials (put user:password@ in the webhook URL at Postmark)")
    try:
        user, colon, given = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error; a plain ValueError for other than ASCII), not UTF-8
        raise Forged("the credentials do not match the account's") from None
    user_ok = hmac.compare_digest(user.encode(), username.reveal().encode())
    password_ok = hmac.compare_digest(given.encode(), password.reveal().encode())
    if not (colon and user_ok and password_ok and username and password):
        raise Forged("the credentials do not match the account's")


def read(
    inbound: Inbound, username: Secret, password: Secret, *, now_ms: int | None = None
) -> list[DeliveryEvent]:
    """The delivery event of one authenticated request (none for a record that is not one). ``now_ms`` is
    not used: the credentials carry no time."""
    verify(inbound, username, password)
    record = Fields(json_body(inbound.body))
    kind = record.text("RecordType", required=True)
    one = {
        "Delivery": _delivered,
        "Bounce": _bounce,
        "SpamComplaint": _bounce,
        "SubscriptionChange": _subscription_change,
    }.get(kind, lambda _inbound, _record: None)(inbound, record)
    return [] if one is None else [one]


def _delivered(inbound: Inbound, record: Fields) -> DeliveryEvent:
    record.text("MessageID", required=True)
    return _unnumbered(
        inbound, record, "delivered", "DeliveredAt", "Delivery", diagnostic=record.text("Details")
    )


def _unnumbered(
    inbound: Inbound,
    record: Fields,
    kind: DeliveryKind,
    at_field: str,
    provider_type: str,
    *,
    diagnostic: str = "",
) -> DeliveryEvent:
    """A record Postmark gives no id of its own: its event id is its type, message, recipient and time (one
    per recipient; a retry repeats all four)."""
    message_id, recipient = record.text("MessageID"), record.text("Recipient")
    at = record.text(at_field, required=True)
    return delivery(
        inbound,
        "postmark",
        f"{record.text('RecordType')}:{message_id}:{recipient}:{at}",
        kind,
        record.iso_ms(at_field),
        ids=ours(record.object("Metadata")),
        provider_message_id=message_id,
        recipient=recipient,
        smtp_status=smtp_status_of(diagnostic),
        smtp_code=smtp_code_of(diagnostic),
        diagnostic=diagnostic,
        provider_type=provider_type,
    )


def _bounce(inbound: Inbound, record: Fields) -> DeliveryEvent | None:
    record_type = record.text("RecordType")
    bounce_type = record.text("Type") or record_type
    if bounce_type in _SAYS_NOTHING_OF_DELIVERY:
        return None
    kind: DeliveryKind = _NOT_A_BOUNCE.get(bounce_type, "bounce")
    if record_type == "SpamComplaint":
        kind = "complaint"
    says: ProviderSays = "hard" if bounce_type in _HARD else "soft" if bounce_type in _SOFT else ""
    diagnostic = record.text("Details") or record.text("Description")
    status, code = smtp_status_of(diagnostic), smtp_code_of(diagnostic)
    return delivery(
        inbound,
        "postmark",
        f"{record_type}:{record.text('ID', required=True)}",
        kind,
        record.iso_ms("BouncedAt"),
        ids=ours(record.object("Metadata")),
        provider_message_id=record.text("MessageID"),
        recipient=record.text("Email"),
        bounce_type=classify(says, status, code, diagnostic) if kind == "bounce" else "",
        smtp_status=status,
        smtp_code=code,
        diagnostic=diagnostic,
        provider_type=":".join(p for p in (bounce_type, record.text("TypeCode")) if p),
    )


def _subscription_change(inbound: Inbound, record: Fields) -> DeliveryEvent | None:
    asked = (
        record.flag("SuppressSending")
        and record.text("Origin") == "Recipient"
        and record.text("SuppressionReason") in ("ManualSuppression", "Unsubscribe")
    )
    if not asked:
        return None
    record.text("Recipient", required=True)
    reason = record.text("SuppressionReason")
    return _unnumbered(inbound, record, "unsubscribe", "ChangedAt", f"SubscriptionChange:{reason}")
