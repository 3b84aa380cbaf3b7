"""The whole pipeline in one process, over real HTTP, on the embedded ClickHouse (chDB)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import BROWSER, hit, path_of, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[httpx.Client]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as c:
        yield c


def register(client: httpx.Client, headers: dict[str, str] = ACME, **body: Any) -> dict[str, Any]:
    payload = {"campaign_id": "spring", "recipient": "ann@example.com", "links": [], **body}
    r = client.post("/v1/messages", json=payload, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def message(client: httpx.Client, message_id: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
    r = client.get(f"/v1/messages/{message_id}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_opens_and_clicks_are_counted_by_the_rules(client: httpx.Client) -> None:
    sent = register(client, links=["https://shop.example.com/sale?utm_source=mail&x=1"])
    tracked = sent["links"]["https://shop.example.com/sale?utm_source=mail&x=1"]

    for _ in range(3):
        r = hit(client, sent["pixel_url"])
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
        assert len(r.content) == 43
    assert hit(client, sent["pixel_url"], ua="curl/8.4.0").status_code == 200
    r = hit(client, tracked)
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example.com/sale?utm_source=mail&x=1"

    # The click is the last hit and is held longest (the burst window): once it counts, so do the opens.
    stats, _ = wait_for(lambda: message(client, sent["message_id"]), lambda m: m["clicks"] == 1, timeout_s=30)
    assert stats["opens"] == 3
    assert stats["machine_opens"] == 0
    assert stats["clicks"] == 1
    assert stats["bot_clicks"] == 0
    assert stats["filtered"] == {"ua:http_library": 1}
    assert stats["first_open_at"] is not None
    assert stats["first_open_at"] <= stats["last_open_at"]

    r = client.get("/v1/campaigns/spring/stats", headers=ACME)
    assert r.status_code == 200
    campaign = r.json()
    assert campaign["sent"] == 1
    assert campaign["opens"] == 3
    assert campaign["unique_opens"] == 1
    assert campaign["open_rate"] == 1.0
    assert campaign["clicks"] == 1
    assert campaign["unique_clicks"] == 1
    assert campaign["click_rate"] == 1.0


def test_an_open_becomes_visible(client: httpx.Client) -> None:
    """Exactly one open, and nothing else, shows up. How fast (the README's 1 s) is bench.end_to_end's
    hit -> visible latency, not a test's."""
    sent = register(client)
    hit(client, sent["pixel_url"])
    stats, _ = wait_for(lambda: message(client, sent["message_id"]), lambda m: m["opens"] == 1, timeout_s=30)
    assert (stats["opens"], stats["machine_opens"], stats["clicks"], stats["filtered"]) == (1, 0, 0, {})


def test_every_flipped_byte_is_never_counted_and_never_redirects(client: httpx.Client) -> None:
    sent = register(client, links=["https://example.com/a"])
    pixel = path_of(sent["pixel_url"]).removeprefix("/o/").removesuffix(".gif")
    click = path_of(sent["links"]["https://example.com/a"]).removeprefix("/c/")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(pixel)):
        forged = pixel[:i] + alphabet[(alphabet.index(pixel[i]) + 1) % 64] + pixel[i + 1 :]
        r = client.get(f"/o/{forged}.gif", headers={"User-Agent": BROWSER})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
    for i in range(len(click)):
        forged = click[:i] + alphabet[(alphabet.index(click[i]) + 1) % 64] + click[i + 1 :]
        r = client.get(f"/c/{forged}", headers={"User-Agent": BROWSER})
        assert r.status_code == 400
        assert "location" not in r.headers
    # Then the real pixel and link, through the same edge and bus: once they count, every forgery before
    # them has been processed, so a forgery that counted would show here as a second open or click.
    assert hit(client, sent["pixel_url"]).status_code == 200
    assert hit(client, sent["links"]["https://example.com/a"]).status_code == 302
    stats, _ = wait_for(
        lambda: message(client, sent["message_id"]), lambda m: m["opens"] + m["clicks"] >= 2, timeout_s=30
    )
    assert (stats["opens"], stats["machine_opens"], stats["clicks"], stats["bot_clicks"]) == (1, 0, 1, 0)


GARBAGE_PATHS = [
    "/o/.gif", "/o/", "/o/%00%ff.gif", "/o/" + "A" * 5000 + ".gif", "/o/!!!.gif",
    "/o/..%2F..%2Fetc%2Fpasswd.gif",
    "/c/", "/c/%2e%2e", "/c/" + "B" * 5000, "/c/AAAA", "/o/a.gif?x=" + "y" * 3000,
]  # fmt: skip


@pytest.mark.parametrize("path", GARBAGE_PATHS)
def test_garbage_tokens_never_cause_a_server_error(client: httpx.Client, path: str) -> None:
    r = client.get(
        path, headers={"User-Agent": "\x01\x7f" + "Z" * 9000, "X-Forwarded-For": "not-an-ip, ::::"}
    )
    assert r.status_code < 500
    if path.startswith("/o/"):
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
    else:
        assert r.status_code == 400


