"""Test helpers for Amazon SES through SNS and for raw reports: a self-signed certificate and key standing in
for SNS's, SNS messages signed as SNS signs them (versions 1 and 2, the string to sign built here on its own
from AWS's documented field order, not with the code under test), SES notification bodies in both shapes
(notifications and event publishing) carrying our tags, and RFC 3464 DSN and RFC 5965 ARF messages. All
written from the documented formats."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from deliveries.providers.inbound import Inbound

REGION = "us-east-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:pixelpipe-ses-events"
CERT_URL = (
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
NOW_MS = 1_796_330_000_000  # 2026-12-03, inside the test certificate's validity
SNS_TIME = "2026-12-03T20:33:20.000Z"  # NOW_MS as SNS writes it
ACCOUNT = "acct-ses"
CONFIRMATION_TOKEN = "2336412f37fb687f5d51e6e2425c464de12884ea1d01"


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: rsa.RSAPrivateKey
    certificate_pem: bytes


@functools.cache
def signing_key(
    not_before: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    not_after: dt.datetime = dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
) -> SigningKey:
    """An RSA key and a self-signed certificate for it, valid between the two times (cached: RSA keys are
    slow to make)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return SigningKey(key, certificate.public_bytes(serialization.Encoding.PEM))


def _string_to_sign(fields: Mapping[str, str]) -> bytes:
    if fields["Type"] == "Notification":
        names: Sequence[str] = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        names = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    return "".join(f"{name}\n{fields[name]}\n" for name in names if name in fields).encode()


def sign(fields: dict[str, str], key: SigningKey | None = None) -> dict[str, str]:
    """``fields`` with Signature added, as SNS signs: SHA1withRSA for SignatureVersion 1, SHA256withRSA
    for 2."""
    key = key or signing_key()
    # SNS's version 1 is SHA1withRSA: the test signs as SNS does
    digest = hashes.SHA1() if fields["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
    signature = key.key.sign(_string_to_sign(fields), padding.PKCS1v15(), digest)
    return {**fields, "Signature": base64.b64encode(signature).decode()}


def notification(
    message: str,
    *,
    version: str = "2",
    message_id: str | None = None,
    subject: str | None = None,
    topic_arn: str = TOPIC_ARN,
    cert_url: str = CERT_URL,
    key: SigningKey | None = None,
) -> dict[str, str]:
    """A signed SNS Notification carrying ``message``."""
    fields = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": message,
        "Timestamp": SNS_TIME,
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:1",
    }
    if subject is not None:
        fields["Subject"] = subject
    return sign(fields, key)


def confirmation(
    kind: str = "SubscriptionConfirmation",
    *,
    version: str = "1",
    topic_arn: str = TOPIC_ARN,
    subscribe_url: str | None = None,
    token: str = CONFIRMATION_TOKEN,
    key: SigningKey | None = None,
) -> dict[str, str]:
    """A signed SNS SubscriptionConfirmation (or UnsubscribeConfirmation) of ``topic_arn``."""
    region = topic_arn.split(":")[3]
    host = f"sns.{region}.amazonaws.com" + (".cn" if topic_arn.startswith("arn:aws-cn:") else "")
    fields = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic_arn,
        "Message": f"You have chosen to subscribe to the topic {topic_arn}.",
        "SubscribeURL": subscribe_url
        or f"https://{host}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}",
        "Timestamp": SNS_TIME,
        "SignatureVersion": version,
        "SigningCertURL": f"https://{host}/SimpleNotificationService-0000000000000000000000.pem",
    }
    return sign(fields, key)


def inbound(body: Mapping[str, Any] | bytes, *, account: str = ACCOUNT, content_type: str = "") -> Inbound:
    """A request as the ingest hands it to a reader (SNS posts its JSON as text/plain)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {} if isinstance(body, bytes) else {"x-amz-sns-message-type": str(body.get("Type", ""))}
    return Inbound(
        account=account,
        body=raw,
        headers=headers,
        received_at_ms=NOW_MS + 5_000,
        content_type=content_type or "text/plain; charset=UTF-8",
    )


def ses_mail(
    *,
    message_id: str = "0100018c-ses-message-1",
    destination: Sequence[str] = ("ann@example.org",),
    ours: tuple[str, str] | None = ("msg-1", "camp-1"),
    publishing: bool = True,
) -> dict[str, Any]:
    """SES's mail object: our ids as message tags (event publishing) or as original headers (notifications
    with the original headers included)."""
    mail: dict[str, Any] = {
        "timestamp": "2026-12-03T21:00:00.000Z",
        "messageId": message_id,
        "source": "news@sender.example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender.example.com",
        "sendingAccountId": "123456789012",
        "destination": list(destination),
    }
    if ours is not None and publishing:
        mail["tags"] = {
            "ses:configuration-set": ["pixelpipe"],
            "pixelpipe_message_id": [ours[0]],
            "pixelpipe_campaign_id": [ours[1]],
        }
    elif ours is not None:
        mail["headersTruncated"] = False
        mail["headers"] = [
            {"name": "From", "value": "news@sender.example.com"},
            {"name": "X-Pixelpipe-Message-Id", "value": ours[0]},
            {"name": "X-Pixelpipe-Campaign-Id", "value": ours[1]},
        ]
    return mail


def ses_record(kind: str, detail: Mapping[str, Any] | None, *, publishing: bool = True, **mail: Any) -> str:
    """An SES notification (``notificationType``) or event-publishing record (``eventType``) as the JSON
    string SNS carries in its Message; ``detail`` is the type's own object (``bounce``, ``deliveryDelay``,
    ...)."""
    record: dict[str, Any] = {
        ("eventType" if publishing else "notificationType"): kind,
        "mail": ses_mail(publishing=publishing, **mail),
    }
    if detail is not None:
        record[_DETAIL_NAMES[kind]] = dict(detail)
    return orjson.dumps(record).decode()


_DETAIL_NAMES = {
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "DeliveryDelay": "deliveryDelay",
    "Reject": "reject",
    "Subscription": "subscription",
    "Send": "send",
    "Open": "open",
    "Click": "click",
    "Rendering Failure": "failure",
}


def _original(message_id: str, ours: tuple[str, str] | None, to: str) -> str:
    """The original message's head (and a line of body), as a report returns it."""
    headers = {
        "From": "news@sender.example.com",
        "To": to,
        "Subject": "December news",
        "Date": "Thu, 03 Dec 2026 21:00:00 +0000",
        "Message-ID": f"<{message_id}>",
    }
    if ours is not None:
        headers |= {"X-Pixelpipe-Message-Id": ours[0], "X-Pixelpipe-Campaign-Id": ours[1]}
    return "".join(f"{name}: {value}\n" for name, value in headers.items())


