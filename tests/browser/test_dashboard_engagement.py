"""Engagement and segments in the dashboard (issue 20), in Chromium against a served pixelpipe with real data:
the recipient view shows their engagement exactly as `GET /v1/recipients/{r}/engagement` answers it, and the
Segments page, conditions combined by a person with the keyboard and mouse, shows the count and first page
that `POST /v1/segments/query` answers for the same body, with the slot of the segment members' export.

The shared dataset (tests/browser/dataset.py), plus ivy: a message of campaign ``follow-up`` whose link she
clicked while its pixel never loaded (an implied open)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import dataset
from tests.browser.conftest import Served
from tests.browser.reading import numbers, shown
from tests.browser.signing_in import sign_in
from tests.integration.helpers import BROWSER, hit, wait_for

pytestmark = pytest.mark.browser

FOLLOW_UP = "follow-up"
NUMBERS = (
    "sends", "delivered", "opened", "human_opens", "implied_opens", "machine_only", "clicked", "clicks",
    "bounces", "complaints",
)  # fmt: skip


@pytest.fixture(scope="module")
def ivy(served: Served) -> Served:
    """ivy's implied open: her click through the edge, no pixel."""
    at = datetime.now(UTC) - timedelta(hours=1)
    sent = dataset.register(served.client, FOLLOW_UP, "f-ivy", "ivy@example.com", sent_at=at)
    assert (
        hit(served.client, sent["links"][dataset.LINKS[0]], ua=BROWSER, ip="81.2.69.170").status_code == 302
    )

    def engagement() -> dict[str, Any]:
        r = served.client.get("/v1/recipients/ivy@example.com/engagement", headers=dataset.ACME)
        return dict(r.json()) if r.status_code == 200 else {}

    wait_for(engagement, lambda e: e.get("clicks") == 1, 30)
    return served


async def engagement_on_page(page: Any) -> dict[str, tuple[str, str]]:
    await page.wait_for_selector("body[data-ready=recipient]")
    return await numbers(page, "section[aria-labelledby=engagement-title]")


@pytest.mark.parametrize(
    "recipient", ["ann@example.com", "ivy@example.com", "dan@example.com", "fay@example.com"]
)
async def test_the_recipient_view_shows_the_apis_engagement(
    page: Any, ivy: Served, recipient: str, screenshots: Path
) -> None:
    await sign_in(page)
    await page.goto(f"/#/recipients/{recipient}")
    on_page = await engagement_on_page(page)
    api = await ivy.api(f"/v1/recipients/{recipient}/engagement")
    for field in NUMBERS:
        raw, text = on_page[f"engagement-{field}"]
        assert (int(raw), text) == (api[field], shown(api[field])), field
    assert on_page["engagement-status"][0] == api["status"]
    assert on_page["engagement-score"][0] == ("" if api["score"] is None else str(api["score"]))
    for field in ("last_open", "last_click"):
        assert on_page[f"engagement-{field}"][0] == (api[field] or ""), field
    if recipient == "ivy@example.com":
        await page.screenshot(path=screenshots / "recipient-engagement.png", full_page=True)


async def test_the_apis_engagement_is_what_the_dataset_made(ivy: Served) -> None:
    """The numbers the page is compared with, exactly: ann opened both her messages (spring's twice, with
    Apple's prefetch too) and clicked one; ivy only clicked (implied); dan only Apple's prefetch; fay
    bounced."""
    ann = await ivy.api("/v1/recipients/ann@example.com/engagement")
    assert {k: ann[k] for k in (*NUMBERS, "status", "score")} == {
        "sends": 2, "delivered": 1, "opened": 2, "human_opens": 3, "implied_opens": 0, "machine_only": 0,
        "clicked": 1, "clicks": 1, "bounces": 0, "complaints": 0, "status": "engaged",
        "score": 5,  # e = 1, c = 1/2: 1 + floor(4 * 0.875 + 0.5)
    }  # fmt: skip
    ivy_ = await ivy.api("/v1/recipients/ivy@example.com/engagement")
    assert (ivy_["opened"], ivy_["implied_opens"], ivy_["status"], ivy_["score"]) == (0, 1, "engaged", 5)
    dan = await ivy.api("/v1/recipients/dan@example.com/engagement")
    assert (dan["machine_only"], dan["mpp_only"], dan["status"], dan["score"]) == (1, 1, "unknown", 3)
    fay = await ivy.api("/v1/recipients/fay@example.com/engagement")
    assert (fay["bounces"], fay["status"], fay["score"]) == (1, "bounced", 1)


