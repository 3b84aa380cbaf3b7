"""The delivery ingest over real HTTP (`POST /in/{provider}/{ingest_id}`), served as `pixelpipe serve` serves
the edge (its HTTP protocol and bounds), with an in-memory directory of one account per provider and a
publisher that records what it was given (and can be told the bus is away): what each provider's signed
request publishes, what every refusal answers, and that nothing of a refused request is published."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deliveries.port import BusUnavailable, MailService
from ingest.http_protocol import EdgeHttpProtocol, bounded
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.delivery_events import DeliveryEvent, delivery_id
from schemas.secret import Secret
from tests import mail_services as ms
from tests import sns_signing as sns
from tests.integration.helpers import embedded_env, wait_for
from tests.serving import serving

LIMIT = 25 * 1024 * 1024  # PIXELPIPE_DELIVERY_MAX_BODY_BYTES's default
UNKNOWN = {"error": "no such ingest URL"}


class MailServices:
    """The directory: accounts by the ingest id of their URL."""

    def __init__(self, services: Sequence[MailService]) -> None:
        self._by_id = {s.ingest_id: s for s in services}

    def find(self, ingest_id: str) -> MailService | None:
        return self._by_id.get(ingest_id)


@dataclass
class RecordingPublisher:
    """A `DeliveryPublisher` keeping each call's events; `away` makes it raise `BusUnavailable`."""

    published: list[list[DeliveryEvent]] = field(default_factory=list)
    away: bool = False

    async def start(self) -> None:
        return None

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        if self.away:
            raise BusUnavailable("the test's bus is away")
        self.published.append(list(events))

    def ready(self) -> bool:
        return not self.away

    async def stop(self) -> None:
        return None

    def events(self) -> list[DeliveryEvent]:
        return [e for call in self.published for e in call]


SENDGRID_PRIVATE, SENDGRID_PUBLIC = ms.sendgrid_keys()
OTHER_PRIVATE, _ = ms.sendgrid_keys()
MAILGUN_KEY = "mailgun-signing-key"
GENERIC_SECRET = "generic-secret-0123456789"
ACCOUNTS = [
    MailService("acme", "sendgrid", "sg-0123456789abcdef", {"public_key": Secret(SENDGRID_PUBLIC)}),
    MailService("acme", "mailgun", "mg-0123456789abcdef", {"signing_key": Secret(MAILGUN_KEY)}),
    MailService("acme", "ses", "ses-0123456789abcdef", options={"topic_arns": [sns.TOPIC_ARN]}),
    MailService(
        "acme", "postmark", "pm-0123456789abcdef", {"username": Secret("pm"), "password": Secret("pm-pass")}
    ),
    MailService("acme", "generic", "gen-0123456789abcdef", {"secret": Secret(GENERIC_SECRET)}),
    MailService(
        "acme", "report", "rep-0123456789abcdef", {"username": Secret("rep"), "password": Secret("rep-pass")}
    ),
]


class Amazon(httpx.AsyncBaseTransport):
    """Amazon SNS as the edge would reach it: the test certificate at its SNS URLs, a confirmation at a
    SubscribeURL; every URL requested recorded. ``down``: URLs answered 500."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requested.append(url)
        if url in self.down:
            return httpx.Response(500)
        if url.endswith(".pem"):
            return httpx.Response(200, content=sns.signing_key().certificate_pem)
        if "Action=ConfirmSubscription" in url:
            return httpx.Response(200, content=b"<ConfirmSubscriptionResponse/>")
        return httpx.Response(404)


@dataclass
class Deployment:
    client: httpx.Client
    base: str
    publisher: RecordingPublisher
    components: Components
    amazon: Amazon


@contextmanager
def deployed(data_dir: Path, chdb_path: Path, **settings_env: str) -> Iterator[Deployment]:
    """An edge (with a processor: the in-process bus needs one) over real HTTP, the test's directory, a
    recording publisher and Amazon's answers."""
    settings = settings_mod.load(embedded_env(data_dir, chdb_path, **settings_env))
    components = build_components(settings, frozenset({"edge", "process"}))
    publisher = RecordingPublisher()
    components.delivery_publisher = publisher
    components.mail_services = MailServices(ACCOUNTS)
    amazon = components.sns_transport = Amazon()
    app, _ = build_app(components)
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)
    with serving(app, http=protocol) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Deployment(client, base, publisher, components, amazon)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Deployment]:
    with deployed(tmp_path_factory.mktemp("data"), chdb_path) as running:
        yield running


