"""Our generic delivery-event format read into delivery events: the signature (pixelpipe's webhook scheme) and
its time window, every event kind, times either way, malformed bodies with their reasons."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from deliveries.providers import generic
from deliveries.providers.inbound import Forged, Malformed, Unsigned
from schemas.delivery_events import DELIVERY_KINDS, DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests.mail_services import RECEIVED_MS, T0, generic_event, inbound, sign_generic

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "gen_secret_for_tests"
KEY = Secret(SECRET)


def _read(
    events: list[dict[str, Any]], *, timestamp: int = T0, now_ms: int | None = None
) -> list[DeliveryEvent]:
    body = orjson.dumps({"events": events})
    return generic.read(inbound(body, sign_generic(SECRET, body, timestamp)), KEY, now_ms=now_ms)


def test_a_bounce_carries_everything() -> None:
    event = generic_event(
        "postfix-4BqY7m1x2Kz-ada",
        "bounce",
        provider_message_id="4BqY7m1x2Kz",
        diagnostic="host mx.example.org[192.0.2.25] said: 550 5.1.1 <ada@example.com>: User unknown",
    )
    [one] = _read([event])
    assert one == DeliveryEvent(
        delivery_id=delivery_id("acme", "generic", "postfix-4BqY7m1x2Kz-ada"),
        account="acme",
        provider="generic",
        provider_event_id="postfix-4BqY7m1x2Kz-ada",
        event="bounce",
        occurred_at_ms=T0 * 1000,
        received_at_ms=RECEIVED_MS,
        message_id="m1",
        campaign_id="spring",
        provider_message_id="4BqY7m1x2Kz",
        recipient="ada@example.com",
        bounce_type="hard",
        smtp_status="5.1.1",
        smtp_code=550,
        diagnostic="host mx.example.org[192.0.2.25] said: 550 5.1.1 <ada@example.com>: User unknown",
        provider_type="bounce",
    )


def test_every_kind_and_both_time_forms() -> None:
    events = [generic_event(f"e{i}", kind, occurred_at=T0 + i) for i, kind in enumerate(DELIVERY_KINDS)]
    events.append(generic_event("e-iso", "delivered", occurred_at="2025-12-03T22:00:00.250+01:00"))
    events.append(generic_event("e-frac", "delivered", occurred_at=T0 + 0.5))
    read = _read(events)
    assert [(e.event, e.occurred_at_ms) for e in read] == [
        *[(kind, (T0 + i) * 1000) for i, kind in enumerate(DELIVERY_KINDS)],
        ("delivered", T0 * 1000 + 250),
        ("delivered", T0 * 1000 + 500),
    ]


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"bounce_type": "soft", "smtp_status": "5.1.1"}, "soft"),  # the MTA's word wins
        ({"smtp_status": "4.2.2"}, "soft"),
        ({"smtp_code": 550}, "hard"),
        ({"smtp_code": "452"}, "soft"),
        ({"diagnostic": "552 5.2.2 Mailbox full"}, "soft"),
        ({}, "soft"),
    ],
)
def test_the_bounce_type_given_else_the_codes(fields: dict[str, Any], verdict: str) -> None:
    [one] = _read([generic_event("e1", "bounce", **fields)])
    assert one.bounce_type == verdict


def test_the_status_kept_is_the_code_the_field_holds() -> None:
    given = [("5.2.2 (mailbox full)", "5.2.2", "soft"), ("#5.1.1", "5.1.1", "hard"), ("n/a", "", "hard")]
    for status, kept, verdict in given:
        [one] = _read([generic_event("e1", "bounce", smtp_status=status, diagnostic="550 User unknown")])
        assert (one.smtp_status, one.bounce_type) == (kept, verdict)


def test_only_the_id_event_and_time_are_needed() -> None:
    [one] = _read([{"id": "e1", "event": "delivered", "occurred_at": T0}])
    assert (one.message_id, one.campaign_id, one.recipient, one.provider_message_id) == ("", "", "", "")


def test_no_signature_is_unsigned() -> None:
    body = orjson.dumps({"events": []})
    with pytest.raises(Unsigned):
        generic.read(inbound(body), KEY)


def test_wrong_signatures_are_forged() -> None:
    body = orjson.dumps({"events": [generic_event("e1", "delivered")]})
    cases = {
        "the signature does not match the body": [
            (body, sign_generic("another", body)),
            (body.replace(b"ada@", b"eve@"), sign_generic(SECRET, body)),
        ],
        "the signature is not t=<unix seconds>,v1=<hex HMAC-SHA256>": [
            (body, {"Pixelpipe-Signature": "v1=abc"}),
            (body, {"Pixelpipe-Signature": "t=soon,v1=abc"}),
            (body, {"Pixelpipe-Signature": f"t={T0}"}),
        ],
    }
    for reason, requests in cases.items():
        for sent, headers in requests:
            with pytest.raises(Forged) as refused:
                generic.read(inbound(sent, headers), KEY)
            assert str(refused.value) == reason
    with pytest.raises(Forged, match="no signing secret"):
        generic.read(inbound(body, sign_generic(SECRET, body)), Secret(""))


def test_the_signatures_time_window() -> None:
    now_ms = RECEIVED_MS
    events = [generic_event("e1", "delivered")]
    assert len(_read(events, timestamp=now_ms // 1000 - 72 * 3600)) == 1  # a shipper's retry, 72 h on
    assert len(_read(events, timestamp=now_ms // 1000 + 300)) == 1
    with pytest.raises(Forged, match=r"^the signature's time is more than 259200 s old$"):
        _read(events, timestamp=now_ms // 1000 - 72 * 3600 - 1)
    with pytest.raises(Forged, match=r"^the signature's time is more than 300 s ahead$"):
        _read(events, timestamp=now_ms // 1000 + 301)
    assert len(_read(events, timestamp=T0 + 86_400, now_ms=(T0 + 86_400) * 1000)) == 1


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(Forged):
        generic.read(inbound(b"{", sign_generic(SECRET, b"{}")), KEY)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "the body is not an object"),
        ({"event": []}, "events is missing or not an array"),
        ({"events": [generic_event("a", "delivered"), "b"]}, "events[1] is not an object"),
        ({"events": [generic_event("", "delivered")]}, "events[0].id is missing"),
        (
            {"events": [generic_event("a", "opened")]},
            "events[0].event is not one of delivered, deferred, bounce, dropped, complaint, unsubscribe",
        ),
        (
            {"events": [generic_event("a", "bounce", bounce_type="permanent")]},
            "events[0].bounce_type is not hard or soft",
        ),
        (
            {"events": [generic_event("a", "delivered", bounce_type="hard")]},
            "events[0].bounce_type is only for a bounce",
        ),
        ({"events": [generic_event("a", "delivered", occurred_at=None)]}, "events[0].occurred_at is missing"),
        (
            {"events": [generic_event("a", "delivered", occurred_at="2025-12-03 21:00")]},
            "events[0].occurred_at has no time zone (add Z or an offset)",
        ),
        (
            {"events": [generic_event("a", "delivered", occurred_at="today")]},
            "events[0].occurred_at is not an ISO-8601 time",
        ),
        (
            {"events": [generic_event("a", "delivered", occurred_at=True)]},
            "events[0].occurred_at is not a time in epoch seconds",
        ),
        (
            {"events": [generic_event("a", "delivered", occurred_at=1e300)]},
            "events[0].occurred_at is out of range",
        ),
        (
            {"events": [generic_event("a", "bounce", smtp_code=1000)]},
            "events[0].smtp_code is not an SMTP reply code",
        ),
        ({"events": [generic_event("a", "bounce", recipient=7.5)]}, "events[0].recipient is not a string"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: Any, reason: str) -> None:
    raw = orjson.dumps(body)
    with pytest.raises(Malformed) as refused:
        generic.read(inbound(raw, sign_generic(SECRET, raw)), KEY)
    assert str(refused.value) == reason


def test_not_json_is_malformed() -> None:
    with pytest.raises(Malformed, match=r"^the body is not JSON"):
        generic.read(inbound(b"{", sign_generic(SECRET, b"{")), KEY)


def test_the_readme_example_and_signing_snippet_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """README, "Delivery events from any MTA": its example body, sent by its signing snippet, verbatim."""
    section = README.read_text().split("## Delivery events from any MTA", 1)[1].split("\n## ", 1)[0]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    sent: list[urllib.request.Request] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: sent.append(request))
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102  # our own README's code
    namespace["send_delivery_events"]("https://edge/in/generic/x", SECRET, orjson.loads(example)["events"])
    [request] = sent
    assert isinstance(request.data, bytes)
    received = inbound(request.data, dict(request.header_items()))
    read = generic.read(received, KEY, now_ms=int(time.time() * 1000))
    assert [(e.event, e.bounce_type, e.recipient, e.occurred_at_ms) for e in read] == [
        ("bounce", "hard", "ada@example.com", T0 * 1000),
        ("delivered", "", "bob@example.com", (T0 + 1) * 1000),
    ]
