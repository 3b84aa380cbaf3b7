"""Read time with a real browser (issue 18): Debian's Chromium opens an email holding the pixel of a message
registered with ``"read_time": true`` through the public API, from a served pixelpipe (edge, processors and
API in one process, served by the edge's own HTTP protocol as `pixelpipe serve` serves it), keeps it on
screen, then navigates away. The edge measures how long the pixel was held until the browser closed its
connection: about 6 s is "skimmed", about 1 s "glanced". Asserted on the read record the edge published on
the bus (the in-memory bus, tapped) and on what the API then answers: the campaign's read-time numbers and
the message's timeline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.http_protocol import EdgeHttpProtocol, bounded
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.events import RawHit, decode_hit
from schemas.reads import ReadRecord, decode_read, is_read_line, read_category
from schemas.tokens import Keyring, TokenKind, verify
from tests.integration.helpers import embedded_env, path_of
from tests.serving import free_port, serving

pytestmark = pytest.mark.browser

ACME = {"Authorization": "Bearer acme-key-123"}
# A desktop mail client's user agent: the open is a person's, as a reader's would be.
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


class _Tap:
    """Every line the edge publishes on the in-memory bus, kept for the test (the bus still gets it)."""

    def __init__(self, bus: Any) -> None:
        self.lines: list[bytes] = []
        self._lock = threading.Lock()
        publish_encoded = bus.publish_encoded

        def tapped(key: bytes | None, value: bytes) -> None:
            with self._lock:
                self.lines.append(value)
            publish_encoded(key, value)

        bus.publish_encoded = tapped

    def reads(self) -> list[ReadRecord]:
        with self._lock:
            return [decode_read(line) for line in self.lines if is_read_line(line)]

    def opens(self) -> list[RawHit]:
        with self._lock:
            return [decode_hit(line) for line in self.lines if not is_read_line(line)]

    async def read_of(self, hit_id: str, timeout_s: float = 30.0) -> ReadRecord:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [r for r in self.reads() if r.read_of == hit_id]
            if found:
                assert len(found) == 1, found
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no read record of {hit_id}: {self.reads()}")


@dataclass(frozen=True)
class _Served:
    base: str
    client: httpx.Client
    keyring: Keyring
    tap: _Tap

    def timed_pixel(self, message_id: str) -> str:
        """The pixel URL of a message registered now with read time, in a campaign of its own."""
        message = {
            "campaign_id": f"c-{message_id}",
            "message_id": message_id,
            "recipient": f"{message_id}@example.com",
            "read_time": True,
        }
        r = self.client.post("/v1/messages", json=message, headers=ACME)
        assert r.status_code == 201, r.text
        pixel_url: str = r.json()["pixel_url"]
        token = path_of(pixel_url).removeprefix("/o/").removesuffix(".gif")
        assert verify(token, self.keyring).kind is TokenKind.TIMED_OPEN
        return pixel_url

    def api(self, path: str) -> Any:
        r = self.client.get(path, headers=ACME)
        assert r.status_code == 200, r.text
        return r.json()

    async def read_time_of(self, message_id: str, timeout_s: float = 30.0) -> tuple[Any, list[Any]]:
        """The campaign's ``read_time`` and the message's timeline's opens, once the API has the read."""
        deadline = time.monotonic() + timeout_s
        while True:
            numbers = self.api(f"/v1/campaigns/c-{message_id}/stats")["read_time"]
            timeline = self.api(f"/v1/messages/{message_id}/timeline")["timeline"]
            opens = [e for e in timeline if e["kind"] == "open"]
            if (numbers["measured"] + numbers["unknown"] >= 1 and opens) or time.monotonic() > deadline:
                return numbers, opens
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[_Served]:
    """`pixelpipe serve` as its CLI builds and serves it (the edge's HTTP protocol on uvloop)."""
    port = free_port()
    env = embedded_env(
        tmp_path_factory.mktemp("data"),
        chdb_path,
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8",
        PIXELPIPE_PUBLIC_URL=f"http://127.0.0.1:{port}",  # the pixel URLs the API makes: this server's
    )
    settings = settings_mod.load(env)
    assert settings.read_time_cap_s == 25  # the default cap: 6 s on screen is well inside it
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    tap = _Tap(components.publisher)
    app, _ = build_app(components)
    protocol = bounded(EdgeHttpProtocol, settings.connection_bounds)
    with serving(app, port, http=protocol, loop="uvloop") as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            yield _Served(base, client, settings.keyring, tap)
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


async def _read_for(browser: Any, served: _Served, message_id: str, on_screen_s: float) -> ReadRecord:
    """An email with the message's timed pixel, on screen in Chromium for ``on_screen_s`` from the moment
    the pixel's answer began, then left for another page: the edge's read record of that open."""
    pixel = served.timed_pixel(message_id)
    context = await browser.new_context(user_agent=THUNDERBIRD)
    try:
        page = await context.new_page()
        began = asyncio.get_running_loop().create_future()

        def answered(response: Any) -> None:
            if response.url == pixel and not began.done():
                began.set_result(time.monotonic())

        page.on("response", answered)
        html = f"<html><body><p>Hello</p><img src='{pixel}' width='1' height='1' alt=''></body></html>"
        # The page's load event waits for the image, which is held: wait for the document only.
        await page.set_content(html, wait_until="domcontentloaded")
        await asyncio.wait_for(began, 10)
        await asyncio.sleep(on_screen_s)
        await page.goto("about:blank")  # the reader moves on: Chromium drops the image's connection
        opened = [h for h in served.tap.opens() if h.message_id == message_id]
        assert len(opened) == 1
        assert opened[0].user_agent == THUNDERBIRD
        return await served.tap.read_of(opened[0].hit_id)
    finally:
        await context.close()


async def _assert_api_says(served: _Served, message_id: str, record: ReadRecord, category: str) -> None:
    numbers, opens = await served.read_time_of(message_id)
    seconds = record.read_ms / 1000
    assert numbers == {
        "read": 0,
        "skimmed": int(category == "skimmed"),
        "glanced": int(category == "glanced"),
        "unknown": 0,
        "measured": 1,
        "median_seconds": seconds,
    }
    assert [(e["read_seconds"], e["read_category"]) for e in opens] == [(seconds, category)]


async def test_an_email_on_screen_for_about_6_s_is_skimmed(browser: Any, served: _Served) -> None:
    record = await _read_for(browser, served, "m-skimmed", 6.0)
    assert record.end == "closed"
    assert 5000 <= record.read_ms <= 8000
    assert read_category(record.read_ms, record.end, person=True) == "skimmed"
    await _assert_api_says(served, "m-skimmed", record, "skimmed")


async def test_an_email_left_after_1_s_is_glanced(browser: Any, served: _Served) -> None:
    record = await _read_for(browser, served, "m-glanced", 1.0)
    assert record.end == "closed"
    assert 500 <= record.read_ms < 2000
    assert read_category(record.read_ms, record.end, person=True) == "glanced"
    await _assert_api_says(served, "m-glanced", record, "glanced")
