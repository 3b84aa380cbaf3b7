"""Uploaded bounce and complaint reports (deliveries/providers/reports.py): RFC 3464 DSNs as Postfix, Exim and
Gmail write them (one and several recipients, failed, delayed, relayed), RFC 5965 feedback reports as AOL and
Yahoo send them, the basic-auth check, and what is refused as not a report, with its reason."""

from __future__ import annotations

import hashlib

import pytest

from deliveries.providers import reports
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests import sns_signing as samples
from tests.mail_services import postmark_auth

USER, PASSWORD = Secret("reports"), Secret("s3cret-upload")
RECEIVED = 1_796_335_000_000
REPORT_MS = 1_796_332_440_000  # the DSN sample's Date: Thu, 03 Dec 2026 21:14:00 +0000
ARF_MS = 1_796_332_800_000  # the ARF sample's Date: Thu, 03 Dec 2026 21:20:00 +0000
DSN_ID = "20261203211400.A1B2C3@mx.example.net"
ARF_ID = "arf-20261203-1@feedback.example.net"


def _read(
    body: bytes, *, auth: tuple[str, str] = ("reports", "s3cret-upload"), content_type: str = ""
) -> reports.ReportRead:
    headers = {k.lower(): v for k, v in postmark_auth(*auth).items()}
    return reports.read(
        Inbound("acct-r", body, headers, RECEIVED, content_type or "message/rfc822"), USER, PASSWORD
    )


def _event(report_id: str, recipient: str, **fields: object) -> DeliveryEvent:
    provider_event_id = hashlib.sha256(f"{report_id}\x1f{recipient}".encode()).hexdigest()[:32]
    defaults: dict[str, object] = {
        "delivery_id": delivery_id("acct-r", "report", provider_event_id),
        "account": "acct-r",
        "provider": "report",
        "provider_event_id": provider_event_id,
        "received_at_ms": RECEIVED,
        "occurred_at_ms": REPORT_MS,
        "message_id": "msg-1",
        "campaign_id": "camp-1",
        "provider_message_id": "orig-1@sender.example.com",
        "recipient": recipient,
    }
    return DeliveryEvent(**(defaults | fields))  # type: ignore[arg-type]


POSTFIX_USER_UNKNOWN = {
    "Final-Recipient": "rfc822; ann@example.org",
    "Original-Recipient": "rfc822;ann@example.org",
    "Action": "failed",
    "Status": "5.1.1",
    "Remote-MTA": "dns; mx1.example.org",
    # folded as Postfix folds a long line
    "Diagnostic-Code": "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected:\n    User unknown in"
    " virtual mailbox table",
}


@pytest.mark.parametrize("original", ["message/rfc822", "text/rfc822-headers"])
def test_a_postfix_user_unknown_is_a_hard_bounce_with_our_ids_from_the_original(original: str) -> None:
    body = samples.dsn(
        [POSTFIX_USER_UNKNOWN],
        reporting_mta="dns; mail.sender.example.com",
        per_message={
            "X-Postfix-Queue-ID": "4F1A2B3C4D",
            "X-Postfix-Sender": "rfc822; bounces@sender.example.com",
        },
        original=original,
    )
    diagnostic = (
        "550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    expected = _event(
        DSN_ID,
        "ann@example.org",
        event="bounce",
        bounce_type="hard",
        smtp_status="5.1.1",
        smtp_code=550,
        diagnostic=diagnostic,
        provider_type="failed",
    )
    assert _read(body) == reports.ReportRead(events=(expected,))


def test_an_exim_mailbox_full_with_a_catch_all_status_is_a_soft_bounce() -> None:
    exim = {
        "Action": "failed",
        "Final-Recipient": "rfc822;bob@example.org",
        "Status": "5.0.0",
        "Remote-MTA": "dns; mx.example.org",
        "Diagnostic-Code": "smtp; 552 Mailbox full: bob@example.org",
    }
    (event,) = _read(samples.dsn([exim], reporting_mta="dns; mail.sender.example.com")).events
    assert (event.recipient, event.bounce_type, event.smtp_status, event.smtp_code, event.diagnostic) == (
        "bob@example.org",
        "soft",
        "5.0.0",
        552,
        "552 Mailbox full: bob@example.org",
    )


