"""Erasing a recipient from their page: the page asks for confirmation first (nothing is erased before), and
once confirmed the API knows the recipient no more. A module of its own: it changes the data."""

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
