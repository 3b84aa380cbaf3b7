"""The API docs pages (`/schema`: Scalar; `/schema/swagger`, `/schema/redoc`) render with no internet:
every script, style and font comes from the process itself (pinned npm packages copied into the build), and
no page asks another host for anything. Requests to any other host are blocked here and recorded, so a CDN
reference fails the test instead of hanging it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import Served

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("docs", ["/schema", "/schema/swagger", "/schema/redoc"])
async def test_the_api_docs_render_offline(page: Any, served: Served, screenshots: Any, docs: str) -> None:
    own = urlsplit(served.base).netloc
    elsewhere: list[str] = []

    async def only_here(route: Any) -> None:
        if urlsplit(route.request.url).netloc in (own, ""):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    await page.context.route("**/*", only_here)
    answer = await page.goto(docs)
    assert answer is not None
    assert answer.status == 200
    # The docs are drawn from the OpenAPI document: an operation of the API is on the page.
    await page.get_by_text("/v1/campaigns/{campaign_id}/summary").first.wait_for(state="visible")
    name = "api-docs" + docs.removeprefix("/schema").replace("/", "-")
    await page.screenshot(path=screenshots / f"{name}.png")
    assert elsewhere == []