@pytest.fixture
def ingest(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment, with nothing published yet and the bus up again after the test."""
    deployment.publisher.published.clear()
    deployment.amazon.requested.clear()
    yield deployment
    deployment.publisher.away = False


def counted(client: httpx.Client, metric: str, **labels: str) -> float:
    """A counter's value (0 before its first count), read from /metrics."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{metric}\{{{inner}\}} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def requests_counted(client: httpx.Client, provider: str, outcome: str) -> float:
    return counted(client, "pixelpipe_delivery_requests_total", provider=provider, outcome=outcome)


@pytest.mark.parametrize(
    "path",
    [
        *(f"/in/{provider}/no-such-id" for provider in ("sendgrid", "mailgun", "ses", "sns", "postmark")),
        *(f"/in/{provider}/no-such-id" for provider in ("generic", "report")),
        "/in/mailgun/sg-0123456789abcdef",  # SendGrid's account, on Mailgun's path
        "/in/ses/sg-0123456789abcdef",
        "/in/mandrill/sg-0123456789abcdef",  # no such provider
        "/in/generic/gen-0123456789abcdeF",  # ids are compared exactly
    ],
)
def test_an_unknown_ingest_url_is_404_saying_nothing_of_which_exist(ingest: Deployment, path: str) -> None:
    r = ingest.client.post(path, content=b"[]", headers={"content-type": "application/json"})
    assert r.status_code == 404
    assert r.json() == UNKNOWN
    assert ingest.publisher.published == []


def test_only_post_is_taken(ingest: Deployment) -> None:
    r = ingest.client.get("/in/sendgrid/sg-0123456789abcdef")
    assert r.status_code == 405
    assert ingest.publisher.published == []


@pytest.mark.parametrize("account", ACCOUNTS, ids=lambda a: a.provider)
def test_a_body_declared_over_the_limit_is_413_unread(ingest: Deployment, account: MailService) -> None:
    before = requests_counted(ingest.client, account.provider, "too_large")
    host, port = ingest.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST /in/{account.provider}/{account.ingest_id} HTTP/1.1\r\n".encode()
            + b"Host: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
            + b"[" * 1024  # a start, not the body: the answer comes without it
        )
        answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b'{"error":"the body is over the limit of 26214400 bytes"}')
    assert ingest.publisher.published == []
    assert requests_counted(ingest.client, account.provider, "too_large") == before + 1


def test_the_limit_is_the_settings(tmp_path: Path, chdb_path: Path) -> None:
    """PIXELPIPE_DELIVERY_MAX_BODY_BYTES=2048: a body of 2048 bytes is read, one of 2049 is not."""
    event = ms.generic_event("limit-1", "delivered")
    body = orjson.dumps({"events": [event]})
    padded = body[:-1] + b" " * (2048 - len(body)) + b"}"  # JSON whitespace: the same event
    assert len(padded) == 2048
    with deployed(tmp_path, chdb_path, PIXELPIPE_DELIVERY_MAX_BODY_BYTES="2048") as small:
        for content, status in ((padded, 200), (padded + b" ", 413)):
            headers = {**JSON, **ms.sign_generic(GENERIC_SECRET, content, _now())}
            r = small.client.post("/in/generic/gen-0123456789abcdef", content=content, headers=headers)
            assert r.status_code == status, r.text
        assert r.json() == {"error": "the body is over the limit of 2048 bytes"}
        assert [e.provider_event_id for e in small.publisher.events()] == ["limit-1"]


