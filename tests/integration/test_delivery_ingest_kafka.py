"""The delivery ingest on a store-less edge on Kafka, over real HTTP: a signed request's events are on the
deliveries topic (acknowledged by the broker) before the answer; a refused one puts nothing there."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from deliveries.port import MailService
from ingest.http_protocol import EdgeHttpProtocol, bounded
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.delivery_events import decode_deliveries
from schemas.secret import Secret
from schemas.topics import Topics
from tests import mail_services as ms
from tests.conftest import SECRET
from tests.integration.helpers import read_topic
from tests.serving import serving

pytestmark = pytest.mark.kafka

GENERIC_SECRET = "generic-secret-kafka-0123456789"
ACCOUNT = MailService("acme", "generic", "gen-kafka-0123456789", {"secret": Secret(GENERIC_SECRET)})


class OneAccount:
    """The edge's directory, holding ``ACCOUNT``."""

    def find(self, ingest_id: str) -> MailService | None:
        return ACCOUNT if ingest_id == ACCOUNT.ingest_id else None


def test_a_2xx_means_the_events_are_on_the_topic(tmp_path: Path, kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123",
        "PIXELPIPE_DATA_DIR": str(tmp_path),
        "PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PIXELPIPE_TOPIC_PREFIX": prefix,
    }
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"edge"}))
    assert components.store is None
    components.mail_services = OneAccount()
    app, _ = build_app(components)
    events = [ms.generic_event(f"kafka-{i}", "delivered", message_id=f"m{i}") for i in range(3)]
    body = orjson.dumps({"events": events})
    path = f"/in/generic/{ACCOUNT.ingest_id}"
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)
    with serving(app, http=protocol) as base, httpx.Client(base_url=base, timeout=30) as client:
        now = int(time.time())
        forged = {"content-type": "application/json", **ms.sign_generic("not-the-secret", body, now)}
        assert client.post(path, content=body, headers=forged).status_code == 403
        signed = {"content-type": "application/json", **ms.sign_generic(GENERIC_SECRET, body, now)}
        r = client.post(path, content=body, headers=signed)
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 3}
        # Acknowledged before the answer: on the topic now, and nothing of the forged request.
        records = asyncio.run(read_topic(kafka_bootstrap, Topics.with_prefix(prefix).deliveries, 3, 5))
    published = [e for record in records for e in decode_deliveries(record.value)]
    assert sorted(e.provider_event_id for e in published) == ["kafka-0", "kafka-1", "kafka-2"]
    assert {(e.account, e.provider, e.event) for e in published} == {("acme", "generic", "delivered")}
