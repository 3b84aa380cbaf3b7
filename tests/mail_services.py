"""Test helpers for the mail services' webhooks (SendGrid, Mailgun, Postmark, our generic format): requests
signed as each provider signs them, and sample events shaped as each provider documents them, carrying our
``pixelpipe_message_id``/``pixelpipe_campaign_id``. Other helpers' tests build their requests with these."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deliveries.providers.inbound import Inbound
from schemas.webhook_signature import sign

T0 = 1_764_795_600  # 2025-12-03T21:00:00Z, in epoch seconds: the samples' time
RECEIVED_MS = (T0 + 60) * 1000  # when the edge takes the samples in


# --- signing, as each provider does ---


def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key pair: the private key (SendGrid's side) and the public key as SendGrid shows it to
    the account (base64 of the DER SubjectPublicKeyInfo)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign_sendgrid(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int = T0) -> dict[str, str]:
    """The Signed Event Webhook's headers: a base64 DER ECDSA signature (SHA-256) of timestamp + body."""
    signature = private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
    }


def sign_mailgun(
    key: str,
    event_data: Mapping[str, Any],
    *,
    timestamp: int = T0,
    token: str = "a8ce0edb2dd8301dee6c",  # noqa: S107  # a sample token, no secret
) -> dict[str, Any]:
    """A Mailgun webhook payload: ``signature`` (hex HMAC-SHA256 of timestamp + token) and ``event-data``."""
    mac = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": str(timestamp), "token": token, "signature": mac},
        "event-data": dict(event_data),
    }


def postmark_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header Postmark sends for a webhook URL with ``user:password@``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def sign_generic(secret: str, body: bytes, timestamp: int = T0) -> dict[str, str]:
    """Our generic format's header: ``Pixelpipe-Signature: t=...,v1=...``."""
    return {"Pixelpipe-Signature": sign(secret, timestamp, body)}


def inbound(
    body: bytes | Any,
    headers: Mapping[str, str] = {},  # read only
    *,
    account: str = "acme",
    received_at_ms: int = RECEIVED_MS,
) -> Inbound:
    """The request as the edge hands it to a reader: header names lower-cased, a non-bytes body as JSON."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Inbound(
        account, raw, {k.lower(): v for k, v in headers.items()}, received_at_ms, "application/json"
    )


# --- sample events, shaped as each provider documents them ---


def ours(message_id: str, campaign_id: str) -> dict[str, str]:
    return {"pixelpipe_message_id": message_id, "pixelpipe_campaign_id": campaign_id}


def sendgrid_event(
    event: str,
    sg_event_id: str,
    *,
    message_id: str = "m1",
    campaign_id: str = "spring",
    email: str = "ada@example.com",
    timestamp: int = T0,
    sg_message_id: str = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    **extra: Any,
) -> dict[str, Any]:
    """One Event Webhook event; our ids are custom args, which SendGrid puts at the event's top level."""
    shapes: dict[str, dict[str, Any]] = {
        "delivered": {"response": "250 2.0.0 OK 1764795600 ab12-v6si.123 - gsmtp", "ip": "168.1.1.1"},
        "deferred": {"response": "421 4.7.0 Try again later", "attempt": "2", "ip": "168.1.1.1"},
        "bounce": {
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account does not exist",
        },
        "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
        "open": {"useragent": "Mozilla/5.0", "ip": "255.255.255.255", "sg_machine_open": False},
        "click": {"url": "https://example.com/sale", "useragent": "Mozilla/5.0", "ip": "255.255.255.255"},
        "group_unsubscribe": {"asm_group_id": 10},
        "group_resubscribe": {"asm_group_id": 10},
    }
    shaped = {
        "email": email,
        "timestamp": timestamp,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["cat facts"],
        "sg_event_id": sg_event_id,
        "sg_message_id": sg_message_id,
        **shapes.get(event, {}),
        **ours(message_id, campaign_id),
    }
    return {**shaped, **extra}