def test_a_chunked_body_is_413_as_soon_as_it_crosses_the_limit(ingest: Deployment) -> None:
    host, port = ingest.base.removeprefix("http://").split(":")
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /in/generic/gen-0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(LIMIT // len(chunk) + 1):  # one byte... one chunk past the limit, and no last chunk
            conn.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert ingest.publisher.published == []


def test_a_client_that_leaves_mid_body_publishes_nothing(ingest: Deployment) -> None:
    before = requests_counted(ingest.client, "generic", "disconnected")
    host, port = ingest.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /in/generic/gen-0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"events": ['
        )
    wait_for(lambda: requests_counted(ingest.client, "generic", "disconnected"), lambda n: n == before + 1)
    assert ingest.publisher.published == []


def _read_answer(conn: socket.socket) -> bytes:
    """One answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        assert more, data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        more = conn.recv(65536)
        assert more
        body += more
    return head + b"\r\n\r\n" + body


# --- each provider's requests, signed as it signs them ---

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Post:
    path: str
    body: bytes
    headers: dict[str, str]


def _now() -> int:
    return int(time.time())


def sendgrid(events: list[dict[str, Any]], *, key: Any = SENDGRID_PRIVATE, signed: bool = True) -> Post:
    body = orjson.dumps(events)
    headers = {**JSON, **(ms.sign_sendgrid(key, body, _now()) if signed else {})}
    return Post("/in/sendgrid/sg-0123456789abcdef", body, headers)


def mailgun(event_data: dict[str, Any], *, key: str = MAILGUN_KEY, signed: bool = True) -> Post:
    payload = ms.sign_mailgun(key, event_data, timestamp=_now())
    if not signed:
        del payload["signature"]
    return Post("/in/mailgun/mg-0123456789abcdef", orjson.dumps(payload), dict(JSON))


def postmark(record: dict[str, Any], *, password: str = "pm-pass", signed: bool = True) -> Post:  # noqa: S107
    headers = {**JSON, **(ms.postmark_auth("pm", password) if signed else {})}
    return Post("/in/postmark/pm-0123456789abcdef", orjson.dumps(record), headers)


def generic(events: list[dict[str, Any]], *, secret: str = GENERIC_SECRET, signed: bool = True) -> Post:
    body = orjson.dumps({"events": events})
    headers = {**JSON, **(ms.sign_generic(secret, body, _now()) if signed else {})}
    return Post("/in/generic/gen-0123456789abcdef", body, headers)


USER_UNKNOWN = {
    "Action": "failed",
    "Final-Recipient": "rfc822; ann@example.org",
    "Status": "5.1.1",
    "Diagnostic-Code": "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown",
}


def report(body: bytes, *, password: str = "rep-pass", signed: bool = True) -> Post:  # noqa: S107
    headers = {"content-type": "message/rfc822", **(ms.postmark_auth("rep", password) if signed else {})}
    return Post("/in/report/rep-0123456789abcdef", body, headers)


def send(client: httpx.Client, post: Post) -> httpx.Response:
    return client.post(post.path, content=post.body, headers=post.headers)


@dataclass(frozen=True)
class Case:
    """One provider's requests: ``good`` publishes ``expected`` ((event, provider_event_id or "" when the
    reader names it), ...); ``forged`` is signed with the wrong key; ``unsigned`` carries no signature;
    ``malformed`` is signed, but not the provider's format."""

    provider: str
    good: Callable[[], Post]
    expected: tuple[tuple[str, str], ...]
    forged: Callable[[], Post]
    unsigned: Callable[[], Post]
    malformed: Callable[[], Post]


SG_EVENTS = [
    ms.sendgrid_event("delivered", "sg-ev-1"),
    ms.sendgrid_event("open", "sg-ev-2"),  # not a delivery event: skipped
    ms.sendgrid_event("bounce", "sg-ev-3", email="bob@example.com"),
]
MG_EVENT = ms.mailgun_event(
    "failed", "mg-ev-1", severity="permanent", reason="bounce", delivery_status={"code": 550}
)
GEN_EVENTS = [ms.generic_event("gen-ev-1", "delivered"), ms.generic_event("gen-ev-2", "deferred")]

