"""The campaign report's export buttons (issue 20) in Chromium: a format chosen, an export asked for, its
progress shown as the API gives it, then a download link whose file is the export the API wrote (every row of
the campaign, once). A module of its own: it adds export jobs to the account."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import dataset
from tests.browser.conftest import Served
from tests.browser.signing_in import sign_in

pytestmark = pytest.mark.browser


async def exported(page: Any, kind: str, button: str, fmt: str) -> tuple[Path, dict[str, Any]]:
    """Choose ``fmt``, press ``button``, wait for the job's link, download the file."""
    await page.locator("#export-format").select_option(fmt)
    await page.get_by_role("button", name=button, exact=True).click()
    await page.locator(f"[data-testid=export-{kind}][data-status=done]").wait_for(timeout=60_000)
    link = page.get_by_test_id(f"export-{kind}").get_by_role("link")
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    path = Path(await download.path())
    rows = int(await page.get_by_test_id(f"export-{kind}").get_attribute("data-rows"))
    return path, {"rows": rows, "text": await link.inner_text(), "name": download.suggested_filename}


async def test_export_buttons_show_the_job_and_download_its_file(page: Any, served: Served) -> None:
    await sign_in(page)
    await page.goto(f"/#/campaigns/{dataset.SPRING}")
    await page.wait_for_selector("body[data-ready=report]")

    path, shown = await exported(page, "events", "Export events", "jsonl")
    (job,) = [j for j in (await served.api("/v1/exports"))["exports"] if j["kind"] == "events"]
    assert job["status"] == "done"
    assert job["campaign_id"] == dataset.SPRING
    assert shown["rows"] == job["rows_written"] == job["rows_total"] > 0
    assert f"{job['rows_written']:,} rows" in shown["text"]
    assert shown["name"] == f"events-{dataset.SPRING}-{job['id']}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == job["rows_written"]
    assert {r["campaign_id"] for r in rows} == {dataset.SPRING}
    assert len({r["hit_id"] for r in rows}) == len(rows)  # each hit once
    assert {r["kind"] for r in rows} <= {"open", "click"}

    path, shown = await exported(page, "deliveries", "Export delivery events", "csv")
    with path.open(newline="") as f:
        table = list(csv.DictReader(f))
    deliveries = [j for j in (await served.api("/v1/exports"))["exports"] if j["kind"] == "deliveries"]
    assert len(table) == shown["rows"] == deliveries[0]["rows_written"]
    assert {r["campaign_id"] for r in table} <= {dataset.SPRING}


async def test_the_segments_page_exports_the_segment_shown(page: Any, served: Served) -> None:
    await sign_in(page)
    await page.goto("/#/segments")
    await page.wait_for_selector("body[data-ready=segments]")
    await page.get_by_role("button", name="Show recipients").click()  # no condition: every recipient
    await page.wait_for_selector("body[data-ready=segment-page]")
    await page.locator("#segment-export-format").select_option("csv")
    await page.get_by_role("button", name="Export segment members", exact=True).click()
    await page.locator("[data-testid=export-segment][data-status=done]").wait_for(timeout=60_000)
    link = page.get_by_test_id("export-segment").get_by_role("link")
    async with page.expect_download() as info:
        await link.click()
    path = Path(await (await info.value).path())
    text = await asyncio.to_thread(path.read_text)
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    async with served.http(headers=dataset.ACME) as client:
        r = await client.post("/v1/segments/query", json={"limit": 1000, "count": True})
    assert r.status_code == 200, r.text
    api = r.json()
    assert len(table) == api["count"] > 0
    by_tag = {row["recipient_tag"]: row for row in table}
    for member in api["recipients"]:
        row = by_tag[member["recipient_tag"]]
        assert row["recipient"] == member["recipient"]
        assert (row["status"], row["sends"], row["clicks"]) == (
            member["status"],
            str(member["sends"]),
            str(member["clicks"]),
        )
