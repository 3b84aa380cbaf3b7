"""Postmark's webhooks read into delivery events: basic-auth credentials right, wrong and missing, each record
type and bounce type, malformed bodies with their reasons."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from deliveries.providers import postmark
from deliveries.providers.inbound import Forged, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests.mail_services import (
    RECEIVED_MS,
    T0,
    inbound,
    postmark_auth,
    postmark_bounce,
    postmark_delivery,
    postmark_subscription_change,
)

USER, PASSWORD = Secret("postmark"), Secret("s3cret-pass:with-colon")
AUTH = postmark_auth("postmark", "s3cret-pass:with-colon")


def _read(record: dict[str, Any], headers: dict[str, str] = AUTH) -> list[DeliveryEvent]:
    return postmark.read(inbound(record, headers), USER, PASSWORD)


def test_a_delivery() -> None:
    [one] = _read(postmark_delivery())
    event_id = "Delivery:883953f4-6105-42a2-a16a-77a8eac79483:ada@example.com:2025-12-03T16:00:00-05:00"
    assert one == DeliveryEvent(
        delivery_id=delivery_id("acme", "postmark", event_id),
        account="acme",
        provider="postmark",
        provider_event_id=event_id,
        event="delivered",
        occurred_at_ms=T0 * 1000,
        received_at_ms=RECEIVED_MS,
        message_id="m1",
        campaign_id="spring",
        provider_message_id="883953f4-6105-42a2-a16a-77a8eac79483",
        recipient="ada@example.com",
        smtp_status="2.0.0",
        smtp_code=250,
        diagnostic="smtp;250 2.0.0 OK",
        provider_type="Delivery",
    )


def test_a_hard_bounce() -> None:
    [one] = _read(postmark_bounce(4323372036854775807))
    assert (one.provider_event_id, one.event, one.bounce_type) == (
        "Bounce:4323372036854775807",
        "bounce",
        "hard",
    )
    assert (one.occurred_at_ms, one.recipient, one.provider_type) == (
        T0 * 1000 + 274,
        "ada@example.com",
        "HardBounce:1",
    )
    assert (one.smtp_status, one.smtp_code, one.message_id, one.campaign_id) == ("5.1.1", 550, "m1", "spring")


@pytest.mark.parametrize(
    ("bounce_type", "details", "kind", "verdict"),
    [
        ("HardBounce", "smtp;452 4.2.2 over quota", "bounce", "hard"),  # Postmark's word wins
        ("BadEmailAddress", "", "bounce", "hard"),
        ("ManuallyDeactivated", "", "bounce", "hard"),
        ("SoftBounce", "smtp;550 5.1.1 User unknown", "bounce", "soft"),
        ("Transient", "", "bounce", "soft"),
        ("DnsError", "", "bounce", "soft"),
        ("Blocked", "smtp;554 5.7.1 blocked", "bounce", "soft"),
        ("SpamNotification", "", "bounce", "soft"),
        ("DMARCPolicy", "", "bounce", "soft"),
        ("Unknown", "smtp;550 5.1.1 User unknown", "bounce", "hard"),
        ("Unknown", "smtp;552 5.2.2 Mailbox full", "bounce", "soft"),
        ("SMTPApiError", "", "bounce", "soft"),
        ("SpamComplaint", "", "complaint", ""),
        ("Unsubscribe", "", "unsubscribe", ""),
        ("TemplateRenderingFailed", "", "dropped", ""),
        ("Unconfirmed", "", "dropped", ""),
    ],
)
def test_bounce_types(bounce_type: str, details: str, kind: str, verdict: str) -> None:
    [one] = _read(postmark_bounce(7, bounce_type, details=details))
    assert (one.event, one.bounce_type, one.provider_event_id) == (kind, verdict, "Bounce:7")


@pytest.mark.parametrize(
    "bounce_type",
    ["AutoResponder", "AddressChange", "Subscribe", "ChallengeVerification", "OpenRelayTest", "InboundError"],
)
def test_replies_that_say_nothing_of_delivery_are_skipped(bounce_type: str) -> None:
    assert _read(postmark_bounce(7, bounce_type)) == []


def test_a_spam_complaint_record() -> None:
    [one] = _read(postmark_bounce(8, "SpamComplaint", type_code=512, record_type="SpamComplaint", details=""))
    assert (one.provider_event_id, one.event, one.bounce_type) == ("SpamComplaint:8", "complaint", "")


def test_a_recipients_unsubscribe_and_the_changes_skipped() -> None:
    [one] = _read(postmark_subscription_change())
    assert (one.event, one.recipient, one.occurred_at_ms) == (
        "unsubscribe",
        "ada@example.com",
        (T0 + 300) * 1000,
    )
    assert one.provider_event_id == (
        "SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:ada@example.com:2025-12-03T21:05:00Z"
    )
    assert _read(postmark_subscription_change(suppress=False)) == []
    assert _read(postmark_subscription_change(reason="HardBounce")) == []
    assert _read(postmark_subscription_change(reason="SpamComplaint")) == []
    assert _read(postmark_subscription_change(origin="Customer")) == []


@pytest.mark.parametrize("record_type", ["Open", "Click", "Inbound"])
def test_other_records_are_skipped(record_type: str) -> None:
    assert _read({"RecordType": record_type, "MessageID": "x"}) == []


def test_missing_credentials_are_unsigned() -> None:
    for headers in ({}, {"Authorization": "Bearer abc"}, {"Authorization": "Basic "}):
        with pytest.raises(Unsigned):
            _read(postmark_delivery(), headers)


@pytest.mark.parametrize(
    "headers",
    [
        postmark_auth("postmark", "wrong"),
        postmark_auth("someone", "s3cret-pass:with-colon"),
        postmark_auth("postmark", "s3cret-pass"),
        {"Authorization": "Basic " + base64.b64encode(b"postmark").decode()},  # no colon
        {"Authorization": "Basic %%%"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
    ],
)
def test_wrong_credentials_are_forged(headers: dict[str, str]) -> None:
    with pytest.raises(Forged, match="do not match"):
        _read(postmark_delivery(), headers)


def test_credentials_are_checked_before_the_body_is_read() -> None:
    with pytest.raises(Forged):
        postmark.read(inbound(b"not json", postmark_auth("x", "y")), USER, PASSWORD)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"MessageID": "x"}, "RecordType is missing"),
        ({**postmark_delivery(), "MessageID": None}, "MessageID is missing"),
        ({**postmark_delivery(), "DeliveredAt": "yesterday"}, "DeliveredAt is not an ISO-8601 time"),
        (
            {**postmark_delivery(), "DeliveredAt": "2025-12-03T16:00:00"},
            "DeliveredAt has no time zone (add Z or an offset)",
        ),
        ({**postmark_bounce(7), "ID": None}, "ID is missing"),
        ({**postmark_bounce(7), "ID": 1.5}, "ID is not a string"),
        ({**postmark_bounce(7), "Metadata": ["m1"]}, "Metadata is not an object"),
        (
            {**postmark_subscription_change(), "SuppressSending": "yes"},
            "SuppressSending is not true or false",
        ),
    ],
)
def test_malformed_records_say_what_is_wrong(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(Malformed) as refused:
        _read(record)
    assert str(refused.value) == reason


def test_no_refusal_shows_a_password() -> None:
    for headers in (postmark_auth("postmark", "guess-1"), postmark_auth("postmark", "s3cret-pass")):
        with pytest.raises(Forged) as refused:
            _read(postmark_delivery(), headers)
        assert "s3cret" not in str(refused.value)
        assert "guess" not in str(refused.value)