CASES = [
    Case(
        "sendgrid",
        lambda: sendgrid(SG_EVENTS),
        (("delivered", "sg-ev-1"), ("bounce", "sg-ev-3")),
        lambda: sendgrid(SG_EVENTS, key=OTHER_PRIVATE),
        lambda: sendgrid(SG_EVENTS, signed=False),
        lambda: sendgrid([{"event": "delivered"}]),
    ),
    Case(
        "mailgun",
        lambda: mailgun(MG_EVENT),
        (("bounce", f"mg-ev-1@{round(MG_EVENT['timestamp'] * 1000)}"),),  # Mailgun's id is a day's only
        lambda: mailgun(MG_EVENT, key="another-key"),
        lambda: mailgun(MG_EVENT, signed=False),
        lambda: mailgun({"event": "delivered"}),
    ),
    Case(
        "postmark",
        lambda: postmark(ms.postmark_bounce(42)),
        (("bounce", ""),),
        lambda: postmark(ms.postmark_bounce(42), password="guessed"),
        lambda: postmark(ms.postmark_bounce(42), signed=False),
        lambda: postmark({"RecordType": "Bounce"}),
    ),
    Case(
        "generic",
        lambda: generic(GEN_EVENTS),
        (("delivered", "gen-ev-1"), ("deferred", "gen-ev-2")),
        lambda: generic(GEN_EVENTS, secret="another-secret-0123456789"),
        lambda: generic(GEN_EVENTS, signed=False),
        lambda: generic([{"id": "x", "event": "exploded", "occurred_at": "2025-12-03T21:00:00Z"}]),
    ),
]
CASES.append(
    Case(
        "report",
        lambda: report(sns.dsn([USER_UNKNOWN], ours=("m1", "spring"))),
        (("bounce", ""),),
        lambda: report(sns.dsn([USER_UNKNOWN]), password="guessed"),
        lambda: report(sns.dsn([USER_UNKNOWN]), signed=False),
        lambda: report(b"Subject: not a report\r\n\r\nhello\r\n"),
    )
)
BY_PROVIDER = {case.provider: case for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider)
def test_a_signed_request_publishes_its_events(ingest: Deployment, case: Case) -> None:
    before = requests_counted(ingest.client, case.provider, "accepted")
    started_ms = _now() * 1000
    r = send(ingest.client, case.good())
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": len(case.expected)}
    assert len(ingest.publisher.published) == 1  # one publish: durable together
    events = ingest.publisher.events()
    assert [e.event for e in events] == [kind for kind, _ in case.expected]
    for event, (_, provider_event_id) in zip(events, case.expected, strict=True):
        assert event.account == "acme"
        assert event.provider == case.provider
        assert event.provider_event_id == (provider_event_id or event.provider_event_id) != ""
        assert event.delivery_id == delivery_id("acme", case.provider, event.provider_event_id)
        assert (event.message_id, event.campaign_id) == ("m1", "spring")
        assert started_ms <= event.received_at_ms <= _now() * 1000 + 1000
    assert requests_counted(ingest.client, case.provider, "accepted") == before + 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider)
@pytest.mark.parametrize(
    ("which", "status", "outcome"),
    [("forged", 403, "forged"), ("unsigned", 401, "unsigned"), ("malformed", 400, "malformed")],
)
def test_a_refused_request_publishes_nothing(
    ingest: Deployment, case: Case, which: str, status: int, outcome: str
) -> None:
    before = requests_counted(ingest.client, case.provider, outcome)
    post: Post = getattr(case, which)()
    r = send(ingest.client, post)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert r.json()["error"]
    assert ingest.publisher.published == []
    assert requests_counted(ingest.client, case.provider, outcome) == before + 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.provider)
def test_the_bus_away_is_503_and_the_retry_is_taken(ingest: Deployment, case: Case) -> None:
    ingest.publisher.away = True
    post = case.good()
    r = send(ingest.client, post)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json() == {"error": "the events could not be made durable now; retry later"}
    assert ingest.publisher.published == []
    ingest.publisher.away = False
    again = send(ingest.client, post)  # the provider's retry, byte for byte
    assert again.status_code == 200
    assert again.json() == {"accepted": len(case.expected)}


def test_a_batch_without_delivery_events_is_200_with_none(ingest: Deployment) -> None:
    opens = [ms.sendgrid_event("open", f"sg-open-{i}") for i in range(3)]
    r = send(ingest.client, sendgrid(opens))
    assert r.status_code == 200
    assert r.json() == {"accepted": 0}
    assert ingest.publisher.published == []  # nothing to make durable


def test_a_10000_event_sendgrid_batch(ingest: Deployment) -> None:
    kinds = ("delivered", "bounce", "deferred", "dropped")
    batch = [
        ms.sendgrid_event(kinds[i % 4], f"sg-batch-{i}", message_id=f"m{i}", email=f"r{i}@example.com")
        for i in range(10_000)
    ]
    post = sendgrid(batch)
    assert 3_000_000 < len(post.body) < LIMIT
    metric = "pixelpipe_delivery_events_accepted_total"
    before = {k: counted(ingest.client, metric, provider="sendgrid", event=k) for k in kinds}
    r = send(ingest.client, post)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 10_000}
    events = ingest.publisher.events()
    assert len(ingest.publisher.published) == 1
    assert [e.provider_event_id for e in events] == [f"sg-batch-{i}" for i in range(10_000)]
    assert len({e.delivery_id for e in events}) == 10_000
    assert {k: sum(e.event == k for e in events) for k in kinds} == dict.fromkeys(kinds, 2_500)
    after = {k: counted(ingest.client, metric, provider="sendgrid", event=k) for k in kinds}
    assert {k: after[k] - before[k] for k in kinds} == dict.fromkeys(kinds, 2_500)


