"""`GET /v1/live` under the connection bounds (issue 14's header and idle timeouts, every role's server): an
SSE response is a request in progress for as long as it streams, so neither timeout may close it, however
long it stays silent between events. Served as `pixelpipe.cli` serves it: the real app, under the bounded
protocol of a process with an edge (`EdgeHttpProtocol`) and of an API-only one (`BoundedHttpProtocol`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from ingest.http_protocol import BoundedHttpProtocol, EdgeHttpProtocol, bounded
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.store import Store
from tests.integration.test_live_sse import ACME, data, hit, listening, register
from tests.serving import serving

TIMEOUT_MS = 200  # header and idle timeouts; the stream stays silent for many times this


@pytest.fixture(params=[EdgeHttpProtocol, BoundedHttpProtocol], ids=["serve", "api"])
def base(request: pytest.FixtureRequest, env: dict[str, str], store: Store) -> Iterator[str]:
    # `store` drops the test's database at the end
    settings = settings_mod.load(
        {**env, "PIXELPIPE_HEADER_TIMEOUT_MS": str(TIMEOUT_MS), "PIXELPIPE_IDLE_TIMEOUT_MS": str(TIMEOUT_MS)}
    )
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    protocol = bounded(request.param, settings.connection_bounds)
    with serving(app, http=protocol) as url:
        yield url


async def test_a_silent_live_stream_outlives_the_header_and_idle_timeouts(base: str) -> None:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        httpx.AsyncClient(base_url=base, timeout=10) as other,  # the stream keeps its connection
        listening(client, ACME) as acme,
    ):
        # No event and no heartbeat (every 15 s) for ten times both timeouts: a bounded server that took the
        # stream for an idle or unfinished connection would have closed it by now.
        await asyncio.sleep(10 * TIMEOUT_MS / 1000)
        sent = await register(other, "m-silent")
        await hit(other, sent["pixel_url"])
        event = await acme.next()
    assert (event.event, data(event)["message_id"]) == ("open", "m-silent")
