"""Signing in to the dashboard with an API key, in Chromium: the contract's field labelled "API key", a
session cookie the page's scripts cannot read, the key kept nowhere in the browser, and sign-out that ends the
session on the server too (the old cookie no longer works)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import dataset
from tests.browser.conftest import Served
from tests.browser.signing_in import SESSION_COOKIE, session_cookie, signed_in_cookie, web_storage

pytestmark = pytest.mark.browser


async def test_the_sign_in_page_has_a_field_labelled_api_key(page: Any, screenshots: Any) -> None:
    await page.goto("/")
    field = page.get_by_label("API key", exact=True)
    await field.wait_for(state="visible")
    assert await field.get_attribute("type") == "password"  # not shown over a shoulder
    await page.screenshot(path=screenshots / "sign-in.png", full_page=True)


async def test_signing_in_sets_an_http_only_cookie_and_keeps_the_key_nowhere(
    page: Any, served: Served
) -> None:
    cookie = await signed_in_cookie(page)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/")
    assert cookie["expires"] > 0  # expiring, not a browser-session cookie kept forever by "restore tabs"
    assert dataset.ACME_KEY not in cookie["value"]
    assert SESSION_COOKIE not in await page.evaluate("document.cookie")  # HttpOnly: scripts cannot read it
    stored = await web_storage(page)
    assert dataset.ACME_KEY not in stored
    # The cookie is the session: the API answers it as acme, and the key is in no answer.
    async with served.http(cookies={SESSION_COOKIE: cookie["value"]}) as client:
        r = await client.get("/session")
    assert r.status_code == 200
    assert r.json()["account"] == "acme"
    assert dataset.ACME_KEY not in r.text


async def test_a_wrong_key_is_refused_and_sets_no_cookie(page: Any) -> None:
    await page.goto("/")
    field = page.get_by_label("API key", exact=True)
    await field.fill("not-a-key")
    await field.press("Enter")
    await page.get_by_role("alert").wait_for(state="visible")
    assert await field.is_visible()
    assert await session_cookie(page) is None


async def test_signing_out_returns_to_sign_in_and_the_old_cookie_no_longer_works(
    page: Any, served: Served
) -> None:
    cookie = await signed_in_cookie(page)
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API key", exact=True).wait_for(state="visible")
    assert await session_cookie(page) is None
    async with served.http(cookies={SESSION_COOKIE: cookie["value"]}) as old:
        assert (await old.get("/session")).status_code == 401
        assert (await old.get("/v1/campaigns")).status_code == 401
    await page.reload()  # a reload does not bring the session back
    await page.get_by_label("API key", exact=True).wait_for(state="visible")
