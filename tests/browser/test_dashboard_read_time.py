"""Read time on the dashboard (issue 18), in Chromium against a served pixelpipe: the campaign report's
read-time numbers (read / skimmed / glanced / unknown, measured, the median) and the same per mail client are
exactly the API's JSON; the message timeline shows each timed open's read seconds and category as the
timeline's JSON says; a `read` event shows in the live feed after its open.

The data is the other browser tests' (`dataset.make`) and, for some of its opens, the read records the edge
publishes when a timed pixel's connection ends (`publish_encoded` with the open's key, on the process's
event loop): which opens were timed and how long each was held is chosen here, so the numbers are exact and
no test waits seconds for a held connection (the edge's own measuring is tested with the edge)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.reads import ReadEnd, ReadRecord, encode_read
from schemas.tokens import recipient_tag
from tests.browser import dataset
from tests.browser.conftest import Served, served_env
from tests.browser.reading import count_text, numbers
from tests.browser.signing_in import sign_in
from tests.integration.helpers import path_of, wait_for
from tests.serving import serving

pytestmark = pytest.mark.browser

SPRING = dataset.SPRING
CATEGORIES = ("read", "skimmed", "glanced", "unknown", "measured")
# Which of spring's opens were timed, by (message, client as the API names it), and how each ended: ann's two
# Apple Mail opens (9.5 s, 3 s), bob's iPhone open (1.2 s), bob's Gmail image-proxy open (sent whole: proxy),
# cat's Gmail prefetch (a machine open: unknown, whatever was held).
TIMED: dict[tuple[str, str], list[tuple[int, ReadEnd]]] = {
    ("m-ann", "human"): [(9_500, ReadEnd.CLOSED), (3_000, ReadEnd.CLOSED)],
    ("m-bob", "human"): [(1_200, ReadEnd.CLOSED), (0, ReadEnd.PROXY)],
    ("m-cat", "machine"): [(25_000, ReadEnd.CAP)],
}


def seconds_text(s: float | None) -> str:
    """As format.ts's `seconds` writes it: to a tenth, "6.2 s"."""
    return "—" if s is None else f"{s:.1f} s"


def _opens(components: Components, message_id: str, verdict: str) -> list[tuple[str, int, bool]]:
    """(hit id, received at ms, via proxy) of a spring message's stored opens of ``verdict``, oldest first."""
    store = components.store
    assert store is not None
    rows = store.query(
        f"""SELECT hit_id, toUnixTimestamp64Milli(received_at), via_proxy FROM {store.database}.events
            WHERE account = 'acme' AND campaign_id = {{c:String}} AND message_id = {{m:String}}
              AND kind = 'open' AND verdict = {{v:String}}
            ORDER BY received_at, hit_id LIMIT 1 BY hit_id""",
        {"c": SPRING, "m": message_id, "v": verdict},
    )
    return [(str(h), int(at), bool(proxy)) for h, at, proxy in rows]


def read_records(components: Components, secret: bytes) -> list[ReadRecord]:
    records = []
    for (message_id, verdict), held in TIMED.items():
        opens = _opens(components, message_id, verdict)
        if message_id == "m-bob":  # the iPhone open, then the proxy's
            opens.sort(key=lambda o: o[2])
        assert len(opens) == len(held), (message_id, opens)
        tag = recipient_tag(secret, "acme", f"{message_id.removeprefix('m-')}@example.com").hex()
        for (hit_id, at_ms, _), (read_ms, end) in zip(opens, held, strict=True):
            records.append(
                ReadRecord(
                    read_of=hit_id,
                    account="acme",
                    campaign_id=SPRING,
                    message_id=message_id,
                    recipient_tag=tag,
                    opened_at_ms=at_ms,
                    ended_at_ms=at_ms + read_ms + 30,
                    read_ms=read_ms,
                    end=end,
                )
            )
    return records


async def _publish(components: Components, records: Sequence[ReadRecord]) -> None:
    assert components.publisher is not None
    for record in records:
        components.publisher.publish_encoded(record.partition_key, encode_read(record))


def publish(components: Components, records: Sequence[ReadRecord]) -> None:
    """As the edge publishes them, on the process's event loop."""
    assert components.notifications is not None
    hub = components.notifications.hub
    assert hub is not None
    assert hub._task is not None  # started: its loop is the process's
    asyncio.run_coroutine_threadsafe(_publish(components, records), hub._task.get_loop()).result(10)


@pytest.fixture(scope="module")
def served_components(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path, dashboard_dist: Path
) -> Iterator[tuple[Served, Components]]:
    """`tests.browser.conftest.served`, with the read records of `TIMED` stored."""
    settings = settings_mod.load(served_env(tmp_path_factory.mktemp("data"), chdb_path, dashboard_dist))
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        data = dataset.make(client)
        publish(components, read_records(components, settings.keyring.signing_key[1]))
        wait_for(
            lambda: dataset.summary(client, SPRING).get("read_time"),
            lambda rt: rt is not None and rt["measured"] + rt["unknown"] == 5,
            30,
        )
        yield Served(base, client, data), components
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


@pytest.fixture(scope="module")
def served(served_components: tuple[Served, Components]) -> Served:
    return served_components[0]


