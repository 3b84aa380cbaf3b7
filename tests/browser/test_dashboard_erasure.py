"""Erasing a recipient from their page: the page asks for confirmation first (nothing is erased before), and
once confirmed the API knows the recipient no more; and do-not-track from their page, as the API says it
after a reload. A module of its own: it changes the data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import dataset
from tests.browser.conftest import Served
from tests.browser.signing_in import sign_in

pytestmark = pytest.mark.browser


async def status(served: Served, method: str, path: str) -> int:
    async with served.http(headers=dataset.ACME) as client:
        return (await client.request(method, path)).status_code


async def test_erasure_asks_for_confirmation_then_the_api_shows_the_recipient_erased(
    page: Any, served: Served
) -> None:
    await sign_in(page)
    await page.goto("/#/recipients/bob@example.com")
    await page.get_by_role("button", name="Erase", exact=False).first.click()
    dialog = page.get_by_role("alertdialog").or_(page.get_by_role("dialog"))
    await dialog.wait_for(state="visible")
    assert await status(served, "GET", "/v1/messages/m-bob") == 200  # asked, not done
    await dialog.get_by_role("button", name="Cancel").click()  # changing one's mind erases nothing
    await dialog.wait_for(state="hidden")
    assert await status(served, "GET", "/v1/messages/m-bob") == 200
    await page.get_by_role("button", name="Erase", exact=False).first.click()
    await dialog.get_by_role("button", name="Erase", exact=False).click()
    await page.get_by_role("status").filter(has_text="erased").wait_for(state="visible")
    assert await status(served, "GET", "/v1/messages/m-bob") == 404
    assert await status(served, "DELETE", "/v1/recipients/bob@example.com") == 404  # nothing left
    assert (await served.api("/v1/campaigns/spring-sale/summary"))["sent"] == 5


async def tracking_shown(page: Any) -> str:
    state = page.get_by_test_id("tracking-state")
    await page.wait_for_selector("body[data-ready=recipient]")
    return str(await state.get_attribute("data-tracking"))


async def test_do_not_track_is_shown_as_the_api_says_it_after_a_reload(page: Any, served: Served) -> None:
    await sign_in(page)
    await page.goto("/#/recipients/cat@example.com")
    assert await tracking_shown(page) == "on"
    stop = page.get_by_role("button", name="Stop tracking this recipient")
    again = page.get_by_role("button", name="Track this recipient again")
    assert (await stop.is_enabled(), await again.is_enabled()) == (True, False)
    await stop.click()
    await page.locator("[data-testid=tracking-state][data-tracking=off]").wait_for()
    assert (await served.api("/v1/recipients/cat@example.com"))["tracking"] == "off"
    await page.reload()
    assert await tracking_shown(page) == "off"  # the API's state, not the page's memory
    assert (await stop.is_enabled(), await again.is_enabled()) == (False, True)
    await again.click()
    await page.locator("[data-testid=tracking-state][data-tracking=on]").wait_for()
    await page.reload()
    assert await tracking_shown(page) == "on"
    assert (await served.api("/v1/recipients/cat@example.com"))["tracking"] == "on"
