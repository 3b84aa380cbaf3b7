"""Mailgun's signed JSON webhooks read into delivery events: signatures right and wrong, each event type and
failure severity, malformed bodies with their reasons."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from deliveries.providers import mailgun
from deliveries.providers.inbound import Forged, Inbound, Malformed, Unsigned
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests.mail_services import RECEIVED_MS, T0, inbound, mailgun_event, sign_mailgun

SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
KEY = Secret(SIGNING_KEY)
BOUNCED = {
    "code": 550,
    "enhanced-code": "5.1.1",
    "message": "5.1.1 The email account that you tried to reach does not exist.",
    "description": "",
    "attempt-no": 1,
}


def _read(event_data: dict[str, Any], *, key: Secret = KEY) -> list[DeliveryEvent]:
    return mailgun.read(inbound(sign_mailgun(SIGNING_KEY, event_data)), key)


def test_a_permanent_failure_is_a_hard_bounce_with_everything() -> None:
    [bounce] = _read(
        mailgun_event(
            "failed", "G9Bn5sl1TC6nu79C8C0bwg", severity="permanent", reason="bounce", delivery_status=BOUNCED
        )
    )
    assert bounce == DeliveryEvent(
        delivery_id=delivery_id("acme", "mailgun", f"G9Bn5sl1TC6nu79C8C0bwg@{T0 * 1000 + 908}"),
        account="acme",
        provider="mailgun",
        provider_event_id=f"G9Bn5sl1TC6nu79C8C0bwg@{T0 * 1000 + 908}",
        event="bounce",
        occurred_at_ms=T0 * 1000 + 908,
        received_at_ms=RECEIVED_MS,
        message_id="m1",
        campaign_id="spring",
        provider_message_id="20251203210000.1.ABCDEF@mg.example.com",
        recipient="ada@example.com",
        bounce_type="hard",
        smtp_status="5.1.1",
        smtp_code=550,
        diagnostic="5.1.1 The email account that you tried to reach does not exist.",
        provider_type="failed:permanent:bounce",
    )


@pytest.mark.parametrize(
    ("fields", "kind", "bounce_type"),
    [
        ({"event": "delivered"}, "delivered", ""),
        ({"event": "failed", "severity": "temporary", "reason": "generic"}, "deferred", ""),
        ({"event": "failed", "severity": "permanent", "reason": "bounce"}, "bounce", "hard"),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-bounce"}, "dropped", ""),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-unsubscribe"}, "dropped", ""),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-complaint"}, "dropped", ""),
        ({"event": "failed", "reason": "generic"}, "bounce", "soft"),  # no severity: the codes decide
        ({"event": "failed", "severity": "permanent", "reason": "old"}, "bounce", "soft"),  # gave up retrying
        ({"event": "failed", "severity": "temporary", "reason": "old"}, "bounce", "soft"),
        ({"event": "failed", "severity": "permanent", "reason": "espblock"}, "bounce", "soft"),
        ({"event": "rejected"}, "dropped", ""),
        ({"event": "complained"}, "complaint", ""),
        ({"event": "unsubscribed"}, "unsubscribe", ""),
    ],
)
def test_each_event_is_mapped(fields: dict[str, Any], kind: str, bounce_type: str) -> None:
    codes = {"generic": {"code": 452, "message": "4.2.2 Mailbox full"}, "old": {"message": "Too old"}}
    codes["espblock"] = {"code": 554, "message": "5.7.1 [CS01] Message rejected due to local policy"}
    status = codes.get(str(fields.get("reason")), {})
    event = mailgun_event(fields["event"], "ev-1", delivery_status=status)
    event.update(fields)
    [one] = _read(event)
    assert (one.event, one.bounce_type) == (kind, bounce_type)


@pytest.mark.parametrize("name", ["accepted", "opened", "clicked", "stored", "list_member_uploaded"])
def test_other_events_are_skipped(name: str) -> None:
    assert _read(mailgun_event(name, "ev-1")) == []


def test_codes_are_read_from_the_message_when_no_enhanced_code_came() -> None:
    status = {"code": "552", "message": "552 5.2.2 Mailbox full", "description": ""}
    event = mailgun_event("failed", "ev-1", delivery_status=status)  # no severity: the codes decide
    [one] = _read(event)
    assert (one.smtp_code, one.smtp_status, one.bounce_type) == (552, "5.2.2", "soft")


def test_a_rejected_event_says_why_in_its_diagnostic() -> None:
    reason = "Sandbox subdomains are for test purposes only. Please add your own domain."
    [one] = _read(mailgun_event("rejected", "ev-1", reject={"reason": reason, "description": ""}))
    assert (one.event, one.diagnostic) == ("dropped", reason)


def test_angle_brackets_of_the_message_id_are_dropped() -> None:
    event = mailgun_event("delivered", "ev-1")
    event["message"]["headers"]["message-id"] = "<20251203.1@mg.example.com>"
    assert _read(event)[0].provider_message_id == "20251203.1@mg.example.com"


def test_no_signature_is_unsigned() -> None:
    payload = sign_mailgun(SIGNING_KEY, mailgun_event("delivered", "ev-1"))
    for missing in ("timestamp", "token", "signature"):
        del_one = {**payload, "signature": {k: v for k, v in payload["signature"].items() if k != missing}}
        with pytest.raises(Unsigned):
            mailgun.read(inbound(del_one), KEY)
    with pytest.raises(Unsigned):
        mailgun.read(inbound({"event-data": payload["event-data"]}), KEY)


def test_wrong_signatures_are_forged() -> None:
    payload = sign_mailgun(SIGNING_KEY, mailgun_event("delivered", "ev-1"))
    cases = [
        sign_mailgun("another-key", mailgun_event("delivered", "ev-1")),
        {**payload, "signature": {**payload["signature"], "token": "another-token"}},
        {**payload, "signature": {**payload["signature"], "timestamp": str(T0 + 1)}},
        {**payload, "signature": {**payload["signature"], "signature": "00" * 32}},
    ]
    for case in cases:
        with pytest.raises(Forged, match="does not verify"):
            mailgun.read(inbound(case), KEY)
    with pytest.raises(Forged):
        mailgun.read(inbound(payload), Secret(""))


def test_event_data_is_not_read_before_the_signature_verifies() -> None:
    payload = sign_mailgun("another-key", {"event": 7})
    with pytest.raises(Forged):
        mailgun.read(inbound(payload), KEY)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"timestamp=1&token=x&signature=y&event=delivered", "the body is not JSON"),
        (b"[1, 2]", "the body is not an object"),
    ],
)
def test_bodies_that_are_not_the_json_webhook_are_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=f"^{reason}"):
        mailgun.read(inbound(body), KEY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "event-data.id is missing"),
        ({"event": None}, "event-data.event is missing"),
        ({"timestamp": "soon"}, "event-data.timestamp is not a time in epoch seconds"),
        ({"user-variables": "m1"}, "event-data.user-variables is not an object"),
        ({"delivery-status": {"code": 5500}}, "event-data.delivery-status.code is not an SMTP reply code"),
    ],
)
def test_malformed_events_say_what_is_wrong(change: dict[str, Any], reason: str) -> None:
    event = {**mailgun_event("delivered", "ev-1"), **change}
    with pytest.raises(Malformed) as refused:
        _read({k: v for k, v in event.items() if v is not None})
    assert str(refused.value) == reason


def test_event_data_that_is_not_an_object_is_malformed() -> None:
    payload = {**sign_mailgun(SIGNING_KEY, {}), "event-data": [1]}
    with pytest.raises(Malformed, match=r"^event-data is not an object$"):
        mailgun.read(inbound(orjson.dumps(payload)), KEY)


def test_a_legacy_form_encoded_webhook_is_refused_with_what_to_use() -> None:
    body = b"timestamp=1&token=x&signature=y&event=delivered"
    form = Inbound("acme", body, {}, RECEIVED_MS, "application/x-www-form-urlencoded")
    with pytest.raises(
        Malformed, match=r"^a legacy form-encoded Mailgun webhook: use Mailgun's JSON webhooks$"
    ):
        mailgun.read(form, KEY)


def test_a_subaccounts_event_verifies_by_its_parent_signature() -> None:
    # Mailgun signs a subaccount's events with the subaccount's key and adds parent-signature, the same HMAC
    # under the primary account's key: an account registered with the primary key takes them.
    payload = sign_mailgun("subaccount-key", mailgun_event("delivered", "ev-1"))
    signed = payload["signature"]
    parent = mailgun.signature(SIGNING_KEY, signed["timestamp"], signed["token"])
    [one] = mailgun.read(inbound({**payload, "signature": {**signed, "parent-signature": parent}}), KEY)
    assert (one.event, one.provider_event_id.partition("@")[0]) == ("delivered", "ev-1")
    foreign = mailgun.signature("another-key", signed["timestamp"], signed["token"])
    wrong = {**signed, "parent-signature": foreign}
    with pytest.raises(Forged, match="does not verify"):
        mailgun.read(inbound({**payload, "signature": wrong}), KEY)