async def segment_api(served: Served, body: dict[str, Any]) -> dict[str, Any]:
    async with served.http(headers=dataset.ACME) as client:
        r = await client.post("/v1/segments/query", json={**body, "limit": 50, "count": True})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def shown_segment(page: Any) -> tuple[int, list[str]]:
    await page.wait_for_selector("body[data-ready=segment-page]")
    count = int(await page.get_by_test_id("segment-count").get_attribute("data-value"))
    members = [str(m) for m in await page.get_by_test_id("segment-member").all_text_contents()]
    return count, sorted(members)


@pytest.mark.parametrize(
    ("fill", "checks", "body", "expected"),
    [
        # opened a campaign: a pixel open by a person, or an implied one
        ({"Opened campaign": FOLLOW_UP}, [], {"opened": {"campaign": FOLLOW_UP}}, ["ivy@example.com"]),
        ({"Opened campaign": dataset.SPRING}, [], {"opened": {"campaign": dataset.SPRING}},
         ["ann@example.com", "bob@example.com", "cat@example.com"]),
        # a person's click (cat's was a bot's: filtered)
        ({"Clicked in campaign": dataset.SPRING}, [], {"clicked": {"campaign": dataset.SPRING}},
         ["ann@example.com", "bob@example.com"]),
        ({}, ["Machine-only opens"], {"machine_only": True}, ["dan@example.com"]),
        ({}, ["Bounced"], {"bounced": True}, ["fay@example.com"]),
    ],
)  # fmt: skip
async def test_the_segments_page_shows_the_apis_count_and_first_page(
    page: Any,
    ivy: Served,
    *,
    fill: dict[str, str],
    checks: list[str],
    body: dict[str, Any],
    expected: list[str],
) -> None:
    await sign_in(page)
    await page.goto("/#/segments")
    await page.wait_for_selector("body[data-ready=segments]")
    for label, value in fill.items():
        await page.get_by_label(label, exact=True).fill(value)
    for label in checks:
        await page.get_by_label(label, exact=True).check()
    await page.get_by_role("button", name="Show recipients").click()
    count, members = await shown_segment(page)
    api = await segment_api(ivy, body)
    assert (count, members) == (api["count"], sorted(r["recipient"] for r in api["recipients"]))
    assert members == expected
    for member in api["recipients"]:
        who = member["recipient"]
        for field in ("score", "sends", "opened", "implied_opens", "clicked", "machine_only"):
            raw = await page.get_by_test_id(f"member-{who}-{field}").get_attribute("data-value")
            assert raw == ("" if member[field] is None else str(member[field])), (who, field)
    # the export button's place (e2-exports), with the segment's conditions
    slot = page.locator("#segment-members-export[data-slot=segment-members-export]")
    assert json.loads(await slot.get_attribute("data-query")) == body


async def test_a_combined_segment_by_keyboard(page: Any, ivy: Served, screenshots: Path) -> None:
    """Score at least 4 and clicked in spring, chosen with the keyboard: the API's members exactly."""
    await sign_in(page)
    await page.goto("/#/segments")
    await page.wait_for_selector("body[data-ready=segments]")
    await page.get_by_label("Score at least", exact=True).select_option("4")
    await page.get_by_label("Clicked in campaign", exact=True).fill(dataset.SPRING)
    await page.get_by_label("Clicked in campaign", exact=True).press("Enter")  # submits the form
    count, members = await shown_segment(page)
    api = await segment_api(ivy, {"min_score": 4, "clicked": {"campaign": dataset.SPRING}})
    assert (count, members) == (api["count"], sorted(r["recipient"] for r in api["recipients"]))
    assert members == ["ann@example.com", "bob@example.com"]  # 5 stars each: opened and clicked their one
    await page.screenshot(path=screenshots / "segments.png", full_page=True)


def test_no_other_account_sees_the_segment(ivy: Served) -> None:
    r = httpx.post(
        f"{ivy.base}/v1/segments/query", json={"opened": {"campaign": FOLLOW_UP}}, headers=dataset.GLOBEX
    )
    assert (r.status_code, r.json()["recipients"]) == (200, [])
