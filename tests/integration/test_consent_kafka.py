"""Consent across processes, against a real Kafka broker: a refusal made through an API process reaches an
edge without a store (a real `pixelpipe edge` process) through the privacy topic, as do-not-track does, and a
grant lifts it; account settings changed through one API process hold at another."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from schemas.topics import Topics
from tests.integration.helpers import hit, wait_for
from tests.integration.test_privacy_kafka import ACME, app, kafka_env, privacy_state, raw_messages, register
from tests.roles import Role, role_env

pytestmark = pytest.mark.kafka


def test_a_refusal_reaches_an_edge_without_a_store(
    tmp_path: Path, env: dict[str, str], kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = Topics.with_prefix(prefix)
    common = {"PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "PIXELPIPE_TOPIC_PREFIX": prefix}
    edge = Role(
        ["edge"], role_env(**common, PIXELPIPE_DATA_DIR=str(tmp_path / "edge")), tmp_path / "edge.log"
    )
    try:
        edge.start()
        edge.wait_ready()
        with (
            app(kafka_env(env, kafka_bootstrap, prefix, PIXELPIPE_PUBLIC_URL=edge.base), {"api"}) as (api, _),
            httpx.Client(base_url=edge.base, timeout=10) as at_edge,
        ):
            assert (
                api.put("/v1/account/settings", json={"consent_mode": "opt_out"}, headers=ACME).status_code
                == 200
            )
            ann, bob = register(api, "ann@example.com"), register(api, "bob@example.com")
            r = api.put("/v1/recipients/ann@example.com/consent", json={"state": "refused"}, headers=ACME)
            assert (r.status_code, r.json()["refusal_enforced"]) == (200, True)
            _, took = wait_for(lambda: privacy_state(edge)["suppressed"], lambda n: n == 1, timeout_s=30)
            print(f"\nthe refusal reached the edge {took * 1000:.0f} ms after the API answered")
            assert hit(at_edge, ann["pixel_url"]).status_code == 200  # answered, not published
            assert hit(at_edge, bob["pixel_url"]).status_code == 200
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == [bob["message_id"]], 30)

            r = api.put("/v1/recipients/ann@example.com/consent", json={"state": "granted"}, headers=ACME)
            assert r.json()["refusal_enforced"] is False
            wait_for(lambda: privacy_state(edge)["suppressed"], lambda n: n == 0, timeout_s=30)
            hit(at_edge, ann["pixel_url"])
            expected = sorted([ann["message_id"], bob["message_id"]])
            wait_for(lambda: raw_messages(kafka_bootstrap, topics), lambda m: m == expected, 30)
    finally:
        edge.stop()


def test_settings_changed_at_one_api_hold_at_another(env: dict[str, str], kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    shared = kafka_env(env, kafka_bootstrap, prefix)
    with app(shared, {"api"}) as (one, _), app(shared, {"api"}) as (two, _):
        assert register(two, "ann@example.com")["tracking"] == "individual"  # `two` has read the defaults
        r = one.put("/v1/account/settings", json={"consent_mode": "opt_in"}, headers=ACME)
        assert r.status_code == 200
        # within api.account_settings.SETTINGS_TTL_S (a second); waited for generously
        wait_for(lambda: register(two, "bob@example.com")["tracking"], lambda t: t == "aggregate", 30)
