"""Amazon SNS's HTTPS delivery: the signed envelope SNS posts to a subscribed URL, which certificate URL may
be fetched to check it, the signature (versions 1 and 2), and which subscription may be confirmed. Pure: the
caller fetches the certificate (`deliveries.certificates`, only from a URL `certificate_url_allowed` accepts)
and makes the confirmation request; this module never does I/O.

What it must never do: accept a message whose certificate came from anywhere but an SNS host of Amazon's
(anyone can make a certificate and sign with it, so the URL it came from is the whole trust), or hand out a
SubscribeURL that is not SNS's own confirmation of the very topic that was signed (confirming a lookalike URL
would make the edge a request forger).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args
from urllib.parse import SplitResult, parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from deliveries.providers.fields import Fields, json_body
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned

SnsType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
SNS_TYPES: Final[tuple[str, ...]] = get_args(SnsType)

# An SNS endpoint: sns.<region>.amazonaws.com, or .amazonaws.com.cn in the China partition. GovCloud
# (us-gov-west-1, us-gov-east-1) follows the same rule: its hosts are Amazon's own, under amazonaws.com.
# Matched against the whole authority, so userinfo ("x@"), a port (":8443"), a trailing dot and any other
# host ("sns.us-east-1.amazonaws.com.evil.com", an IP address) are refused by the same test.
_REGION: Final = r"[a-z]{2}(?:-gov)?-[a-z]+-\d{1,2}"
_SNS_HOST: Final = re.compile(rf"sns\.(?P<region>{_REGION})\.amazonaws\.com(?P<cn>\.cn)?")
_CERT_PATH: Final = re.compile(r"/[A-Za-z0-9._\-/]*\.pem")
# arn:<partition>:sns:<region>:<account>:<topic>
_TOPIC_ARN: Final = re.compile(
    rf"arn:(?P<partition>aws|aws-cn|aws-us-gov):sns:(?P<region>{_REGION}):\d{{12}}:[A-Za-z0-9_\-.]{{1,256}}"
)
_PARTITION_SUFFIX: Final = {"aws": "", "aws-us-gov": "", "aws-cn": ".cn"}
# SNS signs these fields, in this order (AWS's documented string to sign), each as "Name\nvalue\n".
_CONFIRMATION_FIELDS: Final = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_REQUIRED: Final = (
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
)
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True, slots=True)
class SnsEnvelope:
    """One message SNS posted, as it came (the signature decoded from base64)."""

    type: SnsType
    message_id: str
    topic_arn: str
    message: str
    timestamp: str  # ISO 8601, UTC, as SNS wrote it (signed as written)
    timestamp_ms: int
    signature_version: str  # "1" (SHA1withRSA) or "2" (SHA256withRSA)
    signature: bytes
    signing_cert_url: str
    subject: str | None = None  # a Notification's Subject when the publisher gave one (signed only then)
    subscribe_url: str = ""  # confirmations only
    token: str = ""  # confirmations only

    def field(self, name: str) -> str | None:
        """A signed field by its SNS name."""
        return {
            "Message": self.message,
            "MessageId": self.message_id,
            "Subject": self.subject,
            "SubscribeURL": self.subscribe_url,
            "Timestamp": self.timestamp,
            "Token": self.token,
            "TopicArn": self.topic_arn,
            "Type": self.type,
        }[name]


def envelope(inbound: Inbound) -> SnsEnvelope:
    """The SNS message in a request's body: `Malformed` with the reason when it is not one, `Unsigned` when
    it carries no Signature or SigningCertURL."""
    body = json_body(inbound.body)
    if not isinstance(body, dict):
        raise Malformed("not an SNS message: the body is not a JSON object")
    kind = body.get("Type")
    if kind not in SNS_TYPES:
        raise Malformed(f"not an SNS message: Type {str(kind)[:40]!r}")
    said = inbound.headers.get("x-amz-sns-message-type")
    if said is not None and said != kind:
        raise Malformed(f"x-amz-sns-message-type {said[:40]!r} but Type {kind!r}")
    if not body.get("Signature") or not body.get("SigningCertURL"):
        raise Unsigned("an SNS message without Signature or SigningCertURL")
    confirmation = kind != "Notification"
    for name in _REQUIRED + (("SubscribeURL", "Token") if confirmation else ()):
        if not isinstance(body.get(name), str):
            raise Malformed(f"an SNS {kind} without {name} (a string)")
    subject = body.get("Subject")
    if subject is not None and not isinstance(subject, str):
        raise Malformed("an SNS Subject that is not a string")
    if body["SignatureVersion"] not in _HASHES:
        raise Malformed(f"SNS SignatureVersion {body['SignatureVersion'][:8]!r} (1 and 2 are read)")
    if _TOPIC_ARN.fullmatch(body["TopicArn"]) is None:
        raise Malformed(f"not an SNS topic ARN: {body['TopicArn'][:300]!r}")
    try:
        signature = base64.b64decode(body["Signature"], validate=True)
    except ValueError as exc:  # binascii.Error, or a str with other than ASCII (a plain ValueError)
        raise Malformed("the SNS Signature is not base64") from exc
    return SnsEnvelope(
        type=kind,
        message_id=body["MessageId"],
        topic_arn=body["TopicArn"],
        message=body["Message"],
        timestamp=body["Timestamp"],
        timestamp_ms=Fields(body).iso_ms("Timestamp"),
        signature_version=body["SignatureVersion"],
        signature=signature,
        signing_cert_url=body["SigningCertURL"],
        subject=subject,
        subscribe_url=body.get("SubscribeURL", "") if confirmation else "",
        token=body.get("Token", "") if confirmation else "",
    )


def _sns_region(netloc: str) -> tuple[str, bool] | None:
    """(region, China partition) of an SNS endpoint's authority; None for any other authority."""
    host = _SNS_HOST.fullmatch(netloc)
    return (host["region"], bool(host["cn"])) if host else None