GARBAGE = [
    b"",
    b"\xff\xfe\x00garbage",
    b"null",
    b"[]",
    b"{}",
    b'"events"',
    b"[1, 2, 3]",
    b'{"events": {"not": "a list"}}',
    b"[" * 100_000,
    b'{"a": 1e999999}',
    b'[{"event": "delivered", "timestamp": 99999999999999999999999}]',
    "\u00e9v\u00e9nement".encode("latin-1"),
    b'--x\r\nContent-Disposition: form-data; name="signature"\r\n\r\nx\r\n--x--\r\n',
]
CONTENT_TYPES = ["application/json", "text/plain", "multipart/form-data; boundary=x", "message/rfc822", ""]


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "generic", "report"])
def test_garbage_is_a_4xx_and_publishes_nothing(ingest: Deployment, provider: str) -> None:
    """Each body under each content type, unsigned and (where the signature does not depend on the body's
    format) signed: never a 5xx, never a 2xx."""
    path = BY_PROVIDER[provider].good().path
    statuses: set[int] = set()
    for body in GARBAGE:
        for content_type in CONTENT_TYPES:
            signed = {
                "sendgrid": ms.sign_sendgrid(SENDGRID_PRIVATE, body, _now()),
                "mailgun": {},
                "postmark": ms.postmark_auth("pm", "pm-pass"),
                "report": ms.postmark_auth("rep", "rep-pass"),
                "generic": ms.sign_generic(GENERIC_SECRET, body, _now()),
            }[provider]
            for headers in ({}, signed):
                r = ingest.client.post(path, content=body, headers={"content-type": content_type, **headers})
                if r.status_code == 200:  # a signed empty batch ("[]" to SendGrid) is one
                    assert (body, r.json()) == (b"[]", {"accepted": 0})
                    continue
                assert 400 <= r.status_code < 500, (body[:40], content_type, headers, r.status_code, r.text)
                assert set(r.json()) == {"error"}
                statuses.add(r.status_code)
    assert ingest.publisher.published == []
    assert 400 in statuses


# --- Amazon SES through SNS ---