def test_a_gmail_style_report_of_several_recipients_is_one_event_each_at_its_last_attempt() -> None:
    groups = [
        {
            "Final-Recipient": "rfc822; ann@example.org",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; gmail-smtp-in.l.google.com. (192.0.2.27, the server for the domain.)",
            "Diagnostic-Code": "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
            "Last-Attempt-Date": "Thu, 03 Dec 2026 13:14:01 -0800 (PST)",
        },
        {
            "Final-Recipient": "rfc822; bob@example.org",
            "Action": "failed",
            "Status": "5.7.1",
            "Diagnostic-Code": "smtp; 550-5.7.1 [192.0.2.10] Our system has detected an unusual rate of spam",
            "Last-Attempt-Date": "Thu, 03 Dec 2026 13:14:02 -0800 (PST)",
        },
        {
            "Final-Recipient": "rfc822; cid@example.org",
            "Action": "delayed",
            "Status": "4.2.2",
            "Diagnostic-Code": "smtp; 452-4.2.2 The email account that you tried to reach is over quota.",
            "Will-Retry-Until": "Fri, 04 Dec 2026 13:14:00 -0800 (PST)",
        },
    ]
    body = samples.dsn(groups, reporting_mta="dns; googlemail.com", report_id="CAgmail-0001@mail.gmail.com")
    read = _read(body)
    assert [
        (e.recipient, e.event, e.bounce_type, e.smtp_status, e.smtp_code, e.occurred_at_ms)
        for e in read.events
    ] == [
        ("ann@example.org", "bounce", "hard", "5.1.1", 550, REPORT_MS + 1_000),
        (
            "bob@example.org",
            "bounce",
            "soft",
            "5.7.1",
            550,
            REPORT_MS + 2_000,
        ),  # a spam block: not the address
        ("cid@example.org", "deferred", "", "4.2.2", 452, REPORT_MS),  # no attempt date: the report's
    ]
    assert len({e.delivery_id for e in read.events}) == 3


def test_a_delayed_report_is_deferred() -> None:
    delayed = {
        "Final-Recipient": "rfc822; ann@example.org",
        "Action": "delayed",
        "Status": "4.4.1",
        "Diagnostic-Code": "X-Postfix; connect to mx.example.org[198.51.100.7]:25: Connection timed out",
        "Will-Retry-Until": "Sun, 06 Dec 2026 21:00:02 +0000",
    }
    expected = _event(
        DSN_ID,
        "ann@example.org",
        event="deferred",
        smtp_status="4.4.1",
        diagnostic="connect to mx.example.org[198.51.100.7]:25: Connection timed out",
        provider_type="delayed",
    )
    assert _read(samples.dsn([delayed])) == reports.ReportRead(events=(expected,))


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_a_success_report_is_delivered(action: str) -> None:
    group = {"Final-Recipient": "rfc822; ann@example.org", "Action": action, "Status": "2.0.0"}
    (event,) = _read(samples.dsn([group])).events
    assert (event.event, event.bounce_type, event.smtp_status, event.provider_type) == (
        "delivered",
        "",
        "2.0.0",
        action,
    )


def test_a_report_without_a_message_id_is_identified_by_its_bytes_and_counts_once() -> None:
    body = samples.dsn([POSTFIX_USER_UNKNOWN], report_id=None, original=None)
    first, again = _read(body), _read(body)
    report_id = "sha256:" + hashlib.sha256(body).hexdigest()
    assert first == again
    assert (
        first.events[0].provider_event_id,
        first.events[0].message_id,
        first.events[0].provider_message_id,
    ) == (
        hashlib.sha256(f"{report_id}\x1fann@example.org".encode()).hexdigest()[:32],
        "",
        "",
    )


def test_a_yahoo_style_abuse_report_is_a_complaint_about_the_original_recipient() -> None:
    body = samples.arf(fields={"User-Agent": "Yahoo!-Mail-Feedback/2.0"}, recipients=["ann@example.org"])
    expected = _event(
        ARF_ID, "ann@example.org", event="complaint", provider_type="abuse", occurred_at_ms=ARF_MS
    )
    assert _read(body) == reports.ReportRead(events=(expected,))


def test_an_aol_style_report_without_original_rcpt_to_names_the_originals_to() -> None:
    body = samples.arf(
        fields={"User-Agent": "AOLSComp", "Version": "1"},
        recipients=[],
        to="bob@example.org",
        date="not a date",
    )
    expected = _event(
        ARF_ID,
        "bob@example.org",
        event="complaint",
        provider_type="abuse",
        occurred_at_ms=1_796_331_605_000,  # no Date to read: the Arrival-Date
    )
    assert _read(body) == reports.ReportRead(events=(expected,))


