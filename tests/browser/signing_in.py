"""Signing in and out through the page, as a person does: the steps the browser tests share."""

from __future__ import annotations

from typing import Any

from tests.browser import dataset

SESSION_COOKIE = "pixelpipe_session"


async def sign_in(page: Any, key: str = dataset.ACME_KEY, *, path: str = "/") -> None:
    """Open ``path``, type the key into the field labelled "API key" and press Enter; return once the
    sign-in form is gone (the dashboard is showing)."""
    await page.goto(path)
    field = page.get_by_label("API key", exact=True)
    await field.fill(key)
    await field.press("Enter")
    await field.wait_for(state="detached")


async def signed_in_cookie(page: Any) -> dict[str, Any]:
    """Sign in as acme; the session cookie the browser got."""
    await sign_in(page)
    cookie = await session_cookie(page)
    assert cookie is not None
    return cookie


async def session_cookie(page: Any) -> dict[str, Any] | None:
    cookies = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    return cookies[0] if cookies else None


async def web_storage(page: Any) -> str:
    """Every key and value in the page's localStorage and sessionStorage, as one string."""
    return str(
        await page.evaluate(
            """() => JSON.stringify([localStorage, sessionStorage].map(
                   (s) => Object.keys(s).map((k) => [k, s.getItem(k)])))"""
        )
    )
