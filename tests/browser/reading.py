"""Reading numbers off the dashboard: every number the page shows is an element with a stable
``data-testid`` and its raw value in ``data-value`` (the API's JSON value); its text is that value written
as `web/src/format.ts` writes it (counts with "," separators, rates as percentages with 2 decimals)."""

from __future__ import annotations

from typing import Any

# {testid: (data-value, text)} of every number inside ``scope`` (a CSS selector).
READ_NUMBERS = """
(scope) => Object.fromEntries(
  [...document.querySelectorAll(`${scope} [data-testid][data-value]`)]
    .map((e) => [e.dataset.testid, [e.dataset.value, e.textContent.trim()]]))
"""


async def numbers(page: Any, scope: str = "body") -> dict[str, tuple[str, str]]:
    found = await page.evaluate(READ_NUMBERS, scope)
    return {k: (v[0], v[1]) for k, v in found.items()}


def count_text(n: int) -> str:
    return f"{n:,}"


def rate_text(r: float) -> str:
    """0.6667 -> "66.67%", as format.ts's `rate` writes the API's 4-decimal fraction."""
    basis_points = round(r * 10000)
    return f"{basis_points // 100}.{basis_points % 100:02d}%"


def shown(value: Any) -> str:
    """How the page writes an API value: a count, or a rate (a float)."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return count_text(value)
    return rate_text(float(value))
