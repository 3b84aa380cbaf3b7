"""Raw bounce and complaint reports, uploaded as a message (``message/rfc822``, the body the whole report):
an RFC 3464 delivery status notification (``multipart/report; report-type=delivery-status``) or an RFC 5965
feedback report (``report-type=feedback-report``), read into `DeliveryEvent`s with the standard library's
`email` package. The upload is authenticated with HTTP basic auth, checked as Postmark's is. Pure.

A DSN gives one event per recipient group of its ``message/delivery-status`` part, by its ``Action``:
``failed`` a bounce (hard or soft by `deliveries.bounces.classify` over its Status and Diagnostic-Code: a
report has no provider verdict), ``delayed`` deferred, ``delivered``/``relayed``/``expanded`` delivered.
An ARF report is a complaint about each ``Original-Rcpt-To`` (else the original's ``To``), unless its
Feedback-Type is ``not-spam`` (the recipient says it is wanted mail) or ``auth-failure`` (RFC 6591: a
receiver's report of a message failing SPF/DKIM/DMARC, which no recipient sent): nothing is stored, the answer
says why.

Ours comes from the returned original (``message/rfc822`` or ``text/rfc822-headers``): its
``X-Pixelpipe-Message-Id``/``X-Pixelpipe-Campaign-Id`` headers, and its ``Message-ID`` (without the angle
brackets) as the provider's message id. An event's id is a hash of the report's own Message-ID (of its bytes
when it has none) and the recipient: uploading the same report twice stores it once.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Final

from deliveries.bounces import classify, smtp_code_of, smtp_status_of
from deliveries.providers import postmark
from deliveries.providers.fields import delivery
from deliveries.providers.inbound import Inbound, Malformed, Unsigned
from schemas.delivery_events import BounceType, DeliveryEvent, DeliveryKind
from schemas.secret import Secret

CONTENT_TYPE: Final = "message/rfc822"
_LAST_MS: Final = 10_413_791_999_000  # the deliveries table's DateTime64(3) ends in 2299
_DSN_ACTIONS: Final[dict[str, DeliveryKind]] = {
    "failed": "bounce",
    "delayed": "deferred",
    "delivered": "delivered",
    "relayed": "delivered",  # to a system that sends no DSN: as far as anyone reports, delivered
    "expanded": "delivered",  # to an alias or list, which passed it on
}
_STATUS_PARTS: Final = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_PARTS: Final = ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")


def _raw_header(name: str, value: str) -> str:
    """A header's value as the report wrote it, unparsed (8-bit bytes read as UTF-8). `email.policy.default`
    would parse each header as it is read with its structured parsers, and those raise IndexError on some
    values (``Message-ID: <@>``): a report's bytes are anyone's, and every field read here is taken apart
    by this module itself."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# policy.default (RFC 5322 line endings, message/global parts) with headers read raw: see `_raw_header`.
_POLICY: Final = email.policy.default.clone(header_factory=_raw_header)


@dataclass(frozen=True, slots=True)
class ReportRead:
    """The events of one report, or none with ``skipped`` saying why (a not-spam or auth-failure report)."""

    events: tuple[DeliveryEvent, ...] = ()
    skipped: str = ""


