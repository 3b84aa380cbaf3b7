"""The SNS envelope (deliveries/providers/sns.py): signatures v1 and v2 right and wrong, which certificate
URLs may be fetched, which subscriptions may be confirmed, which topics an account takes."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import orjson
import pytest

from deliveries.providers import sns
from deliveries.providers.inbound import Forged, Malformed, Unsigned
from tests import sns_signing as signing

MESSAGE = '{"notificationType":"Delivery"}'


def _envelope(body: dict[str, str]) -> sns.SnsEnvelope:
    return sns.envelope(signing.inbound(body))


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_a_notification_signed_as_sns_signs_verifies(version: str, subject: str | None) -> None:
    body = signing.notification(MESSAGE, version=version, subject=subject, message_id="m-1")
    envelope = _envelope(body)
    sns.verify(envelope, signing.signing_key().certificate_pem, now_ms=signing.NOW_MS)
    assert (envelope.type, envelope.message_id, envelope.subject, envelope.timestamp_ms) == (
        "Notification",
        "m-1",
        subject,
        signing.NOW_MS,
    )


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_confirmations_sign_their_url_and_token_too(version: str, kind: str) -> None:
    envelope = _envelope(signing.confirmation(kind, version=version))
    sns.verify(envelope, signing.signing_key().certificate_pem, now_ms=signing.NOW_MS)
    assert (envelope.token, envelope.subscribe_url.startswith("https://sns.us-east-1.amazonaws.com/?")) == (
        signing.CONFIRMATION_TOKEN,
        True,
    )


def test_the_string_to_sign_is_aws_field_order_each_name_and_value_on_its_line() -> None:
    with_subject = _envelope(signing.notification("hi\nthere", subject="S", message_id="id-1"))
    assert sns.string_to_sign(with_subject) == (
        b"Message\nhi\nthere\nMessageId\nid-1\nSubject\nS\nTimestamp\n2026-12-03T20:33:20.000Z\n"
        b"TopicArn\narn:aws:sns:us-east-1:123456789012:pixelpipe-ses-events\nType\nNotification\n"
    )
    confirmation = _envelope(signing.confirmation(token="tok"))
    assert sns.string_to_sign(confirmation).split(b"\n")[::2] == [
        b"Message",
        b"MessageId",
        b"SubscribeURL",
        b"Timestamp",
        b"Token",
        b"TopicArn",
        b"Type",
        b"",
    ]


def _tampered(field: str, value: str) -> dict[str, str]:
    return {**signing.notification(MESSAGE, subject="S"), field: value}


@pytest.mark.parametrize(
    "body",
    [
        _tampered("Message", '{"notificationType":"Bounce"}'),
        _tampered("MessageId", "another"),
        _tampered("Subject", "other"),
        _tampered("Timestamp", "2026-12-03T20:33:21.000Z"),
        _tampered("TopicArn", "arn:aws:sns:us-east-1:123456789012:other"),
        _tampered("SignatureVersion", "1"),  # signed with SHA256, read as SHA1
        {k: v for k, v in signing.notification(MESSAGE, subject="S").items() if k != "Subject"},
        signing.notification(MESSAGE, key=signing.signing_key(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))),
        _tampered("Signature", base64.b64encode(b"\x00" * 256).decode()),
    ],
    ids=["message", "id", "subject", "time", "topic", "version", "subject-dropped", "other-key", "zeros"],
)
def test_a_tampered_or_foreign_signature_is_forged(body: dict[str, str]) -> None:
    with pytest.raises(Forged, match="does not verify"):
        sns.verify(_envelope(body), signing.signing_key().certificate_pem, now_ms=signing.NOW_MS)


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (dt.datetime(2025, 12, 31, tzinfo=dt.UTC), "not valid now"),
        (dt.datetime(2027, 1, 2, tzinfo=dt.UTC), "not valid now"),
    ],
)
def test_a_certificate_outside_its_validity_is_forged(now: dt.datetime, reason: str) -> None:
    envelope = _envelope(signing.notification(MESSAGE))
    with pytest.raises(Forged, match=reason):
        sns.verify(envelope, signing.signing_key().certificate_pem, now_ms=int(now.timestamp() * 1000))


def test_what_is_not_a_pem_certificate_is_forged() -> None:
    with pytest.raises(Forged, match="not a PEM certificate"):
        sns.verify(_envelope(signing.notification(MESSAGE)), b"<html>hello</html>", now_ms=signing.NOW_MS)


def test_verify_refuses_a_certificate_url_off_sns_even_when_the_signature_matches() -> None:
    body = signing.notification(MESSAGE, cert_url="https://sns.us-east-1.amazonaws.com.evil.com/a.pem")
    with pytest.raises(Forged, match="not an SNS host"):
        sns.verify(_envelope(body), signing.signing_key().certificate_pem, now_ms=signing.NOW_MS)


@pytest.mark.parametrize("missing", ["Signature", "SigningCertURL"])
def test_without_signature_or_certificate_url_it_is_unsigned(missing: str) -> None:
    body = {k: v for k, v in signing.notification(MESSAGE).items() if k != missing}
    with pytest.raises(Unsigned):
        _envelope(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({**signing.notification(MESSAGE), "Type": "Other"}), "Type 'Other'"),
        (orjson.dumps({**signing.notification(MESSAGE), "SignatureVersion": "3"}), "SignatureVersion '3'"),
        (orjson.dumps({**signing.notification(MESSAGE), "Signature": "@@@"}), "not base64"),
        (
            orjson.dumps({**signing.notification(MESSAGE), "TopicArn": "arn:aws:sqs:x"}),
            "not an SNS topic ARN",
        ),
        (
            orjson.dumps({**signing.notification(MESSAGE), "Timestamp": "yesterday"}),
            "Timestamp is not an ISO-8601",
        ),
        (orjson.dumps({**signing.notification(MESSAGE), "Message": 5}), "without Message"),
        (orjson.dumps({k: v for k, v in signing.confirmation().items() if k != "Token"}), "without Token"),
    ],
)
def test_what_is_not_an_sns_message_is_malformed_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        sns.envelope(signing.inbound(body))


def test_the_message_type_header_must_agree_with_the_body() -> None:
    request = signing.inbound(signing.notification(MESSAGE))
    lying = dataclasses.replace(request, headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    with pytest.raises(Malformed, match="x-amz-sns-message-type"):
        sns.envelope(lying)


PEM = "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
ALLOWED = [
    f"https://sns.us-east-1.amazonaws.com/{PEM}",
    f"https://sns.eu-central-1.amazonaws.com/{PEM}",
    f"https://sns.ap-southeast-2.amazonaws.com/{PEM}",
    f"https://sns.cn-north-1.amazonaws.com.cn/{PEM}",
    f"https://sns.cn-northwest-1.amazonaws.com.cn/{PEM}",
    f"https://sns.us-gov-west-1.amazonaws.com/{PEM}",  # GovCloud: the same rule, Amazon's own hosts
]
REFUSED = [
    f"http://sns.us-east-1.amazonaws.com/{PEM}",
    f"https://sns.evil.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.com.evil.com/{PEM}",
    f"https://evil.com/sns.us-east-1.amazonaws.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.com@evil.com/{PEM}",
    f"https://user:pw@sns.us-east-1.amazonaws.com/{PEM}",
    f"https://amazonaws.com@evil.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.com:8443/{PEM}",
    f"https://sns.us-east-1.amazonaws.com:443/{PEM}",  # SNS never writes a port: none is taken
    f"https://sns.us-east-1.amazonaws.com./{PEM}",
    f"https://SNS.US-EAST-1.AMAZONAWS.COM/{PEM}",
    f"https://54.239.28.85/{PEM}",
    f"https://[::1]/{PEM}",
    f"https://s3.us-east-1.amazonaws.com/{PEM}",
    f"https://sns.amazonaws.com/{PEM}",
    f"https://evilsns.us-east-1.amazonaws.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.cn/{PEM}",
    f"https://sns.us-east-1.amazonaws.com/{PEM}.exe",
    "https://sns.us-east-1.amazonaws.com/cert.txt",
    f"https://sns.us-east-1.amazonaws.com/{PEM}?x=.pem",
    f"https://sns.us-east-1.amazonaws.com/{PEM}#frag",
    f"https://sns.us-east-1.amazonaws.com/../{PEM}".replace("/../", "/%2e%2e/"),
    f"https://sns.us-east-1.amazonaws.com\\@evil.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.com/\t{PEM}",
    f"https://sns.us-east-1.amazonaws.com\n.evil.com/{PEM}",
    f"https://sns.us-east-1.amazonaws.com/{PEM} ",
    f"https://sns.us-\u0435ast-1.amazonaws.com/{PEM}",  # a Cyrillic "e"
    f"//sns.us-east-1.amazonaws.com/{PEM}",
    f"file:///sns.us-east-1.amazonaws.com/{PEM}",
    f"https://[sns.us-east-1.amazonaws.com/{PEM}",  # urlsplit raises ValueError (an unclosed IPv6 host)
    f"https://sns.us-east-1.amazonaws.com]/{PEM}",
    "",
]


@pytest.mark.parametrize("url", ALLOWED)
def test_certificate_urls_of_sns_hosts_are_allowed(url: str) -> None:
    assert sns.certificate_url_allowed(url) is True


@pytest.mark.parametrize("url", REFUSED)
def test_certificate_urls_anywhere_else_are_refused(url: str) -> None:
    assert sns.certificate_url_allowed(url) is False


def _subscription(**kwargs: str) -> sns.SnsEnvelope:
    return _envelope(signing.confirmation(**kwargs))


TOKEN = signing.CONFIRMATION_TOKEN
ARN = signing.TOPIC_ARN


@pytest.mark.parametrize(
    "topic_arn",
    [ARN, "arn:aws-cn:sns:cn-north-1:123456789012:t", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:t.fifo"],
)
def test_a_subscription_to_the_topic_on_its_own_regions_sns_host_may_be_confirmed(topic_arn: str) -> None:
    assert sns.subscribe_url_allowed(_subscription(topic_arn=topic_arn)) is True


@pytest.mark.parametrize(
    "url",
    [
        f"http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com.cn/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://x@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com:444/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Action=Subscribe&TopicArn={ARN}",
        f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}x&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token=other",
        f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com/redirect?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
        f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}#x",
        "https://evil.com/?Action=ConfirmSubscription",
        f"https://[sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={ARN}&Token={TOKEN}",
    ],
)
def test_any_other_subscribe_url_is_not_requested(url: str) -> None:
    assert sns.subscribe_url_allowed(_subscription(subscribe_url=url)) is False


def test_only_a_subscription_confirmation_has_a_url_to_confirm() -> None:
    assert sns.subscribe_url_allowed(_subscription(kind="UnsubscribeConfirmation")) is False


def test_an_account_that_names_its_topics_takes_no_other() -> None:
    envelope = _envelope(signing.notification(MESSAGE))
    sns.check_topic(envelope, [])
    sns.check_topic(envelope, ["arn:aws:sns:eu-west-1:123456789012:x", ARN])
    with pytest.raises(Forged, match="topic this account does not accept"):
        sns.check_topic(envelope, ["arn:aws:sns:us-east-1:123456789012:other"])
