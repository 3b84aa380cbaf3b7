"""SES through SNS (deliveries/providers/ses.py): each SES event type, in both shapes (notifications and event
publishing), mapped to delivery events with their exact fields; what the ingest does with confirmations."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries.providers import ses
from deliveries.providers.inbound import Forged, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, delivery_id
from tests import sns_signing as signing

PEM = signing.signing_key().certificate_pem
RECEIVED = signing.NOW_MS + 5_000
BOUNCED_AT = "2026-12-03T21:00:05.123Z"
BOUNCED_AT_MS = 1_796_331_605_123


def _read(message: str, *, message_id: str = "sns-1", topic_arns: tuple[str, ...] = ()) -> ses.SesRead:
    body = signing.notification(message, message_id=message_id)
    return ses.read(signing.inbound(body), PEM, topic_arns=topic_arns, now_ms=signing.NOW_MS)


def _event(recipient: str, **fields: Any) -> DeliveryEvent:
    """The event expected of SNS message ``sns-1`` about ``recipient``."""
    provider_event_id = f"sns-1:{recipient}"
    defaults: dict[str, Any] = {
        "delivery_id": delivery_id(signing.ACCOUNT, "ses", provider_event_id),
        "account": signing.ACCOUNT,
        "provider": "ses",
        "provider_event_id": provider_event_id,
        "occurred_at_ms": BOUNCED_AT_MS,
        "received_at_ms": RECEIVED,
        "message_id": "msg-1",
        "campaign_id": "camp-1",
        "provider_message_id": "0100018c-ses-message-1",
        "recipient": recipient,
    }
    return DeliveryEvent(**(defaults | fields))


@pytest.mark.parametrize("publishing", [True, False], ids=["event-publishing", "notification"])
def test_a_delivery_is_one_delivered_event_per_recipient(publishing: bool) -> None:
    delivery = {
        "timestamp": BOUNCED_AT,
        "processingTimeMillis": 546,
        "recipients": ["ann@example.org", "bob@example.org"],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
    }
    record = signing.ses_record(
        "Delivery", delivery, publishing=publishing, destination=("ann@example.org", "bob@example.org")
    )
    smtp = {"smtp_status": "2.6.0", "smtp_code": 250, "diagnostic": "250 2.6.0 Message received"}
    assert _read(record) == ses.SesRead(
        events=(
            _event("ann@example.org", event="delivered", provider_type="Delivery", **smtp),
            _event("bob@example.org", event="delivered", provider_type="Delivery", **smtp),
        )
    )


def _bounce(bounce_type: str, sub_type: str, status: str, diagnostic: str) -> dict[str, Any]:
    return {
        "bounceType": bounce_type,
        "bounceSubType": sub_type,
        "bouncedRecipients": [
            {
                "emailAddress": "ann@example.org",
                "action": "failed",
                "status": status,
                "diagnosticCode": diagnostic,
            }
        ],
        "timestamp": BOUNCED_AT,
        "feedbackId": "0100018c-feedback-1",
        "reportingMTA": "dns; email.example.org",
    }


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "status", "diagnostic", "expected"),
    [
        ("Permanent", "General", "5.1.1", "smtp; 550 5.1.1 <ann@example.org>... User unknown", ("hard", 550)),
        ("Permanent", "NoEmail", "5.1.1", "smtp; 550 5.1.1 The email account does not exist", ("hard", 550)),
        ("Transient", "MailboxFull", "5.2.2", "smtp; 552 5.2.2 Mailbox full", ("soft", 552)),
        (
            "Transient",
            "General",
            "5.1.1",
            "smtp; 550 5.1.1 User unknown",
            ("soft", 550),
        ),  # SES's verdict wins
        ("Undetermined", "Undetermined", "5.1.1", "smtp; 550 5.1.1 No such user", ("hard", 550)),
        ("Undetermined", "Undetermined", "4.4.7", "smtp; 451 4.4.7 Delivery time expired", ("soft", 451)),
    ],
)
def test_a_bounce_is_hard_or_soft_by_ses_type_then_by_the_codes(
    bounce_type: str, sub_type: str, status: str, diagnostic: str, expected: tuple[str, int]
) -> None:
    verdict, code = expected
    record = signing.ses_record("Bounce", _bounce(bounce_type, sub_type, status, diagnostic))
    event = _event(
        "ann@example.org",
        event="bounce",
        bounce_type=verdict,
        smtp_status=status,
        smtp_code=code,
        diagnostic=diagnostic,
        provider_type=f"Bounce/{bounce_type}/{sub_type}",
    )
    assert _read(record) == ses.SesRead(events=(event,))


def test_a_bounce_of_several_recipients_gives_each_its_own_stable_id() -> None:
    bounce = _bounce("Permanent", "General", "5.1.1", "smtp; 550 5.1.1 User unknown")
    bounce["bouncedRecipients"].append({"emailAddress": "bob@example.org"})  # SES gives no codes for some
    record = signing.ses_record("Bounce", bounce, publishing=False)
    first, again = _read(record), _read(record)
    assert first == again  # SNS retries with the same MessageId: the same events, counted once
    assert [
        (e.recipient, e.provider_event_id, e.bounce_type, e.smtp_status, e.smtp_code) for e in first.events
    ] == [
        ("ann@example.org", "sns-1:ann@example.org", "hard", "5.1.1", 550),
        ("bob@example.org", "sns-1:bob@example.org", "hard", "", 0),
    ]
    assert len({e.delivery_id for e in first.events}) == 2


@pytest.mark.parametrize("publishing", [True, False], ids=["event-publishing", "notification"])
def test_a_complaint_is_one_event_per_complained_recipient(publishing: bool) -> None:
    complaint = {
        "userAgent": "ExampleCorp Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "ann@example.org"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2026-12-03T21:00:01.000Z",
        "timestamp": BOUNCED_AT,
        "feedbackId": "0100018c-feedback-2",
    }
    record = signing.ses_record("Complaint", complaint, publishing=publishing)
    expected = _event("ann@example.org", event="complaint", provider_type="Complaint/abuse")
    assert _read(record) == ses.SesRead(events=(expected,))


@pytest.mark.parametrize("sub_type", ["Suppressed", "OnAccountSuppressionList"])
def test_a_bounce_of_an_address_ses_suppresses_is_dropped(sub_type: str) -> None:
    # SES sent nothing: the address is on its global or the account's suppression list.
    diagnostic = (
        "Amazon SES has suppressed sending to this address because it has a recent history of bouncing"
    )
    record = signing.ses_record("Bounce", _bounce("Permanent", sub_type, "5.1.1", diagnostic))
    expected = _event(
        "ann@example.org",
        event="dropped",
        smtp_status="5.1.1",
        diagnostic=diagnostic,
        provider_type=f"Bounce/Permanent/{sub_type}",
    )
    assert _read(record) == ses.SesRead(events=(expected,))


def test_a_complaint_of_an_address_on_the_accounts_suppression_list_is_dropped() -> None:
    complaint = {
        "complainedRecipients": [{"emailAddress": "ann@example.org"}],
        "complaintSubType": "OnAccountSuppressionList",
        "timestamp": BOUNCED_AT,
    }
    expected = _event("ann@example.org", event="dropped", provider_type="Complaint/OnAccountSuppressionList")
    assert _read(signing.ses_record("Complaint", complaint)) == ses.SesRead(events=(expected,))


def test_a_not_spam_complaint_is_skipped() -> None:
    complaint = {
        "complainedRecipients": [{"emailAddress": "ann@example.org"}],
        "complaintFeedbackType": "not-spam",
        "timestamp": BOUNCED_AT,
    }
    read = _read(signing.ses_record("Complaint", complaint))
    assert read == ses.SesRead(
        skipped="a not-spam complaint: the recipient says the mail is wanted (RFC 5965)"
    )


def test_a_delivery_delay_is_deferred_with_the_servers_answer() -> None:
    delay = {
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2026-12-04T21:00:00.000Z",
        "delayedRecipients": [
            {
                "emailAddress": "ann@example.org",
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect",
            }
        ],
        "timestamp": BOUNCED_AT,
    }
    expected = _event(
        "ann@example.org",
        event="deferred",
        smtp_status="4.4.1",
        smtp_code=421,
        diagnostic="smtp; 421 4.4.1 Unable to connect",
        provider_type="DeliveryDelay/TransientCommunicationFailure",
    )
    assert _read(signing.ses_record("DeliveryDelay", delay)) == ses.SesRead(events=(expected,))


def test_a_reject_drops_every_recipient_at_the_sns_time() -> None:
    record = signing.ses_record(
        "Reject", {"reason": "Bad content"}, destination=("ann@example.org", "bob@example.org")
    )
    fields = {
        "event": "dropped",
        "diagnostic": "Bad content",
        "provider_type": "Reject",
        "occurred_at_ms": signing.NOW_MS,
    }
    assert _read(record) == ses.SesRead(
        events=(_event("ann@example.org", **fields), _event("bob@example.org", **fields))
    )


@pytest.mark.parametrize(
    "preferences",
    [
        {"unsubscribeAll": True, "topicSubscriptionStatus": []},
        {
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "news", "subscriptionStatus": "OptOut"}],
        },
        None,  # no preferences given: SES reports the change, which its unsubscribe link makes
    ],
)
def test_a_subscription_change_that_opts_out_is_an_unsubscribe(preferences: dict[str, Any] | None) -> None:
    change: dict[str, Any] = {"contactList": "news", "timestamp": BOUNCED_AT, "source": "UnsubscribeHeader"}
    if preferences is not None:
        change["newTopicPreferences"] = preferences
    expected = _event("ann@example.org", event="unsubscribe", provider_type="Subscription")
    assert _read(signing.ses_record("Subscription", change)) == ses.SesRead(events=(expected,))


def test_a_subscription_change_that_only_opts_in_is_skipped() -> None:
    change = {
        "contactList": "news",
        "timestamp": BOUNCED_AT,
        "newTopicPreferences": {
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "news", "subscriptionStatus": "OptIn"}],
        },
    }
    read = _read(signing.ses_record("Subscription", change))
    assert read == ses.SesRead(skipped="a subscription change that opts out of nothing")


@pytest.mark.parametrize("kind", ["Send", "Open", "Click", "Rendering Failure"])
def test_sends_opens_clicks_and_rendering_failures_are_skipped(kind: str) -> None:
    read = _read(signing.ses_record(kind, {"timestamp": BOUNCED_AT}))
    assert read == ses.SesRead(skipped=f"an SES {kind} event: not a delivery event")


def test_sess_set_up_notification_and_event_types_it_may_add_are_skipped_with_the_reason() -> None:
    set_up = '{"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have set up the topic."}'
    assert _read(set_up) == ses.SesRead(skipped="SES's test notification that the topic is set up")
    later = '{"eventType": "Teleport", "mail": {}, "teleport": {}}'
    assert _read(later) == ses.SesRead(skipped="an SES event type pixelpipe does not read: 'Teleport'")


def test_without_our_ids_the_event_keeps_the_ses_message_id_for_matching() -> None:
    record = signing.ses_record(
        "Delivery", {"timestamp": BOUNCED_AT, "recipients": ["ann@example.org"]}, ours=None
    )
    (event,) = _read(record).events
    assert (event.message_id, event.campaign_id, event.provider_message_id) == (
        "",
        "",
        "0100018c-ses-message-1",
    )


def test_a_subscription_confirmation_of_an_accepted_topic_is_confirmed() -> None:
    body = signing.confirmation()
    read = ses.read(signing.inbound(body), PEM, topic_arns=[signing.TOPIC_ARN], now_ms=signing.NOW_MS)
    assert read == ses.SesRead(confirm_url=body["SubscribeURL"])


def test_a_subscription_confirmation_of_another_topic_is_forged() -> None:
    body = signing.confirmation(topic_arn="arn:aws:sns:us-east-1:999999999999:theirs")
    with pytest.raises(Forged, match="topic"):
        ses.read(signing.inbound(body), PEM, topic_arns=[signing.TOPIC_ARN], now_ms=signing.NOW_MS)


def test_a_signed_confirmation_with_a_lookalike_subscribe_url_is_refused() -> None:
    body = signing.confirmation(
        subscribe_url="https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription"
    )
    with pytest.raises(Forged, match="SubscribeURL"):
        ses.read(signing.inbound(body), PEM, now_ms=signing.NOW_MS)


def test_an_unsubscribe_confirmation_does_nothing() -> None:
    read = ses.read(
        signing.inbound(signing.confirmation("UnsubscribeConfirmation")), PEM, now_ms=signing.NOW_MS
    )
    assert read == ses.SesRead(skipped="an unsubscribe confirmation: nothing to store")


def test_a_notification_from_a_topic_not_accepted_is_forged() -> None:
    record = signing.ses_record("Reject", {"reason": "Bad content"})
    with pytest.raises(Forged, match="topic"):
        _read(record, topic_arns=("arn:aws:sns:us-east-1:123456789012:other",))


def test_unsigned_and_forged_requests_are_refused_before_the_message_is_read() -> None:
    body = signing.notification("not even JSON")
    with pytest.raises(Unsigned):
        ses.read(
            signing.inbound({k: v for k, v in body.items() if k != "Signature"}), PEM, now_ms=signing.NOW_MS
        )
    with pytest.raises(Forged):
        ses.read(signing.inbound({**body, "Message": "changed"}), PEM, now_ms=signing.NOW_MS)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "the SNS Message is not JSON"),
        ("[]", "not an SES notification"),
        ('{"mail": {}}', "an SES record without notificationType or eventType"),
        (signing.ses_record("Delivery", None), "Message.delivery is missing"),
        (
            signing.ses_record("Bounce", {"bounceType": "Permanent", "timestamp": BOUNCED_AT}),
            "bouncedRecipients",
        ),
        (
            signing.ses_record("Bounce", {"bouncedRecipients": [{"status": "5.1.1"}]}),
            r"Message.bounce.bouncedRecipients\[0\].emailAddress is missing",
        ),
        (signing.ses_record("Delivery", {"recipients": "ann@example.org"}), "recipients"),
        (
            signing.ses_record("Delivery", {"recipients": ["a@x"], "timestamp": "soon"}),
            "Message.delivery.timestamp is not an ISO-8601 time",
        ),
        ('{"eventType": "Delivery", "delivery": {"recipients": []}}', "Message.mail is missing"),
    ],
)
def test_a_message_that_is_not_an_ses_record_is_malformed(message: str, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        _read(message)