def mailgun_event(
    event: str,
    event_id: str,
    *,
    message_id: str = "m1",
    campaign_id: str = "spring",
    recipient: str = "ada@example.com",
    timestamp: float = T0 + 0.908181,
    severity: str = "",
    reason: str = "",
    delivery_status: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One webhook's ``event-data``; our ids are user variables."""
    data: dict[str, Any] = {
        "id": event_id,
        "timestamp": timestamp,
        "log-level": "error" if event == "failed" else "info",
        "event": event,
        "recipient": recipient,
        "recipient-domain": recipient.partition("@")[2],
        "tags": ["spring"],
        "envelope": {"sender": "bob@mg.example.com", "transport": "smtp", "targets": recipient},
        "message": {
            "headers": {
                "to": recipient,
                "message-id": "20251203210000.1.ABCDEF@mg.example.com",
                "from": "Bob <bob@mg.example.com>",
                "subject": "Spring sale",
            },
            "size": 1024,
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
        "user-variables": ours(message_id, campaign_id),
    }
    if severity:
        data["severity"] = severity
    if reason:
        data["reason"] = reason
    if delivery_status is not None:
        data["delivery-status"] = dict(delivery_status)
    return {**data, **extra}


def postmark_delivery(
    *,
    message_id: str = "883953f4-6105-42a2-a16a-77a8eac79483",
    recipient: str = "ada@example.com",
    delivered_at: str = "2025-12-03T16:00:00-05:00",
    ids: tuple[str, str] = ("m1", "spring"),
) -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": recipient,
        "Tag": "spring",
        "DeliveredAt": delivered_at,
        "Details": "smtp;250 2.0.0 OK",
        "Metadata": ours(*ids),
    }


def postmark_bounce(
    bounce_id: int,
    bounce_type: str = "HardBounce",
    *,
    type_code: int = 1,
    record_type: str = "Bounce",
    message_id: str = "883953f4-6105-42a2-a16a-77a8eac79483",
    email: str = "ada@example.com",
    bounced_at: str = "2025-12-03T16:00:00.2735393-05:00",
    details: str = "smtp;550 5.1.1 The email account that you tried to reach does not exist",
    ids: tuple[str, str] = ("m1", "spring"),
) -> dict[str, Any]:
    """A Bounce record (a SpamComplaint record has the same shape with its own RecordType and Type)."""
    return {
        "RecordType": record_type,
        "ID": bounce_id,
        "Type": bounce_type,
        "TypeCode": type_code,
        "Name": bounce_type,
        "Tag": "spring",
        "MessageID": message_id,
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message.",
        "Details": details,
        "Email": email,
        "From": "bob@example.com",
        "BouncedAt": bounced_at,
        "DumpAvailable": True,
        "Inactive": bounce_type == "HardBounce",
        "CanActivate": True,
        "Subject": "Spring sale",
        "Metadata": ours(*ids),
    }


def postmark_subscription_change(
    *,
    suppress: bool = True,
    origin: str = "Recipient",
    reason: str = "ManualSuppression",
    recipient: str = "ada@example.com",
    changed_at: str = "2025-12-03T21:05:00Z",
    ids: tuple[str, str] = ("m1", "spring"),
) -> dict[str, Any]:
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": changed_at,
        "Recipient": recipient,
        "Origin": origin,
        "SuppressSending": suppress,
        "SuppressionReason": reason,
        "Tag": "spring",
        "Metadata": ours(*ids),
    }


def generic_event(event_id: str, event: str, **fields: Any) -> dict[str, Any]:
    """One event of our generic format; ``fields`` adds or overrides the optional ones."""
    return {
        "id": event_id,
        "event": event,
        "occurred_at": "2025-12-03T21:00:00Z",
        "message_id": "m1",
        "campaign_id": "spring",
        "recipient": "ada@example.com",
        **fields,
    }
