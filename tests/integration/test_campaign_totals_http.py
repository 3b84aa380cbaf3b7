"""A campaign's totals are the sum over its messages, also when a message's send is gone (the retention drops
a send by its ``sent_at``, its opens later, by when they came) or was never stored: such a message counts as
sent, and `GET /v1/messages/{id}` answers for it from its hits. The orphan is made as the retention would
leave it: a pixel signed for a message whose send is not in the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.registry import register
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import embedded_env, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[httpx.Client]:
    env = embedded_env(
        tmp_path_factory.mktemp("data"), chdb_path, PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8,::1/128"
    )
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10, headers=ACME) as client:
        pixels = {}
        for message_id in ("m1", "m2"):
            body = {
                "campaign_id": "totals",
                "recipient": f"{message_id}@example.org",
                "message_id": message_id,
            }
            r = client.post("/v1/messages", json=body)
            assert r.status_code == 201, r.text
            pixels[message_id] = r.json()["pixel_url"]
        # The ghost's pixel, signed as a registration would sign it, without its send in the store.
        ghost = register(
            keyring=settings.keyring,
            public_url=settings.public_url,
            account="acme",
            campaign_id="totals",
            message_id="ghost",
            recipient="ghost@example.org",
            sent_at=datetime.now(UTC) - timedelta(days=30),
            links=[],
            now=datetime.now(UTC),
        )
        opens = [
            (pixels["m1"], "81.2.69.160"),
            (pixels["m1"], "81.2.69.161"),
            (ghost.pixel_url, "89.160.20.128"),
        ]
        for url, ip in opens:
            assert hit(client, url, ua=OUTLOOK, ip=ip).status_code == 200
        wait_for(lambda: client.get("/v1/campaigns/totals/stats").json(), lambda s: s.get("opens") == 3, 10.0)
        yield client
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def _json(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_message_with_opens_but_no_send_counts_as_sent(served: httpx.Client) -> None:
    for path in ("/v1/campaigns/totals/stats", "/v1/campaigns/totals/summary"):
        stats = _json(served, path)
        assert (stats["sent"], stats["opens"], stats["unique_opens"]) == (3, 3, 2), path
        assert stats["open_rate"] == 0.6667
    [listed] = [c for c in _json(served, "/v1/campaigns")["items"] if c["campaign_id"] == "totals"]
    assert (listed["sent"], listed["opens"]) == (3, 3)


def test_the_campaign_totals_are_the_sum_over_its_messages(served: httpx.Client) -> None:
    messages = {m: _json(served, f"/v1/messages/{m}") for m in ("m1", "m2", "ghost")}
    assert {m: v["opens"] for m, v in messages.items()} == {"m1": 2, "m2": 0, "ghost": 1}
    assert messages["ghost"]["campaign_id"] == "totals"
    assert messages["ghost"]["recipient"] is None  # not kept: the send is gone
    stats = _json(served, "/v1/campaigns/totals/stats")
    assert stats["sent"] == len(messages)
    assert stats["opens"] == sum(v["opens"] for v in messages.values())
    assert stats["unique_opens"] == sum(1 for v in messages.values() if v["opens"])
