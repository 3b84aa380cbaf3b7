"""The tracking preferences page in a real browser (issue 19), with JavaScript off and at a phone's width:
opening it changes nothing (the consent history stays empty and the next pixel still counts); pressing
"Do not track me" answers a confirmation, and the recipient's next pixel is not recorded.

A module of its own, with its own served pixelpipe (no dashboard build needed): it changes the data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.preferences import preferences_url
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.tokens import recipient_tag
from tests.integration.helpers import embedded_env, hit, path_of, wait_for
from tests.serving import serving

pytestmark = pytest.mark.browser

ACME = {"Authorization": "Bearer acme-key-123"}
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path
) -> Iterator[tuple[str, httpx.Client, Components]]:
    env = embedded_env(tmp_path_factory.mktemp("data"), chdb_path, PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8")
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield base, client, components
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def register(client: httpx.Client, recipient: str) -> dict[str, Any]:
    r = client.post("/v1/messages", json={"campaign_id": "c", "recipient": recipient}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def opens(client: httpx.Client, message_id: str) -> int:
    return int(client.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"])


def consent_changes(components: Components) -> int:
    store = components.store
    assert store is not None
    return int(store.query(f"SELECT count() FROM {store.database}.consent_events")[0][0])


async def test_the_page_without_javascript_on_a_phone_refuses_tracking(
    browser: Any, running: tuple[str, httpx.Client, Components], screenshots: Path
) -> None:
    base, client, components = running
    sent = register(client, "ann@example.com")
    keyring = components.settings.keyring
    tag = recipient_tag(keyring.signing_key[1], "acme", "ann@example.com")
    url = preferences_url(keyring, base, "acme", "c", sent["message_id"], tag)

    context = await browser.new_context(java_script_enabled=False, viewport=PHONE, is_mobile=True)
    context.set_default_timeout(10_000)
    try:
        page = await context.new_page()
        answer = await page.goto(url)
        assert answer is not None
        assert answer.status == 200
        await page.get_by_role("heading", name="Tracking preferences").wait_for()
        assert await page.locator("#state").get_attribute("data-state") == "unknown"
        assert await page.locator("#state").get_attribute("data-measured") == "true"
        await page.screenshot(path=str(screenshots / "preferences-page-phone.png"), full_page=True)
        # Readable at a phone's width: nothing wider than the screen, text at 16 px, buttons as wide as it.
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        size = await page.locator("p").first.evaluate("p => getComputedStyle(p).fontSize")
        assert float(size.removesuffix("px")) >= 16
        refuse = page.get_by_role("button", name="Do not track me")
        box = await refuse.bounding_box()
        assert box is not None
        assert box["width"] >= PHONE["width"] * 0.8
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
        await page.get_by_role("button", name="Allow tracking").wait_for()

        # Opening the page changed nothing: no consent change, and the next pixel counts.
        assert consent_changes(components) == 0
        hit(client, sent["pixel_url"])
        wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)

        await refuse.click()  # a plain form POST: no script runs on this page
        confirmation = page.locator("#confirmation")
        await confirmation.wait_for()
        confirmed = time.monotonic()
        assert await confirmation.get_attribute("data-state") == "refused"
        assert await page.get_by_role("heading", name="Choice saved").is_visible()
        await page.screenshot(path=str(screenshots / "preferences-confirmation-phone.png"), full_page=True)
        # The next pixel, within a second of the confirmation, is not recorded.
        hit(client, sent["pixel_url"])
        assert time.monotonic() - confirmed < 1.0
        zoe = register(client, "zoe@example.com")
        hit(client, zoe["pixel_url"])
        wait_for(lambda: opens(client, zoe["message_id"]), lambda n: n == 1)  # after it: counted
        assert opens(client, sent["message_id"]) == 1
        assert consent_changes(components) == len(
            keyring.recipient_tags("acme", "ann@example.com")
        )  # one change, a row per tag

        # Opened again, the page shows the refusal and still changes nothing.
        await page.goto(url)
        assert await page.locator("#state").get_attribute("data-state") == "refused"
        assert await page.locator("#state").get_attribute("data-measured") == "false"
        assert consent_changes(components) == len(keyring.recipient_tags("acme", "ann@example.com"))
        assert path_of(page.url) == path_of(url)
    finally:
        await context.close()