def read(inbound: Inbound, username: Secret, password: Secret, *, now_ms: int | None = None) -> ReportRead:
    """The events of one uploaded report: `Unsigned` without basic-auth credentials, `Forged` when they are
    not the account's, `Malformed` with the reason when the body is not a DSN or ARF report. ``now_ms`` is
    not used (the readers' common shape): basic auth carries no time."""
    try:
        postmark.verify(inbound, username, password)
    except Unsigned:
        raise Unsigned("no basic-auth credentials (curl -u user:password)") from None
    media_type = inbound.content_type.partition(";")[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise Malformed(
            f"a report is uploaded as {CONTENT_TYPE}, not {media_type[:60] or 'no Content-Type'!r}"
        )
    return read_report(inbound)


def read_report(inbound: Inbound) -> ReportRead:
    """The events of the report in a request's body, its credentials already checked."""
    try:  # email parses and walks nested parts by recursion: a 60 KB body can nest past the stack's limit
        report = email.message_from_bytes(inbound.body, policy=_POLICY)
        parts = [part for part in report.walk() if part is not report]
    except RecursionError:
        raise Malformed("not a report: its MIME parts nest too deeply") from None
    if report.get_content_type() != "multipart/report":
        raise Malformed(
            f"not a report: a {report.get_content_type()} message, not multipart/report (RFC 6522)"
        )
    kind = str(report.get_param("report-type", "")).lower()
    original = _original(parts)
    report_id = _angle_free(report.get("Message-ID")) or "sha256:" + hashlib.sha256(inbound.body).hexdigest()
    about = _About(
        inbound=inbound,
        report_id=report_id,
        ids=(_header(original, "X-Pixelpipe-Message-Id"), _header(original, "X-Pixelpipe-Campaign-Id")),
        provider_message_id=_angle_free(_header(original, "Message-ID")),
    )
    dated = _millis(report.get("Date"))
    if kind == "delivery-status":
        return ReportRead(events=tuple(_delivery_status(parts, about, dated)))
    if kind == "feedback-report":
        return _feedback(parts, original, about, dated)
    raise Malformed(
        f"a multipart/report of report-type {kind[:40]!r}: delivery-status or feedback-report is read"
    )


@dataclass(frozen=True, slots=True)
class _About:
    """What every event of one report shares."""

    inbound: Inbound
    report_id: str
    ids: tuple[str, str]
    provider_message_id: str

    def event(
        self, event: DeliveryKind, recipient: str, when: int | None, provider_type: str, **codes: Any
    ) -> DeliveryEvent:
        """The event about ``recipient``; ``codes``: its SMTP fields and bounce type, when it has them."""
        return delivery(
            self.inbound,
            "report",
            hashlib.sha256(f"{self.report_id}\x1f{recipient}".encode()).hexdigest()[:32],
            event,
            self.inbound.received_at_ms if when is None else when,
            ids=self.ids,
            provider_message_id=self.provider_message_id,
            recipient=recipient,
            provider_type=provider_type,
            **codes,
        )


def _delivery_status(parts: Sequence[Message], about: _About, dated: int | None) -> list[DeliveryEvent]:
    status_part = next((p for p in parts if p.get_content_type() in _STATUS_PARTS), None)
    if status_part is None:
        raise Malformed("a delivery-status report without its message/delivery-status part")
    blocks = _blocks(status_part)
    if len(blocks) < 2:
        raise Malformed("a delivery-status report that names no recipient (no per-recipient fields)")
    per_message, per_recipient = blocks[0], blocks[1:]
    arrived = _millis(per_message.get("Arrival-Date"))
    events = []
    for number, group in enumerate(per_recipient, start=1):
        recipient = _address(group.get("Final-Recipient") or group.get("Original-Recipient"))
        action = (
            _text(group.get("Action")).partition("(")[0].strip().lower()
        )  # "failed (bad mailbox)": a comment
        if not recipient:
            raise Malformed(f"recipient group {number} of the delivery status has no Final-Recipient")
        event = _DSN_ACTIONS.get(action)
        if event is None:
            raise Malformed(f"recipient group {number}: Action {action[:20]!r} is not one of RFC 3464's")
        diagnostic = _typed_value(group.get("Diagnostic-Code"))
        status = smtp_status_of(_text(group.get("Status"))) or smtp_status_of(diagnostic)
        code = smtp_code_of(diagnostic)
        verdict: BounceType = classify("", status, code, diagnostic) if event == "bounce" else ""
        when = _first(_millis(group.get("Last-Attempt-Date")), dated, arrived)
        events.append(
            about.event(
                event,
                recipient,
                when,
                action,
                smtp_status=status,
                smtp_code=code,
                diagnostic=diagnostic,
                bounce_type=verdict,
            )
        )
    return events


def _feedback(
    parts: Sequence[Message], original: Message | None, about: _About, dated: int | None
) -> ReportRead:
    feedback_part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback_part is None:
        raise Malformed("a feedback report without its message/feedback-report part")
    blocks = _blocks(feedback_part)
    if not blocks:
        raise Malformed("a feedback report whose message/feedback-report part is empty")
    fields = blocks[0]
    feedback_type = _text(fields.get("Feedback-Type")).lower()
    if not feedback_type:
        raise Malformed("a feedback report without Feedback-Type (RFC 5965)")
    if feedback_type == "not-spam":
        return ReportRead(skipped="a not-spam feedback report: the recipient says the mail is wanted")
    if feedback_type == "auth-failure":
        return ReportRead(skipped="an authentication failure report (RFC 6591): no recipient complained")
    recipients = [_address(r) for r in fields.get_all("Original-Rcpt-To", [])]
    if not any(recipients) and original is not None:
        recipients = [parseaddr(_header(original, "To"))[1]]  # "Ann <ann@example.org>" -> the address
    when = _first(dated, _millis(fields.get("Arrival-Date")))
    # Mailbox providers often redact the recipient: the complaint still counts, matched by our message id.
    events = [about.event("complaint", r, when, feedback_type) for r in dict.fromkeys(recipients or [""])]
    return ReportRead(events=tuple(events))


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a report part (blank-line separated). `email` splits a message/delivery-status
    into them itself; any other type (message/feedback-report, message/global-delivery-status of RFC 6533)
    it reads as one message whose head is the first block and whose body holds the rest."""
    payload = part.get_payload(decode=False)
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message) and len(block) > 0]
    head: list[Message] = []
    if isinstance(payload, list):
        first = payload[0] if payload and isinstance(payload[0], Message) else None
        head = [first] if first is not None else []
        rest = first.get_payload(decode=False) if first is not None else ""
        text = rest if isinstance(rest, str) else ""
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    paragraphs = text.replace("\r\n", "\n").split("\n\n")
    parsed = [email.message_from_string(f"{p.strip()}\n", policy=_POLICY) for p in paragraphs]
    return [block for block in head + parsed if len(block) > 0]


def _original(parts: Sequence[Message]) -> Message | None:
    """The returned original message, or its headers, when the report carries it."""
    part = next((p for p in parts if p.get_content_type() in _ORIGINAL_PARTS), None)
    if part is None:
        return None
    payload = part.get_payload(decode=False)
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return email.message_from_string(text, policy=_POLICY)


def _text(value: object) -> str:
    """A field's value on one line (a folded field keeps its line break's spaces in `email`'s value)."""
    return " ".join(str(value).split()) if value is not None else ""


def _header(message: Message | None, name: str) -> str:
    return _text(message.get(name)) if message is not None else ""


def _typed_value(value: object) -> str:
    """The value of a typed DSN field (``smtp; 550 5.1.1 ...`` -> ``550 5.1.1 ...``)."""
    text = _text(value)
    kind, semicolon, rest = text.partition(";")
    return rest.strip() if semicolon and " " not in kind.strip() else text


def _address(value: object) -> str:
    return _angle_free(_typed_value(value))


def _angle_free(value: object) -> str:
    return _text(value).removeprefix("<").removesuffix(">").strip()


def _millis(value: object) -> int | None:
    """Epoch milliseconds of an RFC 5322 date field; None when absent or not a date (a report's dates are
    its sender's word, a bad one is no reason to refuse what it reports)."""
    if value is None:
        return None
    try:
        moment = parsedate_to_datetime(_text(value))
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": the zone is not known (RFC 5322), UTC is the best guess
        moment = moment.replace(tzinfo=UTC)
    millis = int(moment.timestamp() * 1000)
    return millis if 0 <= millis <= _LAST_MS else None


def _first(*candidates: int | None) -> int | None:
    return next((c for c in candidates if c is not None), None)
