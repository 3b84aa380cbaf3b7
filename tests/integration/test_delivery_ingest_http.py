"""The delivery ingest over real HTTP (`POST /in/{provider}/{ingest_id}`), served as `pixelpipe serve` serves
the edge (its HTTP protocol and bounds), with an in-memory directory of one account per provider and a
publisher that records what it was given (and can be told the bus is away): what each provider's signed
request publishes, what every refusal answers, and that nothing of a refused request is published."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deliveries.port import BusUnavailable, MailService
from ingest.http_protocol import EdgeHttpProtocol, bounded
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.delivery_events import DeliveryEvent
from schemas.secret import Secret
from tests.integration.helpers import embedded_env
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


ACCOUNTS = [
    MailService("acme", "sendgrid", "sg-0123456789abcdef", {"public_key": Secret("")}),
    MailService("acme", "mailgun", "mg-0123456789abcdef", {"signing_key": Secret("mailgun-signing-key")}),
    MailService("acme", "ses", "ses-0123456789abcdef", options={"topic_arns": []}),
    MailService(
        "acme", "postmark", "pm-0123456789abcdef", {"username": Secret("pm"), "password": Secret("pm-pass")}
    ),
    MailService("acme", "generic", "gen-0123456789abcdef", {"secret": Secret("generic-secret-0123456789")}),
    MailService(
        "acme", "report", "rep-0123456789abcdef", {"username": Secret("rep"), "password": Secret("rep-pass")}
    ),
]


@dataclass
class Deployment:
    client: httpx.Client
    base: str
    publisher: RecordingPublisher
    components: Components


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Deployment]:
    env = embedded_env(tmp_path_factory.mktemp("data"), chdb_path)
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"edge", "process"}))
    publisher = RecordingPublisher()
    components.delivery_publisher = publisher
    components.mail_services = MailServices(ACCOUNTS)
    app, _ = build_app(components)
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)
    with serving(app, http=protocol) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Deployment(client, base, publisher, components)


@pytest.fixture
def ingest(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment, with nothing published yet and the bus up again after the test."""
    deployment.publisher.published.clear()
    yield deployment
    deployment.publisher.away = False


def requests_counted(client: httpx.Client, provider: str, outcome: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^pixelpipe_delivery_requests_total\{{outcome="{outcome}",provider="{provider}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    "path",
    [
        "/in/sendgrid/no-such-id",  # unknown
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


def test_a_body_declared_over_the_limit_is_413_before_it_is_read(ingest: Deployment) -> None:
    before = requests_counted(ingest.client, "generic", "too_large")
    host, port = ingest.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /in/generic/gen-0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
            + b"[" * 1024  # a start, not the body: the answer comes without it
        )
        answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b'{"error":"the body is over the limit of 26214400 bytes"}')
    assert ingest.publisher.published == []
    assert requests_counted(ingest.client, "generic", "too_large") == before + 1


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