def test_a_redacted_report_is_still_a_complaint_about_our_message() -> None:
    (event,) = _read(samples.arf(recipients=[], original="text/rfc822-headers", to="redacted")).events
    assert (event.event, event.recipient, event.message_id, event.campaign_id) == (
        "complaint",
        "redacted",
        "msg-1",
        "camp-1",
    )
    (anonymous,) = _read(samples.arf(recipients=[], original=None, ours=None)).events
    assert (anonymous.recipient, anonymous.message_id) == ("", "")


@pytest.mark.parametrize("feedback_type", ["fraud", "virus", "other"])
def test_other_feedback_types_are_complaints_of_their_type(feedback_type: str) -> None:
    (event,) = _read(samples.arf(feedback_type=feedback_type)).events
    assert (event.event, event.provider_type) == ("complaint", feedback_type)


def test_a_not_spam_report_is_skipped_and_says_why() -> None:
    assert _read(samples.arf(feedback_type="not-spam")) == reports.ReportRead(
        skipped="a not-spam feedback report: the recipient says the mail is wanted"
    )


def test_an_action_with_a_comment_is_read_without_it() -> None:
    group = {
        "Final-Recipient": "rfc822; ann@example.org",
        "Action": "Failed (bad destination)",
        "Status": "5.1.1",
    }
    (event,) = _read(samples.dsn([group])).events
    assert (event.event, event.bounce_type, event.provider_type) == ("bounce", "hard", "failed")


def test_an_authentication_failure_report_is_no_complaint_and_says_why() -> None:
    # RFC 6591: a receiver reports a message that failed SPF/DKIM/DMARC; no recipient complained.
    fields = {"Auth-Failure": "dmarc", "Authentication-Results": "mx.example.net; dmarc=fail"}
    assert _read(samples.arf(feedback_type="auth-failure", fields=fields)) == reports.ReportRead(
        skipped="an authentication failure report (RFC 6591): no recipient complained"
    )


def test_without_credentials_the_upload_is_unsigned_and_with_wrong_ones_forged() -> None:
    body = samples.dsn([POSTFIX_USER_UNKNOWN])
    with pytest.raises(Unsigned, match="curl -u"):
        reports.read(Inbound("acct-r", body, {}, RECEIVED, "message/rfc822"), USER, PASSWORD)
    with pytest.raises(Forged):
        _read(body, auth=("reports", "guess"))
    with pytest.raises(Forged):
        _read(b"not even a report", auth=("other", "s3cret-upload"))


STATUS_ONLY_PER_MESSAGE = (
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n--b--\r\n"
)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (
            b"From: a@example.org\r\nSubject: hi\r\n\r\nHello\r\n",
            "",
            "a text/plain message, not multipart/report",
        ),
        (
            samples.dsn([POSTFIX_USER_UNKNOWN]),
            "application/json",
            "uploaded as message/rfc822, not 'application/json'",
        ),
        (
            samples.dsn([POSTFIX_USER_UNKNOWN]).replace(
                b"report-type=delivery-status", b"report-type=disposition-notification"
            ),
            "",
            "report-type 'disposition-notification'",
        ),
        (
            samples.dsn([POSTFIX_USER_UNKNOWN]).replace(b"message/delivery-status", b"text/plain"),
            "",
            "without its message/delivery-status part",
        ),
        (STATUS_ONLY_PER_MESSAGE, "", "names no recipient"),
        (
            samples.dsn([{**POSTFIX_USER_UNKNOWN, "Action": "bounced"}]),
            "",
            "recipient group 1: Action 'bounced' is not one of RFC 3464's",
        ),
        (
            samples.dsn([{"Action": "failed", "Status": "5.1.1"}]),
            "",
            "recipient group 1 .* has no Final-Recipient",
        ),
        (samples.arf().replace(b"Feedback-Type: abuse", b"X-Feedback: abuse"), "", "without Feedback-Type"),
        (
            samples.arf().replace(b"message/feedback-report", b"text/plain"),
            "",
            "without its message/feedback-report part",
        ),
    ],
)
def test_what_is_not_a_dsn_or_arf_report_is_malformed_with_the_reason(
    body: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(Malformed, match=reason):
        _read(body, content_type=content_type)


def test_a_global_delivery_status_report_is_read_too() -> None:
    body = samples.dsn([POSTFIX_USER_UNKNOWN]).replace(
        b"message/delivery-status", b"message/global-delivery-status"
    )
    (event,) = _read(body).events
    assert (event.recipient, event.event, event.bounce_type, event.smtp_status) == (
        "ann@example.org",
        "bounce",
        "hard",
        "5.1.1",
    )
