"""Each view of the dashboard in Chromium against a served pixelpipe with real data: it draws (a screenshot
per view in artifacts/screenshots/), its numbers equal the JSON of the same API route exactly, it works from
the keyboard alone, and it fits a phone's 375 px without scrolling sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser import dataset
from tests.browser.conftest import Served
from tests.browser.reading import numbers, shown
from tests.browser.signing_in import sign_in

pytestmark = pytest.mark.browser

SPRING = dataset.SPRING
# Each view: its address, what the page marks when it is drawn, and its screenshot's name.
VIEWS = {
    "campaigns": ("/#/campaigns", "campaigns"),
    "campaign-report": (f"/#/campaigns/{SPRING}", "report"),
    "message": ("/#/messages/m-ann", "message"),
    "recipient": ("/#/recipients/ann@example.com", "recipient"),
}


async def open_view(page: Any, view: str) -> None:
    path, ready = VIEWS[view]
    await page.goto(path)
    await page.wait_for_selector(f"body[data-ready={ready}]")


def assert_equal(on_page: dict[str, tuple[str, str]], prefix: str, api: dict[str, Any]) -> list[str]:
    """Every number the page shows under ``prefix`` (``data-testid="{prefix}{field}"``) is the API's
    ``field``: its raw value (``data-value``) and its text as the page writes it. Returns the fields seen."""
    seen = sorted(t.removeprefix(prefix) for t in on_page if t.startswith(prefix))
    unknown = [f for f in seen if f not in api]
    assert unknown == [], f"numbers on the page that {prefix}* has no API field for: {unknown}"
    for field in seen:
        raw, text = on_page[prefix + field]
        value = api[field]
        expected_raw = "" if value is None else value
        got_raw: Any = raw if value is None else float(raw)
        assert (got_raw, text) == (expected_raw, shown(value)), f"{prefix}{field}"
    return seen


@pytest.mark.parametrize("view", list(VIEWS))
async def test_each_view_draws(page: Any, view: str, screenshots: Path) -> None:
    await sign_in(page)
    await open_view(page, view)
    await page.screenshot(path=screenshots / f"{view}.png", full_page=True)


async def test_the_campaign_list_shows_the_apis_numbers(page: Any, served: Served) -> None:
    await sign_in(page)
    await open_view(page, "campaigns")
    listed = (await served.api("/v1/campaigns"))["items"]
    assert [c["campaign_id"] for c in listed] == [dataset.NEWSLETTER, SPRING]  # never globex's
    assert await page.get_by_text(dataset.SECRET_CAMPAIGN).count() == 0
    on_page = await numbers(page)
    for item in listed:
        # The list's own columns come from /v1/campaigns; opens and rates from each campaign's summary.
        summary = await served.api(f"/v1/campaigns/{item['campaign_id']}/summary")
        seen = assert_equal(on_page, f"campaign-{item['campaign_id']}-", {**summary, **item})
        assert {"sent", "unique_opens", "open_rate", "clicks", "click_rate"} <= set(seen)
    assert on_page[f"campaign-{SPRING}-unique_opens"] == ("3", "3")
    assert on_page[f"campaign-{SPRING}-delivered"] == ("5", "5")  # Postmark's events (dataset.deliver)


async def test_the_campaign_list_is_one_request_and_shows_each_summarys_numbers(
    page: Any, served: Served
) -> None:
    asked: list[str] = []

    def note(request: Any) -> None:
        url = urlsplit(request.url)
        if url.path.startswith("/v1/"):
            asked.append(url.path)

    page.on("request", note)
    await sign_in(page)  # "/" is the list
    await page.wait_for_selector("body[data-ready=campaigns]")
    assert asked == ["/v1/campaigns"]
    await page.reload()  # signed in already: the list at once
    await page.wait_for_selector("body[data-ready=campaigns]")
    assert asked == ["/v1/campaigns"] * 2
    on_page = await numbers(page)
    listed = (await served.api("/v1/campaigns"))["items"]
    for item in listed:
        # The list's own numbers are the campaign summary's (its rates over delivered mail where it has
        # delivery data, as the summary's), exactly.
        summary = await served.api(f"/v1/campaigns/{item['campaign_id']}/summary")
        fields = ("sent", "unique_opens", "open_rate", "clicks", "click_rate")
        assert {f: item[f] for f in fields} == {f: summary[f] for f in fields}
        seen = assert_equal(on_page, f"campaign-{item['campaign_id']}-", summary)
        assert set(fields) <= set(seen)
    spring = next(item for item in listed if item["campaign_id"] == SPRING)
    assert (spring["delivered"], spring["unique_opens"], spring["open_rate"]) == (5, 3, 0.6)
    assert on_page[f"campaign-{SPRING}-open_rate"] == ("0.6", "60.00%")


async def test_the_campaign_report_shows_the_apis_numbers(page: Any, served: Served) -> None:
    await sign_in(page)
    await open_view(page, "campaign-report")
    summary = await served.api(f"/v1/campaigns/{SPRING}/summary")
    # The dataset's numbers (dataset.make): 6 sent, ann, bob and cat opened (people); dan only by Apple's
    # proxy; eve only by bots; 2 people's clicks and a bot's.
    counted = (summary["sent"], summary["unique_opens"], summary["clicks"], summary["bot_clicks"])
    assert counted == (6, 3, 2, 1)
    on_page = await numbers(page)
    seen = assert_equal(on_page, "stat-", summary)
    assert {"sent", "delivered", "unique_opens", "open_rate", "clicks", "click_rate", "machine_opens"} <= set(
        seen
    )
    # Issue 20: dan's only open is Apple's prefetch, so the MPP-adjusted rate is 3 / (5 delivered - 1); no
    # clicked message lacks an open, so no implied opens.
    assert {"mpp_adjusted_open_rate", "mpp_only_messages", "implied_opens"} <= set(seen)
    adjusted = (summary["mpp_only_messages"], summary["mpp_adjusted_open_rate"], summary["implied_opens"])
    assert adjusted == (1, 0.75, 0)
    assert "Apple Mail Privacy Protection" in await page.get_by_test_id("mpp-explained").inner_text()
    # Its breakdowns, top links and filtered hits: each table's numbers are its route's rows.
    report = f"/v1/campaigns/{SPRING}"
    for by in ("client", "device", "os", "country"):
        rows = (await served.api(f"{report}/breakdown", by=by))["rows"]
        assert rows, by
        for row in rows:
            key = row["key"] if row["key"] is not None else "unknown"
            assert {"opens", "unique_opens", "clicks"} <= set(
                assert_equal(on_page, f"breakdown-{by}-{key}-", row)
            )
    links = (await served.api(f"{report}/links"))["links"]
    assert len(links) == 2
    for link in links:
        assert len(assert_equal(on_page, f"link-{link['link_index']}-", link)) == 3
    filtered = await served.api(f"{report}/filtered")
    hits = {f"{r['kind']}-{r['reason']}": r["hits"] for r in filtered["filtered"]}
    assert hits == {"open-ua:http_library": 2, "click-ua:http_library": 1}
    totals = {"total": filtered["filtered_total"], "machine_opens": filtered["machine_opens"]}
    assert set(assert_equal(on_page, "filtered-", {**totals, **hits})) == {*totals, *hits}
    assert_equal(on_page, "machine-", filtered["machine_opens_by_reason"])


async def test_sign_in_and_the_main_navigation_work_from_the_keyboard(page: Any) -> None:
    await page.goto("/")
    field = page.get_by_label("API key", exact=True)
    await field.wait_for(state="visible")
    for _ in range(10):  # Tab from the top of the page reaches the field
        if await field.evaluate("(e) => e === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    else:
        pytest.fail("Tab never reached the API key field")
    await page.keyboard.type(dataset.ACME_KEY)
    await page.keyboard.press("Tab")  # to the sign-in button
    focused = await page.evaluate("document.activeElement.textContent")
    assert "Sign in" in focused
    await page.keyboard.press("Enter")
    await field.wait_for(state="detached")
    # The main navigation: Tab to the spring campaign's link, Enter opens its report.
    for _ in range(40):
        href = await page.evaluate("document.activeElement.getAttribute('href') || ''")
        if href.endswith(f"#/campaigns/{SPRING}"):
            break
        await page.keyboard.press("Tab")
    else:
        pytest.fail("Tab never reached the campaign's link")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("body[data-ready=report]")
    assert page.url.endswith(f"#/campaigns/{SPRING}")
    # Back through the main navigation: its "Campaigns" link, reached with Shift+Tab from the report.
    campaigns = page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns")
    for _ in range(30):
        await page.keyboard.press("Shift+Tab")
        if await campaigns.evaluate("(e) => e === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the main navigation")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("body[data-ready=campaigns]")
    assert await campaigns.get_attribute("aria-current") == "page"


async def test_every_view_fits_a_phone_without_scrolling_sideways(
    browser: Any, served: Served, screenshots: Path
) -> None:
    context = await browser.new_context(
        base_url=served.base, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        await sign_in(page)
        for view in VIEWS:
            await open_view(page, view)
            wide = await page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, f"{view} is {wide} px wide at 375"
            await page.screenshot(path=screenshots / f"{view}-phone.png", full_page=True)
    finally:
        await context.close()


async def test_the_message_and_recipient_views_show_the_apis_numbers(page: Any, served: Served) -> None:
    await sign_in(page)
    await open_view(page, "message")
    message = await served.api("/v1/messages/m-ann")
    seen = assert_equal(await numbers(page), "message-", message)
    assert {"opens", "machine_opens", "clicks"} <= set(seen)
    assert (message["opens"], message["machine_opens"], message["clicks"]) == (2, 1, 1)
    assert (message["opened"], message["open_implied"]) == (True, False)
    assert await page.get_by_test_id("message-opened").inner_text() == "yes"
    await open_view(page, "recipient")
    recipient = await served.api("/v1/recipients/ann@example.com")
    on_page = await numbers(page)
    assert assert_equal(on_page, "recipient-", recipient) == ["opens"]
    assert recipient["opens"] == 3
    for sent in recipient["messages"]:
        fields = assert_equal(on_page, f"recipient_message-{sent['message_id']}-", sent)
        assert fields == ["clicks", "opens"]
