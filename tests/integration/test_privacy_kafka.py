"""Privacy changes reach every process through the privacy topic, against a real Kafka broker.

An edge without a store (`pixelpipe edge`, a real process) learns do-not-track from the topic only: it keeps
answering the opted-out recipient's pixels and links but publishes nothing for them, a fresh edge reads the
compacted topic from its beginning, and opting in again records again. An erasure through an API process
reaches the webhook dispatcher of another (processor) process, which drops the recipient's pending delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.edge import PIXEL_GIF
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.events import decode_hit, split_hits
from schemas.topics import Topics
from tests.integration.helpers import hit, outbox_rows, path_of, wait_for
from tests.roles import Role, role_env
from tests.serving import serving

pytestmark = pytest.mark.kafka

ACME = {"Authorization": "Bearer acme-key-123"}
SECRET = "fault-secret-0123456789abcdef"  # the roles' (tests.roles.role_env): edge and API sign alike
RAW_PARTITIONS = 6


def raw_messages(bootstrap: str, topics: Topics) -> list[str]:
    """The message id of every record on the raw topic, read from its beginning to its end."""

    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topics.raw_hits, p) for p in range(RAW_PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            messages: list[str] = []
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    messages.extend(
                        decode_hit(raw).message_id for r in records for raw in split_hits(r.value or b"")
                    )
            return sorted(messages)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def privacy_state(role: Role) -> dict[str, Any]:
    return dict(httpx.get(f"{role.base}/readyz", timeout=5).json()["privacy"])


@contextlib.contextmanager
def app(env: dict[str, str], roles: set[str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset(roles))
    asgi, _ = build_app(components)
    with serving(asgi) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def register(client: httpx.Client, recipient: str) -> dict[str, Any]:
    body = {"campaign_id": "c", "recipient": recipient, "links": ["https://example.com/x"]}
    r = client.post("/v1/messages", json=body, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def kafka_env(env: dict[str, str], bootstrap: str, prefix: str, **more: str) -> dict[str, str]:
    return {
        **env,
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123",
        "PIXELPIPE_KAFKA_BOOTSTRAP": bootstrap,
        "PIXELPIPE_TOPIC_PREFIX": prefix,
        "PIXELPIPE_CONSUMER_GROUP": f"{prefix}-processors",
        **more,
    }


def test_do_not_track_reaches_an_edge_without_a_store(
    tmp_path: Path, env: dict[str, str], kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics.with_prefix(prefix)
    common = {"PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "PIXELPIPE_TOPIC_PREFIX": prefix}
    edge = Role(
        ["edge"], role_env(**common, PIXELPIPE_DATA_DIR=str(tmp_path / "edge")), tmp_path / "edge.log"
    )
    fresh = Role(["edge"], role_env(**common, PIXELPIPE_DATA_DIR=str(tmp_path / "e2")), tmp_path / "e2.log")
    try:
        edge.start()
        edge.wait_ready()  # ready: the privacy topic was read to its end (it is empty)
        assert privacy_state(edge) == {
            "topic": topics.privacy, "caught_up": True, "records": 0, "suppressed": 0,
        }  # fmt: skip
        with (
            app(kafka_env(env, kafka_bootstrap, prefix, PIXELPIPE_PUBLIC_URL=edge.base), {"api"}) as (api, _),
            httpx.Client(base_url=edge.base, timeout=10) as at_edge,
        ):
            ann, bob = register(api, "ann@example.com"), register(api, "bob@example.com")
            ann_click = ann["links"]["https://example.com/x"]
            assert hit(at_edge, ann["pixel_url"]).status_code == 200
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == [ann["message_id"]], 30)

            r = api.put("/v1/recipients/ann@example.com/do-not-track", headers=ACME)
            assert r.json() == {"recipient": "ann@example.com", "tracking": False}
            _, took = wait_for(lambda: privacy_state(edge)["suppressed"], lambda n: n == 1, timeout_s=30)
            print(f"\ndo-not-track reached the edge {took * 1000:.0f} ms after the API answered")
            pixel = hit(at_edge, ann["pixel_url"])
            assert (pixel.status_code, pixel.content) == (200, PIXEL_GIF)
            click = at_edge.get(path_of(ann_click))
            assert (click.status_code, click.headers["location"]) == (302, "https://example.com/x")
            assert hit(at_edge, bob["pixel_url"]).status_code == 200  # bob is tracked as before
            expected = sorted([ann["message_id"], bob["message_id"]])
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == expected, 30)
            assert raw_messages(kafka_bootstrap, topics) == expected  # ann's pixel and click: nothing

            # a new edge reads the compacted topic from its beginning before it is ready
            fresh.start()
            fresh.wait_ready()
            assert privacy_state(fresh) == {
                "topic": topics.privacy, "caught_up": True, "records": 1, "suppressed": 1,
            }  # fmt: skip
            with httpx.Client(base_url=fresh.base, timeout=10) as at_fresh:
                assert hit(at_fresh, ann["pixel_url"]).status_code == 200
                assert hit(at_fresh, bob["pixel_url"]).status_code == 200
            expected = sorted([ann["message_id"], bob["message_id"], bob["message_id"]])
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == expected, 30)

            r = api.delete("/v1/recipients/ann@example.com/do-not-track", headers=ACME)
            assert r.json() == {"recipient": "ann@example.com", "tracking": True}
            wait_for(lambda: privacy_state(edge)["suppressed"], lambda n: n == 0, timeout_s=30)
            assert hit(at_edge, ann["pixel_url"]).status_code == 200
            expected = sorted([ann["message_id"], ann["message_id"], bob["message_id"], bob["message_id"]])
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == expected, 30)
            assert privacy_state(edge)["records"] == 2
    finally:
        edge.stop()
        fresh.stop()


def test_an_erasure_on_one_api_purges_the_outbox_of_another_process(
    tmp_path: Path, env: dict[str, str], kafka_bootstrap: str, failing_receiver: tuple[list[bytes], str]
) -> None:
    bodies, url = failing_receiver
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = kafka_env(env, kafka_bootstrap, prefix, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE="true")
    processor_env = {**base, "PIXELPIPE_DATA_DIR": str(tmp_path / "processor")}
    outbox = tmp_path / "processor" / "webhooks" / "outbox.sqlite3"
    with (
        app(processor_env, {"edge", "process"}) as (at_edge, processor),
        app({**base, "PIXELPIPE_DATA_DIR": str(tmp_path / "api")}, {"api"}) as (api, api_components),
    ):
        r = api.post("/v1/webhooks", json={"url": url, "events": ["open"]}, headers=ACME)
        assert r.status_code == 201, r.text
        ann, bob = register(api, "ann@example.com"), register(api, "bob@example.com")
        wait_for(lambda: at_edge.get("/readyz").status_code, lambda code: code == 200, timeout_s=30)
        time.sleep(1.2)  # the dispatcher's directory of webhooks reloads every second
        hit(at_edge, ann["pixel_url"])
        hit(at_edge, bob["pixel_url"])
        wait_for(lambda: outbox_rows(outbox), lambda rows: len(rows) == 2, timeout_s=20)
        wait_for(lambda: len(bodies), lambda n: n >= 2, timeout_s=10)  # both were tried, and failed

        live = api_components.notifications.live if api_components.notifications else None
        assert live is not None
        wait_for(lambda: live.held("acme"), lambda n: n == 2, timeout_s=10)  # the API's live feed has both

        store = api_components.store
        assert store is not None
        logged = f"SELECT DISTINCT message_id FROM {store.database}.webhook_deliveries ORDER BY message_id"
        both = sorted([(ann["message_id"],), (bob["message_id"],)])
        wait_for(lambda: store.query(logged), lambda rows: rows == both, timeout_s=10)  # attempts logged

        r = api.delete("/v1/recipients/ann@example.com", headers=ACME)
        assert r.status_code == 200, r.text
        # the API process runs no dispatcher: it purges its own live feed and says where the erasure went.
        # Ann's one notice leaves its ring either by this call or, first, by the process's own reading of
        # the privacy topic (the erasure is published before anything is deleted): 1 or 0 here, never both.
        answer = r.json()
        assert answer["erased"].pop("live_notices") in (0, 1)
        assert live.held("acme") == 1  # bob's
        # her attempts the dispatcher had logged by then (it retries a failing receiver): how many is timing
        attempts_erased = answer["erased"].pop("webhook_attempts")
        assert answer["erased"].pop("link_labels") == 0
        assert answer.pop("on_disk_by").endswith("Z")  # its bound: test_privacy_http
        assert answer == {
            "recipient": "ann@example.com",
            "erased": {"messages": 1, "events": 1, "filtered_hits": 0},
            "tracking": False,
            "propagated_via": Topics.with_prefix(prefix).privacy,
        }
        wait_for(lambda: outbox_rows(outbox), lambda rows: len(rows) == 1, timeout_s=30)
        assert outbox_rows(outbox) == [(bob["message_id"], "pending", "bob@example.com")]
        # and none of her attempts are in the log, nor come back with the dispatcher's next flush
        wait_for(lambda: store.query(logged), lambda rows: rows == [(bob["message_id"],)], timeout_s=10)
        time.sleep(1.5)  # past the dispatcher's next attempt-log flush (every second)
        assert store.query(logged) == [(bob["message_id"],)]
        assert attempts_erased >= 1  # at least the one logged before the erasure
        assert processor.privacy is not None
        assert processor.privacy.state() == {
            "topic": Topics.with_prefix(prefix).privacy, "caught_up": True, "records": 1, "suppressed": 1,
        }  # fmt: skip