SES_PATH = "/in/ses/ses-0123456789abcdef"
SNS_HEADERS = {"content-type": "text/plain; charset=UTF-8"}
BOUNCE = {
    "bounceType": "Permanent",
    "bounceSubType": "General",
    "bouncedRecipients": [
        {"emailAddress": "ann@example.org", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown"},
        {"emailAddress": "bob@example.org", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown"},
    ],
    "timestamp": "2026-12-03T21:00:05.000Z",
    "feedbackId": "0100018c-feedback-1",
}


def ses_post(message: dict[str, str], path: str = SES_PATH) -> Post:
    headers = {**SNS_HEADERS, "x-amz-sns-message-type": message["Type"]}
    return Post(path, orjson.dumps(message), headers)


def ses_bounce(**fields: Any) -> dict[str, str]:
    record = sns.ses_record("Bounce", BOUNCE, destination=("ann@example.org", "bob@example.org"))
    return sns.notification(record, message_id="sns-message-1", **fields)


@pytest.mark.parametrize("path", [SES_PATH, "/in/sns/ses-0123456789abcdef"])
def test_a_signed_sns_notification_publishes_its_ses_events(ingest: Deployment, path: str) -> None:
    r = send(ingest.client, ses_post(ses_bounce(), path))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2}
    events = ingest.publisher.events()
    assert [(e.event, e.recipient, e.bounce_type, e.smtp_status) for e in events] == [
        ("bounce", "ann@example.org", "hard", "5.1.1"),
        ("bounce", "bob@example.org", "hard", "5.1.1"),
    ]
    for event in events:
        assert (event.account, event.provider, event.message_id, event.campaign_id) == (
            "acme",
            "ses",
            "msg-1",
            "camp-1",
        )
        assert event.provider_message_id == "0100018c-ses-message-1"
        assert event.delivery_id == delivery_id("acme", "ses", event.provider_event_id)
    assert len({e.delivery_id for e in events}) == 2
    # the certificate from its SNS URL, once: the second request found it cached
    assert ingest.amazon.requested in ([sns.CERT_URL], [])


def test_a_large_sns_notification_is_read_whole(ingest: Deployment) -> None:
    """Over `INLINE_MAX_BYTES`, read in a thread: the same events."""
    recipients = [f"r{i}@example.org" for i in range(300)]
    bounce = {
        **BOUNCE,
        "bouncedRecipients": [{"emailAddress": r, "status": "5.1.1"} for r in recipients],
    }
    record = sns.ses_record("Bounce", bounce, destination=recipients)
    post = ses_post(sns.notification(record, message_id="sns-message-large"))
    assert len(post.body) > 16 * 1024
    r = send(ingest.client, post)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 300}
    assert [e.recipient for e in ingest.publisher.events()] == recipients


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (lambda: ses_bounce(key=sns.signing_key(not_after=dt.datetime(2027, 1, 2, tzinfo=dt.UTC))), 403),
        (lambda: {k: v for k, v in ses_bounce().items() if k != "Signature"}, 401),
        (lambda: ses_bounce(topic_arn=sns.TOPIC_ARN.replace("pixelpipe", "someone-else")), 403),
        (lambda: sns.notification("not an SES record"), 400),
    ],
    ids=["another key", "unsigned", "another topic", "not SES"],
)
def test_a_refused_sns_message_publishes_nothing(
    ingest: Deployment, message: Callable[[], dict[str, str]], status: int
) -> None:
    r = send(ingest.client, ses_post(message()))
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert ingest.publisher.published == []
    assert set(ingest.amazon.requested) <= {sns.CERT_URL}


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://169.254.169.254/latest/meta-data.pem",
    ],
)
def test_a_certificate_url_that_is_not_snss_is_never_requested(ingest: Deployment, cert_url: str) -> None:
    r = send(ingest.client, ses_post(ses_bounce(cert_url=cert_url)))
    assert r.status_code == 403
    assert r.json() == {"error": "the signing certificate URL is not an Amazon SNS certificate"}
    assert ingest.amazon.requested == []
    assert ingest.publisher.published == []


def test_amazon_unreachable_is_503(ingest: Deployment) -> None:
    cert_url = sns.CERT_URL.replace("us-east-1", "eu-west-3")
    ingest.amazon.down.add(cert_url)
    try:
        r = send(ingest.client, ses_post(ses_bounce(cert_url=cert_url)))
    finally:
        ingest.amazon.down.discard(cert_url)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert ingest.amazon.requested == [cert_url]
    assert ingest.publisher.published == []
    again = send(ingest.client, ses_post(ses_bounce(cert_url=cert_url)))  # SNS retries: Amazon is back
    assert again.status_code == 200
    assert again.json() == {"accepted": 2}


def test_a_subscription_is_confirmed_at_its_snss_url_only(ingest: Deployment) -> None:
    message = sns.confirmation()
    r = send(ingest.client, ses_post(message))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 0, "subscription": "confirmed"}
    assert ingest.amazon.requested == [message["SigningCertURL"], message["SubscribeURL"]]
    assert ingest.publisher.published == []


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://attacker.example/?Action=ConfirmSubscription",
        f"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={sns.TOPIC_ARN}&Token=t",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_subscribe_url_that_is_not_snss_is_never_requested(ingest: Deployment, subscribe_url: str) -> None:
    message = sns.confirmation(subscribe_url=subscribe_url)
    r = send(ingest.client, ses_post(message))
    assert r.status_code == 403
    assert subscribe_url not in ingest.amazon.requested
    assert set(ingest.amazon.requested) <= {message["SigningCertURL"]}


def test_an_unsubscribe_confirmation_is_200_with_nothing(ingest: Deployment) -> None:
    r = send(ingest.client, ses_post(sns.confirmation("UnsubscribeConfirmation")))
    assert r.status_code == 200
    assert r.json() == {"accepted": 0}
    assert ingest.publisher.published == []


def test_the_bus_away_is_503_for_ses_too(ingest: Deployment) -> None:
    ingest.publisher.away = True
    r = send(ingest.client, ses_post(ses_bounce()))
    assert r.status_code == 503
    assert ingest.publisher.published == []


