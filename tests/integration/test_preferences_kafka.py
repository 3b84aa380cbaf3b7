"""Issue 19 across processes, against a real Kafka broker: an edge without a store (`pixelpipe edge`, a real
process, the native fast path on when it is built) redirects the preferences page to the API, a refusal made
there reaches the edge through the privacy topic, and the edge's campaign pixel is counted by the processor
(the native path declines kind 4; the Python path publishes the aggregate open)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.preferences import preferences_url
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.tokens import RECIPIENT_TAG_BYTES, Claim, TokenKind, recipient_tag, sign
from tests.integration.helpers import hit, path_of, wait_for
from tests.roles import Role, role_env
from tests.serving import serving

pytestmark = pytest.mark.kafka

ACME = {"Authorization": "Bearer acme-key-123"}
SECRET = "fault-secret-0123456789abcdef"  # the roles' (tests.roles.role_env): edge and API sign alike


@contextlib.contextmanager
def app(env: dict[str, str], roles: set[str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset(roles))
    asgi, _ = build_app(components)
    with serving(asgi) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def opens(api: httpx.Client, message_id: str) -> int:
    return int(api.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"])


def edge_hits(role: Role, kind: str, token: str) -> int:
    """The edge's ``pixelpipe_edge_hits_total`` for (kind, token)."""
    text = httpx.get(f"{role.base}/metrics", timeout=5).text
    found = re.search(rf'pixelpipe_edge_hits_total{{kind="{kind}",token="{token}"}} ([0-9.e+]+)', text)
    return int(float(found.group(1))) if found else 0


def privacy_state(role: Role) -> dict[str, Any]:
    return dict(httpx.get(f"{role.base}/readyz", timeout=5).json()["privacy"])


def test_the_page_through_an_edge_and_the_campaign_pixel_on_kafka(
    tmp_path: Path, env: dict[str, str], kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    common = {"PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "PIXELPIPE_TOPIC_PREFIX": prefix}
    core_env = {
        **env,
        **common,
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123",
        "PIXELPIPE_CONSUMER_GROUP": f"{prefix}-processors",
    }
    with app(core_env, {"process", "api"}) as (api, components):
        edge = Role(
            ["edge"],
            role_env(
                **common,
                PIXELPIPE_DATA_DIR=str(tmp_path / "edge"),
                PIXELPIPE_API_PUBLIC_URL=str(api.base_url),
            ),
            tmp_path / "edge.log",
        )
        try:
            edge.start()
            edge.wait_ready()
            r = api.post(
                "/v1/messages", json={"campaign_id": "c", "recipient": "ann@example.com"}, headers=ACME
            )
            sent = r.json()
            keyring = components.settings.keyring
            tag = recipient_tag(keyring.signing_key[1], "acme", "ann@example.com")
            page = preferences_url(keyring, edge.base, "acme", "c", sent["message_id"], tag)
            with httpx.Client(base_url=edge.base, timeout=10) as at_edge:
                moved = at_edge.get(path_of(page))
                assert (moved.status_code, moved.headers["location"]) == (
                    307,
                    f"{str(api.base_url).rstrip('/')}{path_of(page)}",
                )
                shown = httpx.get(page, follow_redirects=True, timeout=10)
                assert shown.status_code == 200
                assert str(shown.url).startswith(str(api.base_url).rstrip("/"))
                nonce = re.search(r'name="nonce" value="([^"]+)"', shown.text)
                assert nonce is not None
                hit(at_edge, sent["pixel_url"])
                wait_for(lambda: opens(api, sent["message_id"]), lambda n: n == 1, 60)

                chose = httpx.post(
                    str(shown.url), data={"choice": "refuse", "nonce": nonce.group(1)}, timeout=10
                )
                assert chose.status_code == 200
                _, took = wait_for(lambda: privacy_state(edge)["suppressed"], lambda n: n == 1, timeout_s=30)
                print(f"\nthe refusal reached the edge {took * 1000:.0f} ms after the page answered")
                hit(at_edge, sent["pixel_url"])  # answered, not published: counted as do-not-track
                assert edge_hits(edge, "open", "do_not_track") == 1

                claim = Claim(
                    TokenKind.AGGREGATE_OPEN, "acme", "c", "", 0, recipient_tag=bytes(RECIPIENT_TAG_BYTES)
                )
                pixel = f"/o/{sign(claim, keyring)}.gif"
                for _ in range(3):
                    r = hit(at_edge, pixel)
                    assert (r.status_code, r.headers["content-type"]) == (200, "image/gif")
                stats, _ = wait_for(
                    lambda: api.get("/v1/campaigns/c/stats", headers=ACME).json(),
                    lambda s: s.get("aggregate_opens") == 3,
                    60,
                )
                assert stats["opens"] == 1
                assert edge_hits(edge, "aggregate_open", "ok") == 3
        finally:
            edge.stop()
