"""SendGrid's signed Event Webhook read into delivery events: signatures right and wrong, each event type,
malformed bodies with their reasons, and a 10,000-event batch."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from deliveries.providers import sendgrid
from deliveries.providers.inbound import Forged, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests.mail_services import RECEIVED_MS, T0, inbound, sendgrid_event, sendgrid_keys, sign_sendgrid

PRIVATE, PUBLIC = sendgrid_keys()
KEY = Secret(PUBLIC)


def _read(events: Any, *, key: Secret = KEY) -> list[DeliveryEvent]:
    body = orjson.dumps(events)
    return sendgrid.read(inbound(body, sign_sendgrid(PRIVATE, body)), key)


def test_each_delivery_event_is_mapped_and_the_rest_skipped() -> None:
    names = ["processed", "delivered", "deferred", "bounce", "dropped", "open", "click", "spamreport"]
    names += ["unsubscribe", "group_unsubscribe", "group_resubscribe", "some_future_event"]
    read = _read([sendgrid_event(name, f"ev-{name}") for name in names])
    assert [(e.provider_event_id, e.event) for e in read] == [
        ("ev-delivered", "delivered"),
        ("ev-deferred", "deferred"),
        ("ev-bounce", "bounce"),
        ("ev-dropped", "dropped"),
        ("ev-spamreport", "complaint"),
        ("ev-unsubscribe", "unsubscribe"),
        ("ev-group_unsubscribe", "unsubscribe"),
    ]


def test_a_bounce_carries_everything() -> None:
    [bounce] = _read([sendgrid_event("bounce", "ev-1", message_id="msg-7", campaign_id="c-3")])
    assert bounce == DeliveryEvent(
        delivery_id=delivery_id("acme", "sendgrid", "ev-1"),
        account="acme",
        provider="sendgrid",
        provider_event_id="ev-1",
        event="bounce",
        occurred_at_ms=T0 * 1000,
        received_at_ms=RECEIVED_MS,
        message_id="msg-7",
        campaign_id="c-3",
        provider_message_id="14c5d75ce93",
        recipient="ada@example.com",
        bounce_type="hard",
        smtp_status="5.1.1",
        smtp_code=550,
        diagnostic="550 5.1.1 The email account does not exist",
        provider_type="bounce:bounce",
    )


def test_delivered_and_deferred_keep_the_servers_response() -> None:
    delivered, deferred = _read([sendgrid_event("delivered", "a"), sendgrid_event("deferred", "b")])
    assert (delivered.smtp_code, delivered.smtp_status, delivered.bounce_type) == (250, "2.0.0", "")
    assert (deferred.smtp_code, deferred.smtp_status, deferred.diagnostic) == (
        421,
        "4.7.0",
        "421 4.7.0 Try again later",
    )


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"type": "bounce"}, "hard"),
        (
            {"type": "blocked", "status": "5.7.1", "reason": "554 5.7.1 blocked using zen.spamhaus.org"},
            "soft",
        ),
        (
            {"type": "bounce", "status": "5.2.2", "reason": "552 5.2.2 Mailbox full"},
            "hard",
        ),  # SendGrid's word
        ({"type": None, "status": "5.2.2", "reason": "552 5.2.2 Mailbox full"}, "soft"),
        ({"type": None, "status": None, "reason": "550 5.1.1 User unknown"}, "hard"),
    ],
)
def test_bounce_type_follows_sendgrid_then_the_codes(fields: dict[str, Any], verdict: str) -> None:
    event = {k: v for k, v in sendgrid_event("bounce", "ev-1", **fields).items() if v is not None}
    [bounce] = _read([event])
    assert bounce.bounce_type == verdict


def test_a_retry_is_the_same_delivery_id() -> None:
    first = _read([sendgrid_event("delivered", "ev-1")])
    again = _read([sendgrid_event("delivered", "ev-1")])
    assert first[0].delivery_id == again[0].delivery_id == delivery_id("acme", "sendgrid", "ev-1")


def test_a_pem_key_verifies_too() -> None:
    pem = PRIVATE.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert len(_read([sendgrid_event("delivered", "ev-1")], key=Secret(pem.decode()))) == 1


def test_no_signature_headers_is_unsigned() -> None:
    body = orjson.dumps([sendgrid_event("delivered", "ev-1")])
    with pytest.raises(Unsigned):
        sendgrid.read(inbound(body), KEY)
    only_signature = {k: v for k, v in sign_sendgrid(PRIVATE, body).items() if "Signature" in k}
    with pytest.raises(Unsigned):
        sendgrid.read(inbound(body, only_signature), KEY)


def test_wrong_signatures_are_forged() -> None:
    body = orjson.dumps([sendgrid_event("delivered", "ev-1")])
    headers = sign_sendgrid(PRIVATE, body)
    other_private, other_public = sendgrid_keys()
    cases = {
        "another key": (body, sign_sendgrid(other_private, body)),
        "tampered body": (body.replace(b"ada@", b"eve@"), headers),
        "another timestamp": (
            body,
            {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(T0 + 1)},
        ),
        "not base64": (body, {**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}),
        "not DER": (
            body,
            {**headers, "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(b"xyz").decode()},
        ),
    }
    for name, (sent, sent_headers) in cases.items():
        with pytest.raises(Forged, match="does not verify"):
            sendgrid.read(inbound(sent, sent_headers), KEY)
        assert name
    with pytest.raises(Forged, match="cannot verify"):
        sendgrid.read(inbound(body, headers), Secret("not a key"))
    assert len(sendgrid.read(inbound(body, sign_sendgrid(other_private, body)), Secret(other_public))) == 1


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(Forged):
        sendgrid.read(inbound(b"not json", sign_sendgrid(PRIVATE, b"other")), KEY)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ({"event": "delivered"}, "the body is not a JSON array of events"),
        ([sendgrid_event("delivered", "a"), 7], "events[1] is not an object"),
        (
            [sendgrid_event("delivered", str(i)) for i in range(3)] + [sendgrid_event("bounce", "")],
            "events[3].sg_event_id is missing",
        ),
        ([{**sendgrid_event("delivered", "a"), "event": None}], "events[0].event is missing"),
        ([sendgrid_event("delivered", "a", timestamp="yesterday")], "events[0].timestamp is not a time in"),
        ([sendgrid_event("delivered", "a", timestamp=None)], "events[0].timestamp is missing"),
        ([sendgrid_event("delivered", "a", timestamp=-5)], "events[0].timestamp is out of range"),
        ([sendgrid_event("delivered", "a", email=["x"])], "events[0].email is not a string"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(events: Any, reason: str) -> None:
    with pytest.raises(Malformed) as refused:
        _read(events)
    assert str(refused.value).startswith(reason)


def test_not_json_is_malformed() -> None:
    body = b"[{"
    with pytest.raises(Malformed, match=r"^the body is not JSON"):
        sendgrid.read(inbound(body, sign_sendgrid(PRIVATE, body)), KEY)


def test_an_event_we_skip_needs_no_event_id() -> None:
    assert _read([sendgrid_event("open", ""), sendgrid_event("processed", "")]) == []


def test_a_batch_of_10000_events_is_read_whole() -> None:
    cycle = ["processed", "delivered", "open", "bounce", "click", "deferred", "dropped", "spamreport"]
    cycle += ["unsubscribe", "delivered"]
    batch = [
        sendgrid_event(cycle[i % 10], f"ev-{i}", message_id=f"m{i // 10}", email=f"r{i // 10}@example.com")
        for i in range(10_000)
    ]
    batch[3]["type"] = "blocked"  # one soft bounce among a thousand
    read = _read(batch)
    assert Counter(e.event for e in read) == {
        "delivered": 2000,
        "bounce": 1000,
        "deferred": 1000,
        "dropped": 1000,
        "complaint": 1000,
        "unsubscribe": 1000,
    }
    assert Counter(e.bounce_type for e in read if e.event == "bounce") == {"hard": 999, "soft": 1}
    assert len({e.delivery_id for e in read}) == 7000
    assert {e.message_id for e in read} == {f"m{i}" for i in range(1000)}
    assert (read[0].provider_event_id, read[-1].provider_event_id) == ("ev-1", "ev-9999")
    assert all(e.campaign_id == "spring" and e.received_at_ms == RECEIVED_MS for e in read)


def test_only_a_p256_public_key_is_a_verifying_key() -> None:
    assert sendgrid.verifying_key(KEY).curve.name == "secp256r1"
    for private in (ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)):
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(ValueError, match=r"^not an ECDSA P-256 public key$"):
            sendgrid.verifying_key(Secret(base64.b64encode(der).decode()))
    with pytest.raises(ValueError, match=r"^not a public key in base64 DER or PEM$"):
        sendgrid.verifying_key(Secret(base64.b64encode(b"garbage").decode()))
