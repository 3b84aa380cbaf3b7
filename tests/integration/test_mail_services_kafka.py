"""Mail-service accounts reach store-less edges through the compacted mail-services topic, against a real
Kafka broker: an API registers, an edge of its own (no store, nothing shared but the broker) finds the config
by its ingest id with the keys unsealed, the keys are on the topic only sealed, a rotation and a deletion
reach the edge, and a restarted edge reads every config back from the topic before it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deliveries.directory import MailServices
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.topics import Topics
from tests.integration.helpers import wait_for
from tests.serving import serving

pytestmark = pytest.mark.kafka

ACME = {"Authorization": "Bearer acme-key-123"}
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"


@contextlib.contextmanager
def running(env: dict[str, str], roles: set[str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset(roles))
    asgi, _ = build_app(components)
    with serving(asgi) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def directory(components: Components) -> MailServices:
    assert isinstance(components.mail_services, MailServices)
    return components.mail_services


def ready(edge: httpx.Client) -> dict[str, Any]:
    r = edge.get("/readyz")
    assert r.status_code == 200, r.text
    return dict(r.json())


def topic_bytes(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every record's key and value on the (one-partition) topic, from its beginning to its end."""

    async def read() -> list[tuple[bytes, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            records: list[tuple[bytes, bytes]] = []
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend((r.key or b"", r.value or b"") for r in batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


def ingest_id(answer: dict[str, Any]) -> str:
    return urlsplit(answer["ingest_url"]).path.rsplit("/", 1)[1]


def test_accounts_reach_an_edge_without_a_store_sealed_and_come_back_after_a_restart(
    env: dict[str, str], kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topic = Topics.with_prefix(prefix).mail_services
    kafka = {"PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "PIXELPIPE_TOPIC_PREFIX": prefix}
    api_env = {**env, **kafka, "PIXELPIPE_PUBLIC_URL": "https://t.example.com"}
    edge_env = {
        k: v for k, v in {**env, **kafka}.items() if k != "PIXELPIPE_CLICKHOUSE_URL"
    }  # an edge opens no store
    edge_env["PIXELPIPE_DATA_DIR"] = env["PIXELPIPE_DATA_DIR"] + "-edge"
    with running(edge_env, {"edge"}) as (edge, edge_parts):
        assert edge_parts.store is None
        wait_for(lambda: edge.get("/readyz").status_code, lambda s: s == 200, timeout_s=60)
        assert ready(edge)["mail_services"] == {
            "topic": topic, "caught_up": True, "records": 0, "mail_services": 0,
        }  # fmt: skip
        with running(api_env, {"api"}) as (api, api_parts):
            assert api_parts.mail_services is None  # no edge in the API's process
            generic = api.put("/v1/mail-services/generic", json={}, headers=ACME)
            assert generic.status_code == 201, generic.text
            secret = generic.json()["secret"]
            mailgun = api.put(
                "/v1/mail-services/mailgun", json={"credentials": {"signing_key": MAILGUN_KEY}}, headers=ACME
            )
            assert mailgun.status_code == 201, mailgun.text
            postmark = api.put("/v1/mail-services/postmark", json={}, headers=ACME).json()
            password = urlsplit(postmark["ingest_url"]).password
            assert password is not None

            answers = {"generic": generic.json(), "mailgun": mailgun.json(), "postmark": postmark}
            ids = {name: ingest_id(answer) for name, answer in answers.items()}
            _, took = wait_for(lambda: len(directory(edge_parts)), lambda n: n == 3, timeout_s=10)
            print(f"\nthree registrations reached the edge {took * 1000:.0f} ms after the last answer")
            found = directory(edge_parts).find(ids["generic"])
            assert found is not None
            assert (found.account, found.provider, found.credentials["secret"].reveal()) == (
                "acme", "generic", secret,
            )  # fmt: skip
            mailgun_found = directory(edge_parts).find(ids["mailgun"])
            assert mailgun_found is not None
            assert mailgun_found.credentials["signing_key"].reveal() == MAILGUN_KEY

            # Only sealed on the topic: keyed by account and provider, the keys never in clear.
            records = topic_bytes(kafka_bootstrap, topic)
            assert [key for key, _ in records] == [
                b"acme\x1fgeneric",
                b"acme\x1fmailgun",
                b"acme\x1fpostmark",
            ]
            on_topic = b"".join(value for _, value in records)
            for key in (secret, MAILGUN_KEY, password, secret.removeprefix("ppin_")):
                assert key.encode() not in on_topic
            assert on_topic.count(b'"credentials":"enc:v1:') == 3

            # A rotation: the new URL works at the edge, the old one does not.
            rotated = api.post("/v1/mail-services/postmark/rotate", headers=ACME)
            assert rotated.status_code == 200, rotated.text
            new_id = ingest_id(rotated.json())
            wait_for(lambda: directory(edge_parts).find(new_id), lambda s: s is not None, timeout_s=10)
            assert directory(edge_parts).find(ids["postmark"]) is None

            # A deletion: the URL stops working at the edge within a second.
            answered = time.monotonic()
            assert api.delete("/v1/mail-services/mailgun", headers=ACME).status_code == 204
            wait_for(lambda: directory(edge_parts).find(ids["mailgun"]), lambda s: s is None, timeout_s=10)
            took = time.monotonic() - answered
            print(f"a deletion reached the edge {took * 1000:.0f} ms after the API answered")
            assert took < 1.5  # the feed polls every 500 ms
            assert ready(edge)["mail_services"]["records"] == 5

    # A restarted edge reads the compacted topic from its beginning before it is ready.
    with running(edge_env, {"edge"}) as (edge, edge_parts):
        wait_for(lambda: edge.get("/readyz").status_code, lambda s: s == 200, timeout_s=60)
        assert ready(edge)["mail_services"] == {
            "topic": topic, "caught_up": True, "records": 5, "mail_services": 2,
        }  # fmt: skip
        again = directory(edge_parts)
        assert again.find(ids["mailgun"]) is None
        assert again.find(ids["postmark"]) is None
        assert again.find(new_id) is not None
        restored = again.find(ids["generic"])
        assert restored is not None
        assert restored.credentials["secret"].reveal() == secret
