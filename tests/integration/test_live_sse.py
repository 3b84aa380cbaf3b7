"""`GET /v1/live` with a real SSE client (httpx-sse) against the whole pipeline over real HTTP: opens and
clicks as they are counted, resume from ``Last-Event-ID`` with exactly what was missed, accounts apart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.integration.helpers import BROWSER, RESIDENTIAL, path_of
from tests.integration.test_webhooks_http import Running, pixelpipe

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}
NOTICE_EVENTS = {"open", "click", "machine_open", "gap"}


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[Running]:
    with pixelpipe(env, heartbeat_s=0.3) as p:
        yield p


class Listener:
    """One SSE connection read in the background; notice events (not comments or retry hints) queue up."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.status = 0
        self.content_type = ""

    async def run(self, client: httpx.AsyncClient, headers: dict[str, str], url: str = "/v1/live") -> None:
        async with aconnect_sse(client, "GET", url, headers=headers) as source:
            self.status = source.response.status_code
            self.content_type = source.response.headers["content-type"]
            self.connected.set()
            async for sse in source.aiter_sse():
                if sse.event in NOTICE_EVENTS:
                    await self.events.put(sse)

    async def next(self, timeout_s: float = 30) -> ServerSentEvent:
        return await asyncio.wait_for(self.events.get(), timeout_s)


@contextlib.asynccontextmanager
async def listening(
    client: httpx.AsyncClient, headers: dict[str, str], url: str = "/v1/live"
) -> AsyncIterator[Listener]:
    listener = Listener()
    task = asyncio.create_task(listener.run(client, headers, url))
    try:
        await asyncio.wait_for(listener.connected.wait(), 5)
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def register(
    client: httpx.AsyncClient, message_id: str, headers: dict[str, str] = ACME
) -> dict[str, Any]:
    body = {"campaign_id": "live", "recipient": "ann@example.com", "message_id": message_id}
    r = await client.post("/v1/messages", json={**body, "links": ["https://example.com/a"]}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def hit(client: httpx.AsyncClient, url: str, *, ua: str = BROWSER, ip: str = RESIDENTIAL) -> None:
    r = await client.get(path_of(url), headers={"User-Agent": ua, "X-Forwarded-For": ip})
    assert r.status_code == (302 if path_of(url).startswith("/c/") else 200)  # a click redirects


async def counted(p: Running, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while len(p.counted) < n:
        assert time.monotonic() < deadline, f"{len(p.counted)} of {n} notices counted"
        await asyncio.sleep(0.02)


def data(sse: ServerSentEvent) -> dict[str, Any]:
    return dict(orjson.loads(sse.data))


async def test_live_shows_counted_opens_and_clicks_resumes_exactly_and_keeps_accounts_apart(
    running: Running,
) -> None:
    p = running
    async with httpx.AsyncClient(base_url=p.base, timeout=10) as client:
        sent = await register(client, "m-live")
        other = await register(client, "m-globex", headers=GLOBEX)
        click_url = sent["links"]["https://example.com/a"]
        async with listening(client, GLOBEX) as globex:
            async with listening(client, ACME) as acme:
                assert acme.status == 200
                assert acme.content_type.startswith("text/event-stream")
                await hit(client, sent["pixel_url"])
                first = await acme.next()  # how soon: bench.notice_latency, not a test
                await hit(
                    client, sent["pixel_url"], ua="Mozilla/5.0", ip="17.58.63.200"
                )  # machine: not asked
                await hit(client, sent["pixel_url"], ua="python-requests/2.31")  # bot: never
                await hit(client, sent["pixel_url"])
                await hit(client, click_url)
                seen = [first, await acme.next(), await acme.next()]
            assert [s.event for s in seen] == ["open", "open", "click"]
            assert [data(s)["message_id"] for s in seen] == ["m-live"] * 3
            assert [data(s)["first"] for s in seen] == [True, False, False]
            assert data(seen[0])["recipient"] == "ann@example.com"
            assert data(seen[2])["url"] == "https://example.com/a"
            sequence = [int(s.id.rpartition("-")[2]) for s in seen]
            assert sequence == sorted(sequence)
            assert len({s.id.partition("-")[0] for s in seen}) == 1
            await counted(p, 4)  # the test's own sink comes after the live feed's
            assert [data(s)["id"] for s in seen] == [n.id for n in p.counted if n.type != "machine_open"]

            # Disconnected: three more are counted meanwhile (and a machine open, not asked for).
            await hit(client, sent["pixel_url"])
            await hit(client, sent["pixel_url"], ua="Mozilla/5.0", ip="17.58.63.200")
            await hit(client, click_url)
            await hit(client, sent["pixel_url"])
            await counted(p, 8)
            missed = [n for n in p.counted[4:] if n.type != "machine_open"]
            assert len(missed) == 3

            resume = {**ACME, "Last-Event-ID": seen[-1].id}
            async with listening(client, resume) as again:
                replayed = [await again.next() for _ in range(3)]
                assert [data(s)["id"] for s in replayed] == [n.id for n in missed]
                assert [s.event for s in replayed] == [n.type for n in missed]  # as counted: clicks are held
                await hit(client, sent["pixel_url"])
                live = await again.next()
                await counted(p, 9)
                assert data(live)["id"] == p.counted[8].id  # the next one is new: nothing twice

            # With the machine opens asked for, a resume from the start of this run has them too.
            start = f"{seen[0].id.partition('-')[0]}-0"
            url = "/v1/live?include_machine=true"
            async with listening(client, {**ACME, "Last-Event-ID": start}, url) as everything:
                every = [await everything.next() for _ in range(len(p.counted))]
                assert [data(s)["id"] for s in every] == [n.id for n in p.counted]
                assert [s.event for s in every].count("machine_open") == 2

            # globex heard nothing of acme: the first thing it hears is its own open.
            assert globex.events.empty()
            await hit(client, other["pixel_url"])
            own = await globex.next()
            assert data(own)["message_id"] == "m-globex"
            assert data(own)["account"] == "globex"


async def test_a_resume_this_process_cannot_prove_complete_starts_with_a_gap(running: Running) -> None:
    p = running
    async with httpx.AsyncClient(base_url=p.base, timeout=10) as client:
        sent = await register(client, "m-gap")
        await hit(client, sent["pixel_url"])
        await counted(p, 1)
        async with listening(client, {**ACME, "Last-Event-ID": "1-5"}) as resumed:  # an earlier run's id
            gap = await resumed.next()
            assert gap.event == "gap"
            assert "restart" in data(gap)["reason"]
            kept = await resumed.next()
            assert data(kept)["id"] == p.counted[0].id


async def test_live_needs_a_key_and_beats_while_quiet(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.base, timeout=10) as client:
        assert (await client.get("/v1/live")).status_code == 401
        assert (await client.get("/v1/live", headers={"Authorization": "Bearer nope"})).status_code == 401
        lines: list[str] = []
        async with client.stream("GET", "/v1/live", headers=ACME) as response:
            assert response.headers["cache-control"] == "no-store"
            async for line in response.aiter_lines():
                lines.append(line)
                if line == ": keepalive":
                    break
        assert lines[:2] == [": connected", "retry: 2000"]