def _split(url: str) -> SplitResult | None:
    """The URL's parts; None for a URL urlsplit refuses (ValueError for an unclosed "[" of an IPv6 host) or
    that an SNS URL never is: urlsplit drops tabs and newlines, so a URL that needs them is not SNS's."""
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None


def certificate_url_allowed(url: str) -> bool:
    """Whether a SigningCertURL may be fetched: https, an SNS host (``sns.<region>.amazonaws.com`` or
    ``.amazonaws.com.cn``) on the default port without userinfo, a path ending in ``.pem``, no query."""
    parts = _split(url)
    return (
        parts is not None
        and parts.scheme == "https"
        and _sns_region(parts.netloc) is not None
        and _CERT_PATH.fullmatch(parts.path) is not None
        and not parts.query
        and not parts.fragment
    )


def string_to_sign(sns: SnsEnvelope) -> bytes:
    """What SNS signed: each signed field of the message's Type as ``Name\\nvalue\\n``, in AWS's order; a
    Notification's Subject only when it has one."""
    lines: list[str] = []
    for name in _SIGNED_FIELDS[sns.type]:
        value = sns.field(name)
        if value is not None:
            lines += [name, value]
    return ("\n".join(lines) + "\n").encode()


def verify(sns: SnsEnvelope, certificate_pem: bytes, *, now_ms: int | None = None) -> None:
    """`Forged` unless the message is signed with the certificate's key (RSA PKCS#1 v1.5; SHA1 for version 1,
    SHA256 for version 2) and the certificate is valid now. The caller fetched the certificate from
    ``sns.signing_cert_url`` after `certificate_url_allowed` said yes; it is refused here again otherwise."""
    if not certificate_url_allowed(sns.signing_cert_url):
        raise Forged("the SNS SigningCertURL is not an SNS host of Amazon's")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise Forged("the SNS signing certificate is not a PEM certificate") from exc
    now = datetime.now(UTC) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Forged("the SNS signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Forged("the SNS signing certificate's key is not RSA")
    try:
        key.verify(sns.signature, string_to_sign(sns), padding.PKCS1v15(), _HASHES[sns.signature_version]())
    except InvalidSignature as exc:
        raise Forged("the SNS signature does not verify") from exc


def check_topic(sns: SnsEnvelope, topic_arns: Collection[str]) -> None:
    """`Forged` when the account accepts only some topics (``MailService.options["topic_arns"]``) and this
    message is not from one of them: a message SNS signed for someone else's topic is real but not ours.
    An empty collection accepts any topic."""
    if topic_arns and sns.topic_arn not in topic_arns:
        raise Forged("an SNS message from a topic this account does not accept")


def subscribe_url_allowed(sns: SnsEnvelope) -> bool:
    """Whether a SubscriptionConfirmation's SubscribeURL may be requested: https to the SNS host of the
    topic's own region and partition, default port, ``Action=ConfirmSubscription`` for this very topic and
    token."""
    topic = _TOPIC_ARN.fullmatch(sns.topic_arn)
    parts = _split(sns.subscribe_url)
    if sns.type != "SubscriptionConfirmation" or topic is None or parts is None:
        return False
    expected = (topic["region"], _PARTITION_SUFFIX[topic["partition"]] == ".cn")
    if parts.scheme != "https" or _sns_region(parts.netloc) != expected or parts.path not in ("", "/"):
        return False
    if parts.fragment:
        return False
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return False
    return (
        query.get("Action") == ["ConfirmSubscription"]
        and query.get("TopicArn") == [sns.topic_arn]
        and query.get("Token", [sns.token]) == [sns.token]
    )