def test_hostile_headers_never_cause_a_server_error(client: httpx.Client) -> None:
    sent = register(client)
    for headers in (
        {"X-Forwarded-For": "1.2.3.4" + ", 5.6.7.8" * 500},
        {"X-Forwarded-For": "[::1]:80, 999.1.1.1, fe80::1%eth0"},
        {"User-Agent": "é日本".encode()},  # raw UTF-8 bytes in a header
        {"Authorization": "Bearer " + "x" * 10000},
    ):
        r = client.get(path_of(sent["pixel_url"]), headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"


def test_accounts_never_see_each_other(client: httpx.Client) -> None:
    sent = register(client, campaign_id="secret-plans")
    assert client.get(f"/v1/messages/{sent['message_id']}", headers=GLOBEX).status_code == 404
    assert client.get("/v1/campaigns/secret-plans/stats", headers=GLOBEX).status_code == 404
    assert client.get(f"/v1/messages/{sent['message_id']}", headers=ACME).status_code == 200
    assert client.get("/v1/campaigns/no-such/stats", headers=ACME).status_code == 404
    assert client.get("/v1/messages/no-such", headers=ACME).status_code == 404


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic YWNtZTphY21l"}]
)
def test_missing_or_wrong_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    assert client.get("/v1/campaigns/spring/stats", headers=headers).status_code == 401
    r = client.post("/v1/messages", json={"campaign_id": "c", "recipient": "r"}, headers=headers)
    assert r.status_code == 401


def test_registering_again_gives_the_same_urls_and_conflicts_are_409(client: httpx.Client) -> None:
    first = register(client, message_id="m-1", links=["https://example.com/x"])
    again = register(client, message_id="m-1", links=["https://example.com/x"])
    assert again == first
    r = client.post(
        "/v1/messages", json={"campaign_id": "other", "recipient": "bob@example.com", "message_id": "m-1"},
        headers=ACME,
    )  # fmt: skip
    assert r.status_code == 409
    r = client.get("/v1/campaigns/spring/stats", headers=ACME)
    assert r.json()["sent"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"campaign_id": "c"},
        {"campaign_id": "", "recipient": "r"},
        {"campaign_id": "c", "recipient": "r", "links": ["javascript:alert(1)"]},
        {"campaign_id": "c", "recipient": "r", "links": ["mailto:x@example.com"]},
        {"campaign_id": "c", "recipient": "r", "sent_at": "yesterday"},
        {"campaign_id": "c", "recipient": "r", "surprise": 1},
    ],
)
def test_bad_registrations_are_400(client: httpx.Client, body: dict[str, Any]) -> None:
    assert client.post("/v1/messages", json=body, headers=ACME).status_code == 400


def test_health_ready_metrics_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "pixelpipe_edge_hits_total" in metrics.text
    spec = client.get("/schema/openapi.json").json()
    assert "/v1/messages" in spec["paths"]
    assert "/v1/campaigns/{campaign_id}/stats" in spec["paths"]
    assert client.get("/schema").status_code == 200


NEWSLETTER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>a{color:#c00}</style></head>
<body><table role="presentation" width="100%"><tr><td align="center">
<a href="https://shop.example.com/sale?utm_source=mail&amp;utm_medium=email#top"><img
  src="https://cdn.example.com/b.png" alt="Sale"></a>
<p>Questions? <a href="mailto:help@example.com">Write to us</a> or <a href='tel:+441234'>call</a>.</p>
<p><A HREF=http://example.org/plain>Plain</A> · <a href="#footer">jump</a> · Café 日本語 🎉</p>
</td></tr></table>
<a href="https://shop.example.com/sale?utm_source=mail&amp;utm_medium=email#top">Again</a>
"""  # no </body>: the pixel goes at the end


def test_instrument_real_world_html(client: httpx.Client) -> None:
    r = client.post(
        "/v1/instrument",
        json={"campaign_id": "news", "recipient": "ann@example.com", "html": NEWSLETTER},
        headers=ACME,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body["links"]) == {
        "https://shop.example.com/sale?utm_source=mail&utm_medium=email#top",
        "http://example.org/plain",
    }
    html = body["html"]
    assert html.count(body["pixel_url"]) == 1
    assert html.rstrip().endswith("/>")
    assert "mailto:help@example.com" in html
    assert "tel:+441234" in html
    assert 'href="#footer"' in html
    assert "Café 日本語 🎉" in html
    assert "https://shop.example.com" not in html.replace("https://cdn.example.com", "")
    # every http(s) link now goes through the edge, and following it lands where the sender meant
    tracked = body["links"]["https://shop.example.com/sale?utm_source=mail&utm_medium=email#top"]
    assert html.count(tracked.replace("&", "&amp;")) == 2
    landed = hit(client, tracked)
    assert landed.status_code == 302
    assert landed.headers["location"] == "https://shop.example.com/sale?utm_source=mail&utm_medium=email#top"
