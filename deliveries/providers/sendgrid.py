"""SendGrid's Event Webhook: the signed request (ECDSA P-256 over the timestamp header and the raw body) and
its JSON array of events, read into delivery events. Pure.

Which events: ``delivered``, ``deferred``, ``bounce``, ``dropped``, ``spamreport`` (a complaint),
``unsubscribe`` and ``group_unsubscribe``. ``processed``, ``open``, ``click``, ``group_resubscribe`` and any
event SendGrid adds later are not delivery events and are skipped (pixelpipe counts opens and clicks itself).

A ``bounce`` of ``type`` ``"bounce"`` is hard and one of ``type`` ``"blocked"`` soft: SendGrid puts a bounced
address on its bounce suppression list and sends it nothing more, while a block (the receiver refused the
sender or the content: reputation, spam filter) suppresses nothing, and the next send may pass. Without a
``type`` the codes decide (`deliveries.bounces.classify`).

The signature's timestamp is not checked for age: SendGrid retries for up to 72 hours and says nothing of
re-signing, and a replayed request is harmless (its events have the same `delivery_id`, stored once).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from deliveries.bounces import ProviderSays, classify, smtp_code_of, smtp_status_of
from deliveries.providers.fields import Fields, delivery, json_body, ours
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, DeliveryKind
from schemas.secret import Secret

SIGNATURE_HEADER: Final = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER: Final = "x-twilio-email-event-webhook-timestamp"

_KINDS: Final[dict[str, DeliveryKind]] = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounce",
    "dropped": "dropped",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
_BOUNCE_TYPES: Final[dict[str, ProviderSays]] = {"bounce": "hard", "blocked": "soft"}


def verifying_key(value: Secret) -> ec.EllipticCurvePublicKey:
    """The account's verification key as SendGrid shows it (base64 of the DER SubjectPublicKeyInfo), or PEM;
    `ValueError` when it is neither or not a P-256 key (the API checks it at registration)."""
    text = value.reveal().strip()
    try:
        key = (
            load_pem_public_key(text.encode())
            if text.startswith("-----BEGIN")
            else load_der_public_key(base64.b64decode(text, validate=True))
        )
    except (ValueError, binascii.Error, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError("not a public key in base64 DER or PEM") from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("not an ECDSA P-256 public key")


def verify(inbound: Inbound, key: Secret) -> None:
    """`Unsigned` without the two headers, `Forged` unless the signature verifies with the account's key."""
    signature = inbound.headers.get(SIGNATURE_HEADER, "").strip()
    timestamp = inbound.headers.get(TIMESTAMP_HEADER, "").strip()
    if not signature or not timestamp:
        raise Unsigned("no signed event webhook headers (turn on the Signed Event Webhook at SendGrid)")
    try:
        verifying = verifying_key(key)
    except ValueError:
        raise Forged("the account's SendGrid key cannot verify signatures") from None
    try:
        der = base64.b64decode(signature, validate=True)
        verifying.verify(der, timestamp.encode() + inbound.body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        raise Forged("the signature does not verify with the account's SendGrid key") from None


def read(inbound: Inbound, public_key: Secret, *, now_ms: int | None = None) -> list[DeliveryEvent]:
    """The delivery events of one signed request, all or none. ``now_ms`` is not used (see the module)."""
    verify(inbound, public_key)
    body = json_body(inbound.body)
    if not isinstance(body, list):
        raise Malformed("the body is not a JSON array of events")
    events = []
    for index, raw in enumerate(body):
        one = _event(inbound, Fields(raw, f"events[{index}]"))
        if one is not None:
            events.append(one)
    return events


def _event(inbound: Inbound, fields: Fields) -> DeliveryEvent | None:
    name = fields.text("event", required=True)
    kind = _KINDS.get(name)
    if kind is None:
        return None
    diagnostic = fields.text("reason") or fields.text("response")
    status = fields.text("status") or smtp_status_of(diagnostic)
    code = smtp_code_of(diagnostic)
    bounce_type = fields.text("type") if kind == "bounce" else ""
    return delivery(
        inbound,
        "sendgrid",
        fields.text("sg_event_id", required=True),
        kind,
        fields.epoch_ms("timestamp"),
        ids=ours(fields),
        provider_message_id=fields.text("sg_message_id").partition(".")[0],
        recipient=fields.text("email"),
        bounce_type=classify(_BOUNCE_TYPES.get(bounce_type, ""), status, code, diagnostic)
        if kind == "bounce"
        else "",
        smtp_status=status,
        smtp_code=code,
        diagnostic=diagnostic,
        provider_type=f"{name}:{bounce_type}" if bounce_type else name,
    )
