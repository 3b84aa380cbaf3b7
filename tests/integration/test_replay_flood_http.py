"""One client replaying one pixel (and one link) over one pipelined connection, through the whole pipeline:
the edge's own HTTP protocol, the in-process bus, the processor, the embedded ClickHouse, the API and a real
webhook receiver. A flood counts its first 10 hits and files the rest as ``bot``/``replay_flood``, with no
webhook for them (`processors.flood`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from litestar import Litestar, Request, Response, post

from ingest.http_protocol import EdgeHttpProtocol
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import BROWSER, RESIDENTIAL, hit, path_of, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
LINK = "https://shop.example.com/sale"
PIXELS, CLICKS, LIMIT = 1_000, 30, 10
OTHER_READER = "89.160.20.128"  # another network (Linköping in MaxMind's test City DB)


class Hooks:
    """A webhook endpoint that answers 204 and keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def app(self) -> Litestar:
        @post("/hook", status_code=204)
        async def hook(request: Request[Any, Any, Any]) -> Response[None]:
            body = orjson.loads(await request.body())
            with self.lock:
                self.bodies.append(body)
            return Response(None, status_code=204)

        return Litestar(route_handlers=[hook])

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture
def hooks() -> Iterator[tuple[Hooks, str]]:
    h = Hooks()
    with serving(h.app()) as base:
        yield h, f"{base}/hook"


@pytest.fixture
def base(env: dict[str, str]) -> Iterator[str]:
    settings = settings_mod.load({**env, "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true"})
    app, _ = build_app(build_components(settings, frozenset({"edge", "process", "api"})))
    with serving(app, http=EdgeHttpProtocol) as url:
        yield url


def webhook_is_live(api: httpx.Client, rx: Hooks) -> None:
    """Return once the dispatcher delivers to the webhook just registered (its directory reloads at most every
    second, so opens sent at once could find no webhook yet, while the clicks, held 1.5 s, would): an open
    of a probe message of another campaign, sent again each second, until one is delivered."""
    r = api.post("/v1/messages", json={"campaign_id": "probe", "recipient": "probe@example.com"})
    assert r.status_code == 201, r.text
    for _ in range(10):  # no more than a replay flood of the probe would let through
        assert hit(api, r.json()["pixel_url"], ip=OTHER_READER).status_code == 200
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not rx.received():
            time.sleep(0.02)
        if rx.received():
            return
    raise AssertionError("no probe open was delivered to the webhook")


def pipelined(base: str, path: str, count: int, status: bytes) -> int:
    """Send ``count`` GETs of ``path`` in one write on one connection (as a replaying script does); return
    how many answers with ``status`` came back."""
    host, port = base.removeprefix("http://").split(":")
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {BROWSER}\r\n"
    request = f"{head}X-Forwarded-For: {RESIDENTIAL}\r\n\r\n".encode()
    answers = b""
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request * count)
        while answers.count(b"HTTP/1.1 ") < count:
            chunk = s.recv(1 << 16)
            assert chunk, f"connection closed after {answers.count(b'HTTP/1.1 ')} answers"
            answers += chunk
    return answers.count(b"HTTP/1.1 " + status)


def test_a_replayed_pixel_and_link_count_ten_each_and_notify_ten_each(
    base: str, hooks: tuple[Hooks, str]
) -> None:
    rx, hook_url = hooks
    with httpx.Client(base_url=base, timeout=10, headers=ACME) as api:
        r = api.post("/v1/webhooks", json={"url": hook_url, "events": ["open", "click"]})
        assert r.status_code == 201, r.text
        webhook_is_live(api, rx)
        r = api.post(
            "/v1/messages", json={"campaign_id": "flood", "recipient": "ann@example.com", "links": [LINK]}
        )
        assert r.status_code == 201, r.text
        sent = r.json()

        assert pipelined(base, path_of(sent["pixel_url"]), PIXELS, b"200") == PIXELS
        assert pipelined(base, path_of(sent["links"][LINK]), CLICKS, b"302") == CLICKS
        # A positive signal that every flood hit was processed: a person's open and click from another
        # network, read after them on the same partition, counted and notified.
        assert hit(api, sent["pixel_url"], ip=OTHER_READER).status_code == 200
        assert hit(api, sent["links"][LINK], ip=OTHER_READER).status_code == 302

        def stats() -> dict[str, Any]:
            return dict(api.get(f"/v1/messages/{sent['message_id']}").json())

        message, _ = wait_for(stats, lambda m: m["opens"] == LIMIT + 1 and m["clicks"] == LIMIT + 1, 30)
        assert (message["opens"], message["clicks"]) == (LIMIT + 1, LIMIT + 1)
        assert (message["bot_opens"], message["bot_clicks"]) == (PIXELS - LIMIT, CLICKS - LIMIT)
        assert message["filtered"] == {"replay_flood": PIXELS - LIMIT + CLICKS - LIMIT}

        campaign = api.get("/v1/campaigns/flood/stats").json()
        assert (campaign["opens"], campaign["unique_opens"], campaign["open_rate"]) == (LIMIT + 1, 1, 1.0)
        assert (campaign["clicks"], campaign["unique_clicks"], campaign["bot_clicks"]) == (
            LIMIT + 1, 1, CLICKS - LIMIT,
        )  # fmt: skip
        assert campaign["filtered"] == {"replay_flood": PIXELS - LIMIT + CLICKS - LIMIT}
        filtered = api.get("/v1/campaigns/flood/filtered").json()["filtered"]
        assert filtered == [
            {"kind": "open", "verdict": "bot", "reason": "replay_flood", "hits": PIXELS - LIMIT},
            {"kind": "click", "verdict": "bot", "reason": "replay_flood", "hits": CLICKS - LIMIT},
        ]

        # One webhook per counted hit, none per filtered one: deliveries of one message go out in order, so
        # once the other reader's open and click have arrived, everything before them has.
        def delivered() -> list[dict[str, Any]]:
            return [b for b in rx.received() if b["data"]["message_id"] == sent["message_id"]]

        bodies, _ = wait_for(delivered, lambda b: sum(1 for x in b if x["data"]["country"] == "SE") == 2, 30)
        assert sorted(b["type"] for b in bodies) == ["click"] * (LIMIT + 1) + ["open"] * (LIMIT + 1)
        assert len({b["id"] for b in bodies}) == len(bodies)
        assert {b["data"]["reason"] for b in bodies} == {"ua:client"}