# --- end to end: the ingest, the in-process delivery bus and the loader, into chDB ---


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Deployment]:
    """`pixelpipe serve` as it runs: every role, its own delivery bus, loader and directory of accounts."""
    env = embedded_env(tmp_path_factory.mktemp("data"), chdb_path)
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    assert components.delivery_publisher is not None  # the in-process delivery bus
    assert components.mail_services is not None  # fed by the API
    app, _ = build_app(components)
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)
    with serving(app, http=protocol) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Deployment(client, base, RecordingPublisher(), components, Amazon())


def test_a_signed_sendgrid_batch_becomes_rows_once(pipeline: Deployment) -> None:
    store = pipeline.components.store
    assert store is not None
    account = pipeline.client.put(
        "/v1/mail-services/sendgrid",
        json={"credentials": {"public_key": SENDGRID_PUBLIC}},
        headers={"Authorization": "Bearer acme-key-123"},
    )
    assert account.status_code == 201, account.text
    ingest_path = httpx.URL(account.json()["ingest_url"]).path
    assert ingest_path.startswith("/in/sendgrid/")
    for i in range(3):
        r = pipeline.client.post(
            "/v1/messages",
            json={"campaign_id": "spring", "recipient": f"r{i}@example.com", "message_id": f"m-e2e-{i}"},
            headers={"Authorization": "Bearer acme-key-123"},
        )
        assert r.status_code == 201, r.text
    at = _now()

    def event(kind: str, n: int, message_id: str, email: str) -> dict[str, Any]:
        return ms.sendgrid_event(kind, f"e2e-{n}", message_id=message_id, email=email, timestamp=at)

    batch = [
        *(event("delivered", i, f"m-e2e-{i}", f"r{i}@example.com") for i in range(3)),
        event("bounce", 3, "m-e2e-2", "r2@example.com"),
        event("open", 4, "m-e2e-0", "r0@example.com"),  # not a delivery event
        event("delivered", 5, "m-e2e-unknown", "x@example.com"),  # stored, unmatched
    ]
    post = dataclasses.replace(sendgrid(batch), path=ingest_path)
    for _ in range(2):  # SendGrid's retry of the same request: the same rows
        r = send(pipeline.client, post)
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 5}

    def rows() -> list[tuple[Any, ...]]:
        return store.query(
            f"SELECT provider_event_id, event, message_id, matched_by != '', bounce_type "
            f"FROM {store.database}.deliveries FINAL WHERE account = 'acme' ORDER BY provider_event_id"
        )

    stored, _ = wait_for(rows, lambda found: len(found) == 5)
    assert stored == [
        ("e2e-0", "delivered", "m-e2e-0", True, ""),
        ("e2e-1", "delivered", "m-e2e-1", True, ""),
        ("e2e-2", "delivered", "m-e2e-2", True, ""),
        ("e2e-3", "bounce", "m-e2e-2", True, "hard"),
        ("e2e-5", "delivered", "", False, ""),
    ]
    # Counted once, not only shown once: every stored copy is the same delivery_id.
    (distinct,) = store.query(
        f"SELECT uniqExact(delivery_id) FROM {store.database}.deliveries WHERE account = 'acme'"
    )
    assert distinct == (5,)

    # What the sender reads of them, through the API: the numbers of the campaign and the message's life.
    def stats() -> dict[str, Any]:
        r = pipeline.client.get(
            "/v1/campaigns/spring/stats", headers={"Authorization": "Bearer acme-key-123"}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    numbers, _ = wait_for(stats, lambda s: s["delivered"] == 2)
    assert {
        k: numbers[k] for k in ("sent", "delivered", "bounced", "bounces", "complaints", "rate_basis")
    } == {
        "sent": 3,
        "delivered": 2,
        "bounced": 1,
        "bounces": {"hard": 1, "soft": 0},
        "complaints": 0,
        "rate_basis": "delivered",
    }
    r = pipeline.client.get("/v1/messages/m-e2e-2/timeline", headers={"Authorization": "Bearer acme-key-123"})
    assert r.status_code == 200, r.text
    timeline = [(e["kind"], e["event"], e["bounce_type"], e["smtp_status"]) for e in r.json()["timeline"]]
    assert timeline == [("delivery", "delivered", None, "2.0.0"), ("delivery", "bounce", "hard", "5.1.1")]