def assert_read_time(on_page: dict[str, tuple[str, str]], prefix: str, read_time: dict[str, Any]) -> None:
    """The page's read-time numbers under ``prefix`` are ``read_time``'s, raw and as written."""
    for field in CATEGORIES:
        assert on_page[prefix + field] == (str(read_time[field]), count_text(read_time[field])), (
            prefix + field
        )
    median = read_time["median_seconds"]
    assert on_page[prefix + "median_seconds"] == (
        "" if median is None else str(median).removesuffix(".0"),
        seconds_text(median),
    ), prefix + "median_seconds"


async def test_the_reports_read_time_is_the_apis(page: Any, served: Served, screenshots: Path) -> None:
    await sign_in(page, path=f"/#/campaigns/{SPRING}")
    await page.wait_for_selector("body[data-ready=report]")
    card = page.get_by_test_id("read-time")
    await card.wait_for(state="visible")
    await card.screenshot(path=screenshots / "campaign-report-read-time.png")
    summary = await served.api(f"/v1/campaigns/{SPRING}/summary")
    read_time = summary["read_time"]
    # ann 9.5 s read and 3 s skimmed, bob 1.2 s glanced; bob's proxy open and cat's prefetch unknown
    assert read_time == {
        "read": 1,
        "skimmed": 1,
        "glanced": 1,
        "unknown": 2,
        "measured": 3,
        "median_seconds": 3.0,
    }
    on_page = await numbers(page)
    assert_read_time(on_page, "read_time-", read_time)
    rows = (await served.api(f"/v1/campaigns/{SPRING}/breakdown", by="client"))["rows"]
    timed = [r for r in rows if sum(r["read_time"][c] for c in CATEGORIES[:4])]
    assert len(timed) >= 2
    for row in timed:
        assert_read_time(on_page, f"read_time-client-{row['key'] or 'unknown'}-", row["read_time"])
    per_client = [t.removeprefix("read_time-client-") for t in on_page if t.startswith("read_time-client-")]
    shown = {t.rsplit("-", 1)[0] for t in per_client}
    assert shown == {r["key"] or "unknown" for r in timed}  # only the clients with timed opens
    # the newsletter has no timed open: no card
    await page.goto(f"/#/campaigns/{dataset.NEWSLETTER}")
    await page.wait_for_selector(f"h1:text-is('{dataset.NEWSLETTER}')")
    await page.wait_for_selector("body[data-ready=report]")
    assert await page.get_by_test_id("read-time").count() == 0


async def test_the_message_timeline_shows_each_opens_read_time(
    page: Any, served: Served, screenshots: Path
) -> None:
    await sign_in(page, path="/#/messages/m-ann")
    await page.wait_for_selector("body[data-ready=message]")
    await page.screenshot(path=screenshots / "message-read-time.png", full_page=True)
    timeline = (await served.api("/v1/messages/m-ann/timeline"))["timeline"]
    on_page = await numbers(page)
    timed = [(i, item) for i, item in enumerate(timeline) if item.get("read_category")]
    assert [(item["read_seconds"], item["read_category"]) for _, item in timed] == [
        (9.5, "read"),
        (3.0, "skimmed"),
    ]
    for i, item in timed:
        seconds, category = item["read_seconds"], item["read_category"]
        written = f"{seconds_text(seconds)}, {category}"
        assert on_page[f"timeline-{i}-read"] == (str(seconds).removesuffix(".0"), written)
    untimed = [i for i, item in enumerate(timeline) if not item.get("read_category")]
    assert untimed  # the machine open and the click
    assert all(f"timeline-{i}-read" not in on_page for i in untimed)


async def test_a_read_shows_in_the_live_feed_after_its_open(
    page: Any, served_components: tuple[Served, Components]
) -> None:
    served, components = served_components
    await sign_in(page, path=f"/#/campaigns/{SPRING}")
    await page.wait_for_selector("body[data-ready=report]")
    feed = page.get_by_test_id("live-feed")
    async with served.http() as edge:
        person = {"User-Agent": dataset.OUTLOOK, "X-Forwarded-For": "81.2.69.171"}
        r = await edge.get(path_of(served.data.pixel("m-dan")), headers=person)
        assert r.status_code == 200
    await (
        feed.locator("li[data-type=open]").filter(has_text="dan@example.com").first.wait_for(state="visible")
    )
    [(hit_id, at_ms, _)] = await asyncio.to_thread(_opens, components, "m-dan", "human")
    record = ReadRecord(
        read_of=hit_id,
        account="acme",
        campaign_id=SPRING,
        message_id="m-dan",
        recipient_tag="",
        opened_at_ms=at_ms,
        ended_at_ms=at_ms + 6_230,
        read_ms=6_200,
        end=ReadEnd.CLOSED,
    )
    await asyncio.to_thread(publish, components, [record])
    read = feed.locator("li[data-type=read]").filter(has_text="dan@example.com")
    await read.first.wait_for(state="visible")
    assert "6.2 s, skimmed" in await read.first.inner_text()
    # newest first: the read is above its open
    types = await feed.locator("li").evaluate_all("(items) => items.map((li) => li.dataset.type)")
    assert types.index("read") < types.index("open")


async def test_the_read_time_card_fits_a_phone(browser: Any, served: Served, screenshots: Path) -> None:
    context = await browser.new_context(
        base_url=served.base, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        await sign_in(page, path=f"/#/campaigns/{SPRING}")
        await page.wait_for_selector("body[data-ready=report]")
        card = page.get_by_test_id("read-time")
        await card.wait_for(state="visible")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        await card.screenshot(path=screenshots / "campaign-report-read-time-phone.png")
    finally:
        await context.close()