def _report(
    head: Mapping[str, str | None],
    report_type: str,
    human: str,
    machine: tuple[str, str],
    original: tuple[str | None, str],
) -> bytes:
    """A multipart/report (RFC 6522): the human-readable part, the machine-readable part, the original."""
    boundary = "==report-boundary-7f3a=="
    lines = [f"{name}: {value}" for name, value in head.items() if value is not None]
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{boundary}"',
    ]
    parts = [("text/plain; charset=us-ascii", human), machine]
    how, text = original
    if how == "message/rfc822":
        parts.append((how, text + "\nHello.\n"))
    elif how is not None:
        parts.append((how, text))
    body = "".join(f"--{boundary}\nContent-Type: {kind}\n\n{content}\n" for kind, content in parts)
    return ("\n".join(lines) + "\n\n" + body + f"--{boundary}--\n").replace("\n", "\r\n").encode()


def dsn(
    recipients: Sequence[Mapping[str, str]],
    *,
    reporting_mta: str = "dns; mx.example.net",
    report_id: str | None = "20261203211400.A1B2C3@mx.example.net",
    date: str = "Thu, 03 Dec 2026 21:14:00 +0000",
    per_message: Mapping[str, str] | None = None,
    original: str | None = "message/rfc822",
    ours: tuple[str, str] | None = ("msg-1", "camp-1"),
    original_id: str = "orig-1@sender.example.com",
    human: str = "This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you...\n",
) -> bytes:
    """An RFC 3464 delivery status notification: ``recipients`` are the per-recipient groups (fields as
    given, in order), ``original`` how the original comes back (message/rfc822, text/rfc822-headers, None)."""
    head = {
        "From": "MAILER-DAEMON@mx.example.net (Mail Delivery System)",
        "To": "bounces@sender.example.com",
        "Subject": "Undelivered Mail Returned to Sender",
        "Date": date,
        "Message-ID": f"<{report_id}>" if report_id is not None else None,
    }
    per_message_fields = {"Reporting-MTA": reporting_mta, "Arrival-Date": "Thu, 03 Dec 2026 21:00:02 +0000"}
    blocks = [per_message_fields | dict(per_message or {}), *recipients]
    status = "\n".join("".join(f"{name}: {value}\n" for name, value in block.items()) for block in blocks)
    first = str(recipients[0].get("Final-Recipient", "")).partition(";")[2].strip() if recipients else ""
    returned = (original, _original(original_id, ours, first))
    return _report(head, "delivery-status", human, ("message/delivery-status", status), returned)


def arf(
    *,
    feedback_type: str = "abuse",
    recipients: Sequence[str] = ("ann@example.org",),
    report_id: str | None = "arf-20261203-1@feedback.example.net",
    date: str = "Thu, 03 Dec 2026 21:20:00 +0000",
    fields: Mapping[str, str] | None = None,
    original: str | None = "message/rfc822",
    ours: tuple[str, str] | None = ("msg-1", "camp-1"),
    original_id: str = "orig-1@sender.example.com",
    to: str = "ann@example.org",
) -> bytes:
    """An RFC 5965 feedback report (as AOL or Yahoo send for a "this is spam" click)."""
    head = {
        "From": "<scomp@feedback.example.net>",
        "To": "fbl@sender.example.com",
        "Subject": "Email Feedback Report for IP 192.0.2.10",
        "Date": date,
        "Message-ID": f"<{report_id}>" if report_id is not None else None,
    }
    lines = {
        "Feedback-Type": feedback_type,
        "User-Agent": "ExampleFBL/1.0",
        "Version": "1",
        "Original-Mail-From": "<bounces@sender.example.com>",
        "Arrival-Date": "Thu, 03 Dec 2026 21:00:05 +0000",
        "Source-IP": "192.0.2.10",
        **(fields or {}),
    }
    text = "".join(f"{name}: {value}\n" for name, value in lines.items())
    text += "".join(f"Original-Rcpt-To: {r}\n" for r in recipients)
    human = "This is an email abuse report for an email message received from IP 192.0.2.10.\n"
    returned = (original, _original(original_id, ours, to))
    return _report(head, "feedback-report", human, ("message/feedback-report", text), returned)
