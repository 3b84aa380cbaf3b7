"""Webhooks end to end over real HTTP: pixels and clicks in at the edge, signed POSTs out to a real local
receiver that fails at first and then recovers; registration over the API; the SSRF rule at registration and
at delivery; secrets sealed at rest; the outbox across a restart; and the Kafka path (enriched topic → the
``pixelpipe-notify`` group → dispatcher) against a real broker.

The receiver listens on 127.0.0.1, so these deployments set ``PIXELPIPE_WEBHOOK_ALLOW_PRIVATE`` unless a test
is about refusing it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from bus.kafka_config import KafkaConfig
from notices.directory import WebhookDirectory
from notices.dispatcher import WebhookDispatcher
from notices.kafka import NoticeConsumer, NoticeProducer
from notices.live import LiveFeed
from notices.retries import RetryPolicy
from notices.signing import verify
from notices.wiring import Notifications, in_process
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.notices import WEBHOOK_COLUMNS, Notice, Webhook
from schemas.secret import Secret
from schemas.store import Store
from schemas.topics import Topics
from schemas.webhook_guard import IPAddress
from tests.integration.helpers import hit, outbox_rows, wait_for
from tests.notice_data import open_notice
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")  # Apple Mail Privacy Protection prefetch: a machine open
FAST = RetryPolicy(first_delay_s=0.1, max_delay_s=0.4, max_attempts=50, jitter=0)


# -- a real receiver -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(orjson.loads(self.body))


@dataclass
class Receiver:
    """An HTTP endpoint answering 500 to its first ``fail_first`` requests (and while ``down``), then 204."""

    fail_first: int = 0
    down: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Litestar:
        @post("/{name:str}", status_code=204)
        async def hook(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[None]:
            body = await request.body()
            with self.lock:
                failing = self.down or len(self.received) < self.fail_first
                status = 500 if failing else 204
                self.received.append(Received(f"/{name}", status, dict(request.headers), body))
            return Response(None, status_code=status)

        return Litestar(route_handlers=[hook])

    def delivered(self, path: str = "/acme") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status == 204 and r.path == path]

    def attempts(self, path: str = "/acme") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()
    with serving(rx.app()) as base:
        yield rx, base


# -- pixelpipe with notifications ----------------------------------------------------------------------------


@dataclass
class Running:
    client: httpx.Client
    base: str
    notifications: Notifications
    # Every notice, in the order the hub handed them on. This sink comes after the dispatcher's: once a
    # notice is here, its deliveries (if any) are in the outbox.
    counted: list[Notice]
    outbox: Path
    components: Components | None = None  # what runs: its bus publisher stands in for the edge

    def deliveries(self) -> list[str]:
        """The state of every delivery in the outbox; none "pending" means no attempt can follow."""
        return [state for _, state, _ in outbox_rows(self.outbox)]


@contextlib.contextmanager
def pixelpipe(
    env: dict[str, str],
    *,
    policy: RetryPolicy = FAST,
    heartbeat_s: float = 15.0,
    allow_private: bool = True,
) -> Iterator[Running]:
    settings = settings_mod.load(
        {
            **env,
            "PIXELPIPE_CLICK_WINDOW_MS": "200",
            "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true" if allow_private else "false",
        }
    )
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    assert components.store is not None
    outbox = settings.data_dir / "webhooks" / "outbox.sqlite3"
    notifications = in_process(
        components.store,
        outbox,
        keyring=settings.keyring,
        allow_private=settings.webhook_allow_private,
        policy=policy,
        heartbeat_s=heartbeat_s,
        refresh_s=0.1,
    )
    counted: list[Notice] = []

    async def record(notices: Sequence[Notice]) -> None:
        counted.extend(notices)

    assert notifications.hub is not None
    notifications.hub.sinks.append(record)
    # pixelpipe.app wires the notice path itself: put this test's (fast retries, a recorder) in its place
    wired = components.notifications
    assert wired is not None
    components.on_stored[:] = [f for f in components.on_stored if f not in wired.listeners()]
    components.on_reads_stored[:] = [f for f in components.on_reads_stored if f not in wired.read_listeners()]
    components.notifications = notifications
    components.on_stored.extend(notifications.listeners())
    components.on_reads_stored.extend(notifications.read_listeners())
    app, _ = build_app(components)
    with (
        serving(app) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield Running(client, base, notifications, counted, outbox, components)


def register(client: httpx.Client, message_id: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
    body = {
        "campaign_id": "spring",
        "recipient": f"{message_id}@example.com",
        "message_id": message_id,
        "links": ["https://shop.example.com/sale"],
    }
    r = client.post("/v1/messages", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def add_webhook(
    client: httpx.Client, url: str, events: list[str], headers: dict[str, str] = ACME
) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"url": url, "events": events}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def opens_of(client: httpx.Client, message_id: str) -> int:
    return int(client.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"])


# -- the tests -----------------------------------------------------------------------------------------------


def test_every_notice_arrives_signed_and_in_order_through_a_failing_receiver(
    env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    rx.fail_first = 4
    with pixelpipe(env) as p:
        acme = add_webhook(p.client, f"{rx_base}/acme", ["first_open", "open", "click", "machine_open"])
        add_webhook(p.client, f"{rx_base}/globex", ["open", "click", "machine_open"], headers=GLOBEX)
        assert acme["secret"].startswith("whsec_")
        m1, m2 = register(p.client, "m1"), register(p.client, "m2")
        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the registration: it is seen

        hit(p.client, m1["pixel_url"])
        # The receiver fails its first answers; the open is still counted (how soon: bench.end_to_end;
        # the webhook's own latency: bench.notice_latency).
        wait_for(lambda: opens_of(p.client, "m1"), lambda n: n == 1, timeout_s=30)
        hit(p.client, m1["pixel_url"])
        hit(p.client, m2["pixel_url"])
        hit(p.client, m1["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1])
        hit(p.client, m1["pixel_url"], ua="curl/8.4.0")  # a bot: stored as filtered, never notified
        wait_for(lambda: len(p.counted), lambda n: n == 4, timeout_s=30)
        assert hit(p.client, m1["links"]["https://shop.example.com/sale"]).status_code == 302
        wait_for(lambda: len(p.counted), lambda n: n == 5, timeout_s=30)
        # Every delivery finished: nothing pending in the outbox, so no attempt (no duplicate) can follow.
        wait_for(p.deliveries, lambda states: states == ["delivered"] * 5, timeout_s=30)

        counted = p.counted
        assert [(n.message_id, n.type, n.first) for n in counted] == [
            ("m1", "open", True),
            ("m1", "open", False),
            ("m2", "open", True),
            ("m1", "machine_open", False),
            ("m1", "click", False),
        ]
        delivered = rx.delivered()
        bodies = [r.json for r in delivered]
        # every notice exactly once (nothing crashed), in the order counted, per message
        assert sorted(b["id"] for b in bodies) == sorted(n.id for n in counted)
        for message in ("m1", "m2"):
            expected = [n.id for n in counted if n.message_id == message]
            assert [b["id"] for b in bodies if b["data"]["message_id"] == message] == expected
        # the first four attempts failed and were retried
        attempts = rx.attempts()
        assert [r.status for r in attempts[:4]] == [500, 500, 500, 500]
        assert len(attempts) == 4 + 5
        assert sum(int(r.headers["pixelpipe-attempt"]) > 1 for r in delivered) >= 1
        for r in attempts:
            assert verify(acme["secret"], r.headers["pixelpipe-signature"], r.body, now=time.time())
            assert not verify("whsec_wrong", r.headers["pixelpipe-signature"], r.body, now=time.time())
            assert r.headers["pixelpipe-event-id"] == r.json["id"]
            assert r.headers["content-type"] == "application/json"
        assert len({r.headers["pixelpipe-delivery-id"] for r in delivered}) == 5
        first = bodies[[b["id"] for b in bodies].index(counted[0].id)]
        assert first["type"] == "open"
        assert first["data"]["first"] is True
        assert first["data"]["recipient"] == "m1@example.com"
        assert first["data"]["country"] == "GB"
        click = next(b for b in bodies if b["type"] == "click")
        assert click["data"]["url"] == "https://shop.example.com/sale"
        assert click["data"]["link_index"] == 0
        # another account's webhook saw none of it
        assert rx.attempts("/globex") == []

        log, _ = wait_for(
            lambda: p.client.get(f"/v1/webhooks/{acme['id']}/deliveries", headers=ACME).json()["deliveries"],
            lambda rows: len(rows) == 9,
            timeout_s=30,
        )
        assert collections.Counter((row["status"], row["response_code"]) for row in log) == {
            ("delivered", 204): 5,
            ("retrying", 500): 4,
        }


def test_webhooks_are_registered_listed_and_deleted_per_account(
    env: dict[str, str], receiver: tuple[Receiver, str]
) -> None:
    rx, rx_base = receiver
    with pixelpipe(env) as p:
        c = p.client
        for bad in (
            {"url": "ftp://example.com/hook", "events": ["open"]},
            {"url": "/relative", "events": ["open"]},
            {"url": "https://user:pass@example.com/hook", "events": ["open"]},
            {"url": "https://example.com/hook", "events": []},
            {"url": "https://example.com/hook", "events": ["spam_report"]},
            {"url": "https://example.com/hook", "events": ["open"], "extra": 1},
        ):
            assert c.post("/v1/webhooks", json=bad, headers=ACME).status_code == 400, bad
        assert c.post("/v1/webhooks", json={"url": "https://e.com", "events": ["open"]}).status_code == 401
        assert c.get("/v1/webhooks").status_code == 401

        created = add_webhook(c, f"{rx_base}/acme", ["open", "open", "click"])
        assert set(created) == {"id", "url", "events", "secret", "secret_hint", "created_at"}
        assert created["events"] == ["open", "click"]
        assert created["secret_hint"] == "..." + created["secret"][-4:]
        listed = c.get("/v1/webhooks", headers=ACME).json()["webhooks"]
        assert listed == [{k: v for k, v in created.items() if k != "secret"}]
        assert c.get("/v1/webhooks", headers=GLOBEX).json() == {"webhooks": []}
        assert c.get(f"/v1/webhooks/{created['id']}", headers=ACME).json()["url"] == f"{rx_base}/acme"
        assert c.get(f"/v1/webhooks/{created['id']}", headers=GLOBEX).status_code == 404
        assert c.delete(f"/v1/webhooks/{created['id']}", headers=GLOBEX).status_code == 404

        assert c.delete(f"/v1/webhooks/{created['id']}", headers=ACME).status_code == 204
        assert c.get(f"/v1/webhooks/{created['id']}", headers=ACME).status_code == 404
        assert c.delete(f"/v1/webhooks/{created['id']}", headers=ACME).status_code == 404
        assert c.get("/v1/webhooks", headers=ACME).json() == {"webhooks": []}

        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the delete
        sent = register(c, "m-after-delete")
        hit(c, sent["pixel_url"])
        wait_for(lambda: len(p.counted), lambda n: n == 1, timeout_s=30)
        # The notice went past the dispatcher (it comes before `counted`) and made no delivery to send.
        assert p.deliveries() == []
        assert rx.received == []


def test_pending_deliveries_survive_a_restart(env: dict[str, str], receiver: tuple[Receiver, str]) -> None:
    rx, rx_base = receiver
    rx.down = True
    slow = RetryPolicy(first_delay_s=0.3, max_delay_s=0.3, max_attempts=100, jitter=0)
    with pixelpipe(env, policy=slow) as p:
        hook = add_webhook(p.client, f"{rx_base}/acme", ["open"])
        time.sleep(0.3)
        sent = register(p.client, "m-restart")
        hit(p.client, sent["pixel_url"])
        hit(p.client, sent["pixel_url"])
        wait_for(lambda: len(rx.attempts()), lambda n: n >= 1, timeout_s=30)
        notice_ids = [n.id for n in p.counted]
    assert len(notice_ids) == 2
    failed = len(rx.attempts())

    rx.down = False
    with pixelpipe(env, policy=slow) as again:
        wait_for(again.deliveries, lambda states: states == ["delivered"] * 2, timeout_s=30)
    delivered = rx.delivered()
    assert [r.json["id"] for r in delivered] == notice_ids  # in order, after the restart
    assert int(delivered[0].headers["pixelpipe-attempt"]) == failed + 1
    for r in delivered:
        assert verify(hook["secret"], r.headers["pixelpipe-signature"], r.body, now=time.time())


# -- the SSRF rule and secrets at rest -----------------------------------------------------------------------

REFUSED = "webhooks may only call public addresses"
HINT = " (for development, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true allows this one)"


def test_private_targets_are_refused_at_registration(env: dict[str, str]) -> None:
    with pixelpipe(env, allow_private=False) as p:
        for url in (
            "http://127.0.0.1/hook",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://10.0.0.1",
            "http://192.168.1.20:8080/hook",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://localhost:8000/hook",
            "http://0.0.0.0:8000/",
        ):
            r = p.client.post("/v1/webhooks", json={"url": url, "events": ["open"]}, headers=ACME)
            assert r.status_code == 400, (url, r.text)
            assert REFUSED in r.json()["detail"], (url, r.text)
        r = p.client.post(
            "/v1/webhooks", json={"url": "http://169.254.169.254/latest", "events": ["open"]}, headers=ACME
        )
        assert (
            r.json()["detail"]
            == f"url: 169.254.169.254 is a link-local (cloud metadata) address; {REFUSED}{HINT}"
        )
        assert p.client.get("/v1/webhooks", headers=ACME).json() == {"webhooks": []}
        # a public address is fine (no delivery is attempted: nothing is counted in this test)
        add_webhook(p.client, "https://93.184.215.14/hook", ["open"])


def test_a_private_target_stored_earlier_is_refused_at_delivery_with_the_reason(
    env: dict[str, str], receiver: tuple[Receiver, str], store: Store
) -> None:
    rx, rx_base = receiver
    with pixelpipe(env, allow_private=False) as p:
        # A row the API of this version would refuse: from an older version, or one that allowed it.
        now = datetime.now(UTC)
        store.insert(
            "webhooks",
            WEBHOOK_COLUMNS,
            [["acme", "wh_old", f"{rx_base}/acme", ["open"], "whsec_old-plain-secret", now, now, False]],
        )
        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the insert
        sent = register(p.client, "m-refused")
        hit(p.client, sent["pixel_url"])
        # Failed for good in the outbox: no retry can follow.
        wait_for(p.deliveries, lambda states: states == ["failed"], timeout_s=30)
        log, _ = wait_for(
            lambda: p.client.get("/v1/webhooks/wh_old/deliveries", headers=ACME).json()["deliveries"],
            lambda rows: len(rows) >= 1,
            timeout_s=30,
        )
    assert rx.received == []
    assert [(row["attempt"], row["status"], row["response_code"], row["error"]) for row in log] == [
        (1, "failed", 0, f"refused: 127.0.0.1 is a loopback address; {REFUSED}{HINT}")
    ]


async def test_the_dispatcher_connects_to_the_address_it_vetted_and_keeps_the_name(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    rx, rx_base = receiver
    port = int(rx_base.rpartition(":")[2])
    resolved: list[str] = []

    async def dns(host: str, _port: int) -> list[IPAddress]:  # hooks.test: the receiver on 127.0.0.1
        resolved.append(host)
        return [ipaddress.ip_address("127.0.0.1")] if host == "hooks.test" else []

    async def deliver(allow_private: bool, message: str) -> WebhookDispatcher:
        hook = Webhook(
            "acme", "wh_dns", f"http://hooks.test:{port}/acme", ("open",), Secret("whsec_dns-test")
        )
        d = WebhookDispatcher(
            outbox_path=tmp_path / f"outbox-{allow_private}.sqlite3",
            directory=WebhookDirectory(lambda: [hook], refresh_s=0),
            policy=RetryPolicy(first_delay_s=0.05, max_delay_s=0.05, max_attempts=5, jitter=0),
            allow_private=allow_private,
            resolver=dns,
        )
        await d.start()
        try:
            await d.accept([kafka_notice(message, 1)])
            await eventually(lambda: d.delivered + d.failed == 1, 5, "the delivery to finish")
        finally:
            await d.stop()
        return d

    refused = await deliver(False, "m-private")
    assert (refused.delivered, refused.failed) == (0, 1)
    assert rx.received == []
    allowed = await deliver(True, "m-allowed")
    assert (allowed.delivered, allowed.failed) == (1, 0)
    [got] = rx.delivered()
    assert got.headers["host"] == f"hooks.test:{port}"  # the name, though the connection went to 127.0.0.1
    assert got.json["id"] == "m-allowed-1"
    assert resolved == ["hooks.test", "hooks.test"]


def test_secrets_are_sealed_at_rest_and_plain_rows_from_before_still_deliver(
    env: dict[str, str], receiver: tuple[Receiver, str], store: Store
) -> None:
    rx, rx_base = receiver
    db = store.database
    with pixelpipe(env) as p:
        hook = add_webhook(p.client, f"{rx_base}/acme", ["open"])
        rows = store.query(f"SELECT * FROM {db}.webhooks")
        assert len(rows) == 1
        assert rows[0][WEBHOOK_COLUMNS.index("secret")].startswith("enc:v1:1:")
        assert hook["secret"] not in repr(rows)
        assert hook["secret"].removeprefix("whsec_") not in repr(rows)

        # A row written before secrets were sealed holds the plain secret: it is read as it is.
        legacy = "whsec_written-before-sealing-0123456789"
        now = datetime.now(UTC)
        store.insert(
            "webhooks",
            WEBHOOK_COLUMNS,
            [["acme", "wh_legacy", f"{rx_base}/legacy", ["open"], legacy, now, now, False]],
        )
        listed = {w["id"]: w for w in p.client.get("/v1/webhooks", headers=ACME).json()["webhooks"]}
        assert listed["wh_legacy"]["secret_hint"] == "..." + legacy[-4:]
        assert listed[hook["id"]]["secret_hint"] == hook["secret_hint"]
        assert all("secret" not in w for w in listed.values())

        time.sleep(0.3)  # at least the directory's refresh (0.1 s) after the insert
        sent = register(p.client, "m-sealed")
        hit(p.client, sent["pixel_url"])
        wait_for(
            lambda: (len(rx.delivered("/acme")), len(rx.delivered("/legacy"))),
            lambda n: n == (1, 1),
            timeout_s=30,
        )
        [new], [old] = rx.delivered("/acme"), rx.delivered("/legacy")
        assert verify(hook["secret"], new.headers["pixelpipe-signature"], new.body, now=time.time())
        assert verify(legacy, old.headers["pixelpipe-signature"], old.body, now=time.time())

        assert p.client.delete(f"/v1/webhooks/{hook['id']}", headers=ACME).status_code == 204
        kept = store.query(
            f"SELECT secret, deleted FROM {db}.webhooks FINAL WHERE webhook_id = {{id:String}}",
            {"id": hook["id"]},
        )
        assert kept == [("", True)]  # a deleted webhook keeps no secret


# -- Kafka: the enriched topic and the notify group ----------------------------------------------------------


def kafka_notice(message: str, seq: int) -> Notice:
    return open_notice(message, seq, created_at_ms=1_700_000_000_000 + seq, first=seq == 1)


async def eventually(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def positions(notices: NoticeConsumer, timeout_s: float = 30) -> dict[TopicPartition, int]:
    """Once ``notices`` owns every partition of the enriched topic: where it reads next in each (a tail: the
    end it started at; a group member: the group's committed offset). Asking resolves the position, as the
    first fetch would."""
    consumer = notices._consumer
    topic = notices.topics.enriched
    deadline = time.monotonic() + timeout_s
    while not (
        (partitions := consumer.partitions_for_topic(topic))
        and {tp.partition for tp in consumer.assignment()} == partitions
    ):
        assert time.monotonic() < deadline, f"no assignment of {topic} within {timeout_s} s"
        await asyncio.sleep(0.05)
    return {tp: await consumer.position(tp) for tp in consumer.assignment()}


@pytest.mark.kafka
async def test_kafka_notices_reach_webhooks_through_their_own_group(
    kafka_bootstrap: str,
    kafka_topics: Topics,
    kafka_group: str,
    receiver: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    rx, rx_base = receiver
    rx.fail_first = 3
    hook = Webhook("acme", "wh_kafka", f"{rx_base}/acme", ("open",), Secret("whsec_kafka-test"))
    sent = [kafka_notice(f"m{m}", seq) for seq in (1, 2, 3) for m in range(4)]

    producer = NoticeProducer(KafkaConfig(kafka_bootstrap, partitions=3), kafka_topics)
    await producer.start()

    def dispatcher() -> WebhookDispatcher:
        return WebhookDispatcher(
            outbox_path=tmp_path / "outbox.sqlite3",
            directory=WebhookDirectory(lambda: [hook], refresh_s=0),
            policy=RetryPolicy(first_delay_s=0.1, max_delay_s=0.2, max_attempts=50, jitter=0),
            allow_private=True,  # the receiver is on 127.0.0.1
        )

    first = dispatcher()
    live = LiveFeed()
    notify = NoticeConsumer(KafkaConfig(kafka_bootstrap), kafka_topics, first.accept, group_id=kafka_group)
    tail = NoticeConsumer(KafkaConfig(kafka_bootstrap), kafka_topics, live.accept, group_id=None)
    await first.start()
    await notify.start()
    await tail.start()
    try:
        await positions(tail)  # the tail starts at the end: where the end is must be known before we send
        await producer.send(sent)
        await eventually(lambda: len(rx.delivered()) == len(sent), 30, "every notice delivered")
        await eventually(lambda: tail.consumed == len(sent), 10, "the live tail")
    finally:
        await tail.stop()
        await notify.stop()
        await first.stop()

    bodies = [r.json for r in rx.delivered()]
    assert sorted(b["id"] for b in bodies) == sorted(n.id for n in sent)
    for m in range(4):
        assert [b["id"] for b in bodies if b["data"]["message_id"] == f"m{m}"] == [
            f"m{m}-1",
            f"m{m}-2",
            f"m{m}-3",
        ]
    for r in rx.attempts():
        assert verify(hook.secret.reveal(), r.headers["pixelpipe-signature"], r.body, now=time.time())
    assert len(rx.attempts()) == len(sent) + 3

    # The group committed what reached the outbox: a restarted member reads nothing again.
    second = dispatcher()
    again = NoticeConsumer(KafkaConfig(kafka_bootstrap), kafka_topics, second.accept, group_id=kafka_group)
    await second.start()
    await again.start()
    try:
        at = await positions(again)
        ends = await again._consumer.end_offsets(list(at))
        assert at == ends  # it starts where the group committed: at the end of every partition
        assert again.consumed == 0
    finally:
        await again.stop()
        await second.stop()
        await producer.stop()
    assert len(rx.attempts()) == len(sent) + 3
