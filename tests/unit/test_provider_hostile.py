"""Hostile input to every provider reader: whatever a request holds, a reader answers with events or a
`Refused` (a 4xx), never another exception (which the ingest would answer with a 5xx, and the provider would
retry forever). Named regressions first, then a seeded fuzz of each reader: validly signed bodies whose JSON
is mutated at random places, and garbled report bytes (a report's credentials do not cover its body)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from deliveries.providers import generic, mailgun, postmark, reports, sendgrid, ses
from deliveries.providers.inbound import Forged, Malformed, Refused
from schemas.secret import Secret
from tests import mail_services as services
from tests import sns_signing as sns

ITERATIONS = 2000
USER, PASSWORD = Secret("u"), Secret("p")
AUTH = services.postmark_auth("u", "p")


# --- named regressions, each a crash the fuzz found ---


def _sendgrid(events: list[dict[str, Any]]) -> list[Any]:
    private, public = _sendgrid_keys()
    body = orjson.dumps(events)
    return sendgrid.read(services.inbound(body, services.sign_sendgrid(private, body)), Secret(public))


_KEYS: list[tuple[Any, str]] = []


def _sendgrid_keys() -> tuple[Any, str]:
    if not _KEYS:
        _KEYS.append(services.sendgrid_keys())
    return _KEYS[0]


def _generic(body: dict[str, Any], header: str | None = None) -> list[Any]:
    raw = orjson.dumps(body)
    signed = {"Pixelpipe-Signature": header} if header is not None else services.sign_generic("s", raw, T)
    return generic.read(services.inbound(raw, signed), Secret("s"))


T = services.RECEIVED_MS // 1000


def test_a_time_too_large_for_a_float_times_1000_is_out_of_range() -> None:
    with pytest.raises(Malformed, match=r"^events\[0\]\.timestamp is out of range$"):
        _sendgrid([services.sendgrid_event("delivered", "e1", timestamp=1e308)])


def test_digits_that_are_not_ascii_are_no_smtp_code() -> None:
    for code in ("²", "\uff11\uff12"):
        event = services.generic_event("g1", "bounce", smtp_code=code)
        with pytest.raises(Malformed, match=r"^events\[0\]\.smtp_code is not an SMTP reply code$"):
            _generic({"events": [event]})


@pytest.mark.parametrize(
    "header",
    ["t=²,v1=00", f"t={T},v1=é", "t=" + "9" * 5000 + ",v1=00", f"t={T}é,v1=00"],
)
def test_a_generic_signature_header_of_other_than_ascii_digits_is_forged(header: str) -> None:
    with pytest.raises(Forged):
        _generic({"events": []}, header)


def test_an_sns_signature_of_other_than_ascii_is_malformed() -> None:
    body = {**sns.notification("{}"), "Signature": "é"}
    with pytest.raises(Malformed, match=r"^the SNS Signature is not base64$"):
        ses.read(sns.inbound(body), sns.signing_key().certificate_pem, now_ms=sns.NOW_MS)


def test_basic_credentials_of_other_than_ascii_are_forged() -> None:
    body = orjson.dumps(services.postmark_delivery())
    for authorization in ("Basic é", "Basic dTpw\u00ff"):
        with pytest.raises(Forged):
            postmark.read(services.inbound(body, {"Authorization": authorization}), USER, PASSWORD)


def test_a_report_whose_message_id_the_structured_parser_chokes_on_is_read() -> None:
    # email.policy.default raises IndexError reading "Message-ID: <@>"; the report's own id is then its text.
    body = sns.dsn(
        [{"Final-Recipient": "rfc822; ann@example.org", "Action": "failed", "Status": "5.1.1"}], report_id="@"
    )
    read = reports.read_report(services.inbound(body, AUTH))
    assert [(e.event, e.recipient, e.bounce_type) for e in read.events] == [
        ("bounce", "ann@example.org", "hard")
    ]


def test_a_feedback_report_without_original_rcpt_to_names_the_address_of_the_originals_to() -> None:
    read = reports.read_report(
        services.inbound(sns.arf(recipients=(), to="Ann Example <ann@example.org>"), AUTH)
    )
    assert [e.recipient for e in read.events] == ["ann@example.org"]


def test_a_report_nested_past_the_stacks_limit_is_malformed() -> None:
    # email parses nested multiparts by recursion: 2000 levels are a 110 KB body and a RecursionError.
    levels = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1) for n in range(2000)
    )
    body = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b0\r\n\r\n" + levels
    with pytest.raises(Malformed, match=r"^not a report: its MIME parts nest too deeply$"):
        reports.read_report(services.inbound(body, AUTH))


# --- the fuzz ---

_WEIRD: list[Any] = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 999, 1000, 1e308, -1e308, 1e-300, 0.5,
    "", " ", "²", "٣", "\uff11\uff12", "5.1.1", "550", "x" * 3000, "\x00", "é", "<>", "<", ";", "smtp;",
    "2025-12-03T21:00:00", "2025-12-03T21:00:00Z", "0001-01-01T00:00:00+14:00", "nan", "1e400", [], {},
    "https://[x/a.pem",
]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(6)
    if choice == 0 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if choice == 1 and depth < 3:
        keys = ["status", "emailAddress", "code", "event", "a", "é"]
        return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(3))}
    if choice == 2:
        return "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(rng.randrange(8)))
    return copy.deepcopy(rng.choice(_WEIRD))


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _paths(inner, (*path, key))


def _mutated(rng: random.Random, sample: Any) -> Any:
    """``sample`` with one to three places replaced by something odd, or dropped."""
    value = copy.deepcopy(sample)
    for _ in range(rng.randrange(1, 4)):
        path = rng.choice(list(_paths(value)))
        if not path:
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.25:
            del parent[path[-1]]
        else:
            parent[path[-1]] = _value(rng)
    return value


def _garbled(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 20)):
        at = rng.randrange(len(data) + 1)
        what = rng.randrange(3)
        if what == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif what == 1:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            del data[at : at + rng.randrange(1, 30)]
    return bytes(data)


def _sendgrid_case(rng: random.Random) -> Callable[[], object]:
    kinds = ["delivered", "deferred", "bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"]
    events = [services.sendgrid_event(kind, f"sg-{n}") for n, kind in enumerate(kinds)]
    body = _mutated(rng, rng.sample(events, rng.randrange(1, len(events) + 1)))
    return lambda: _sendgrid(body)


def _mailgun_case(rng: random.Random) -> Callable[[], object]:
    status = {"code": 550, "enhanced-code": "5.1.1", "message": "5.1.1 no such user", "description": ""}
    samples = [
        services.mailgun_event(
            "failed", "mg-1", severity="permanent", reason="bounce", delivery_status=status
        ),
        services.mailgun_event("delivered", "mg-2"),
    ]
    payload = services.sign_mailgun("k", _mutated(rng, rng.choice(samples)))
    if rng.random() < 0.2:
        payload = _mutated(rng, payload)
    return lambda: mailgun.read(services.inbound(payload), Secret("k"))


def _postmark_case(rng: random.Random) -> Callable[[], object]:
    records = [
        services.postmark_delivery(),
        services.postmark_bounce(1),
        services.postmark_bounce(2, "SpamComplaint", record_type="SpamComplaint"),
        services.postmark_subscription_change(),
    ]
    record = rng.choice(records)
    body = _garbled(rng, orjson.dumps(record)) if rng.random() < 0.3 else orjson.dumps(_mutated(rng, record))
    return lambda: postmark.read(services.inbound(body, AUTH), USER, PASSWORD)


def _generic_case(rng: random.Random) -> Callable[[], object]:
    events = [
        services.generic_event("g1", "bounce", diagnostic="550 5.1.1 no such user", smtp_code=550),
        services.generic_event("g2", "delivered", bounce_type=""),
    ]
    body = _mutated(rng, {"events": events})
    return lambda: _generic(body)


_SES_DETAILS: list[tuple[str, dict[str, Any]]] = [
    (
        "Bounce",
        {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": "ann@example.org", "status": "5.1.1", "diagnosticCode": "x"}
            ],
            "timestamp": "2026-12-03T21:01:00.000Z",
        },
    ),
    ("Complaint", {"complainedRecipients": [{"emailAddress": "ann@example.org"}], "timestamp": sns.SNS_TIME}),
    ("Delivery", {"timestamp": sns.SNS_TIME, "recipients": ["ann@example.org"], "smtpResponse": "250 ok"}),
    (
        "DeliveryDelay",
        {"timestamp": sns.SNS_TIME, "delayedRecipients": [{"emailAddress": "ann@example.org"}]},
    ),
    ("Reject", {"reason": "Bad content"}),
    ("Subscription", {"newTopicPreferences": {"unsubscribeAll": True}}),
]


def _ses_case(rng: random.Random) -> Callable[[], object]:
    kind, detail = rng.choice(_SES_DETAILS)
    record = orjson.loads(sns.ses_record(kind, detail, publishing=rng.random() < 0.5))
    envelope = sns.notification(orjson.dumps(_mutated(rng, record)).decode())
    if rng.random() < 0.3:  # the envelope itself, unsigned fields and all
        envelope = _mutated(rng, envelope)
    body = envelope if isinstance(envelope, dict) else orjson.dumps(envelope)
    certificate = sns.signing_key().certificate_pem
    return lambda: ses.read(sns.inbound(body), certificate, now_ms=sns.NOW_MS)


def _report_case(rng: random.Random) -> Callable[[], object]:
    failed = {"Final-Recipient": "rfc822; ann@example.org", "Action": "failed", "Status": "5.1.1"}
    body = _garbled(rng, rng.choice([sns.dsn([failed]), sns.arf()]))
    return lambda: reports.read_report(services.inbound(body, AUTH))


@pytest.mark.parametrize(
    ("name", "case", "iterations"),
    [
        ("sendgrid", _sendgrid_case, ITERATIONS),
        ("mailgun", _mailgun_case, ITERATIONS),
        ("postmark", _postmark_case, ITERATIONS),
        ("generic", _generic_case, ITERATIONS),
        ("ses", _ses_case, ITERATIONS // 4),  # RSA signing is slow; its reading is what is under test
        ("report", _report_case, ITERATIONS),
    ],
)
def test_a_reader_answers_hostile_input_with_events_or_a_refusal(
    name: str, case: Callable[[random.Random], Callable[[], object]], iterations: int
) -> None:
    rng = random.Random(f"hostile-{name}")
    refused = 0
    for _ in range(iterations):
        attempt = case(rng)
        try:
            read = attempt()
        except Refused:
            refused += 1
            continue
        assert isinstance(read, list | ses.SesRead | reports.ReportRead)
    assert 0 < refused < iterations  # the mutations reach both outcomes
