"""The load generator: register messages through the API, drive pixel hits (and a few clicks) at the edge at a
fixed rate, and measure how long a hit takes to become visible in the API, and whether every hit was counted.

    pixelpipe loadgen --edge-url http://127.0.0.1:8000 --api-key KEY --rate 2000 --duration 30

**Open loop.** Hit *i* is due at ``start + i / rate`` whether or not earlier hits were answered, so a slow
edge shows up as latency and a backlog, never as a politely lower rate (no coordinated omission: response
times are measured from the time a hit was due, not from when a free connection sent it). ``max_lag_ms``
is the longest a due hit waited for a free connection (all of them busy: the edge is slow);
``schedule_lag_ms`` how late the generator itself was at putting a hit in line: a large one means the
numbers describe the generator, not the pipeline.

**Clients.** Hits go over a pool of persistent HTTP/1.1 connections written on bare asyncio protocols. An
httpx ``AsyncClient`` tops out near 400 requests/s on one core of the 2-core benchmark machine (measured),
a fifth of the 2k hits/s the end-to-end target needs, and would eat the CPU the pipeline is measured on. An
answer's callback sends the connection's next due hit at once, with no task or future per hit: 27 µs of
CPU per hit at 10k/s, against 32-36 µs with a task per connection (BENCHMARKS.md). The API (registration in
batches of up to 1000, sampling, the final count) is low-rate and uses httpx.

**Visibility, sampled.** A small pool of messages receives only sampled hits (every ``sample_every``-th hit,
when a pool message is free), at most one in flight each: after the edge answers, ``GET /v1/messages/{id}``
is polled every ``poll_interval_s`` until its ``opens`` reaches the expected count. The latency is the time
from sending the hit to the first poll that sees it: an upper bound, with the poll interval as resolution.
The pool is small (2) on purpose: each poll is three ClickHouse queries, about 12 ms of CPU in the process
being measured, so the first poll of a sample also waits for most of the fastest latency seen so far.

**Zero loss.** Every hit is a person's (a desktop browser's user agent) open of one fresh campaign; clicks
always follow the first link of their message (one link, so never a click burst). So at the end the
campaign's ``opens`` must equal the pixels answered 200, and ``clicks`` the clicks answered 302 — counting
with them the hits the pipeline filed as ``replay_flood`` (more than 10 hits of one pixel or link from one
network in a minute: a load of a few messages from one address is that), which are stored and reported in
``filtered`` instead; the run reports how many there were.

Owns nothing of the product: it is a client of the public HTTP contract and never imports the pipeline.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

BROWSER: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
LANDING: Final = "https://example.com/landing"
_REGISTER_BATCH: Final = 1000  # messages per POST /v1/messages/batch, its limit
_REGISTER_CONCURRENCY: Final = 8  # batches in flight
_SAMPLE_TIMEOUT_S: Final = 30.0
_TICK_S: Final = 0.002
_RECONNECT_S: Final = 0.05  # a connection that cannot connect tries again then, or at once for a due hit


class LoadgenError(RuntimeError):
    """The target cannot be driven at all (registration refused, edge unreachable)."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run did and saw. Times in seconds unless the name says ``_ms``."""

    rate: float  # asked for, hits/s
    duration_s: float
    sent: int  # requests written (pixels and clicks)
    opens_sent: int
    clicks_sent: int
    answered: int  # pixels answered 200
    clicks_answered: int  # clicks answered 302
    statuses: dict[str, int]  # status -> count; "0" is a connection error or timeout
    achieved_rate: float  # answered requests / wall time of the sending phase
    counted: int  # the campaign's opens at the end, and its open hits filtered as replay floods
    counted_clicks: int
    zero_loss: bool  # counted == answered and counted_clicks == clicks_answered
    settle_s: float | None  # last answer -> every hit counted (None: not within the settle timeout)
    samples: int
    sample_timeouts: int
    visible_p50_s: float | None
    visible_p99_s: float | None
    visible_max_s: float | None
    response_p50_ms: float | None  # from the time a hit was due to its answer
    response_p99_ms: float | None
    max_lag_ms: float  # longest wait of a due hit for a free connection
    schedule_lag_ms: float  # how late the generator itself was (a busy CPU, not a slow edge)
    replay_floods: int  # of `counted` and `counted_clicks`: hits filtered as one client replaying a URL
    campaign_id: str
    messages: int
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _SampleMessage:
    message_id: str
    path: bytes
    expected: int = 0


@dataclass(slots=True)
class _Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    opens_sent: int = 0
    clicks_sent: int = 0
    response_ms: array.array[float] = field(default_factory=lambda: array.array("d"))
    visible_s: list[float] = field(default_factory=list)
    sample_timeouts: int = 0
    max_lag_s: float = 0.0
    schedule_lag_s: float = 0.0
    done: int = 0
    last_answer: float = 0.0


class _Lane(asyncio.Protocol):
    """One keep-alive connection of the pool, at most one request in flight. Callbacks all the way: the
    answer's `data_received` hands the lane the next due hit at once, so a hit costs no task, future or
    queue hand-off (those cost the generator more CPU per hit than the edge spends answering it)."""

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.hit: _InFlight | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection: always a Transport

    def send(self, hit: _InFlight, request: bytes) -> None:
        assert self.transport is not None  # noqa: S101 - only live lanes are handed hits
        self.hit = hit
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buffer += data
            return
        try:
            status, length, close = _parse_head(data[:end])
        except ValueError:
            self.abort()
            return
        if len(data) < end + 4 + length:
            self.buffer += data
            return
        self.buffer += data[end + 4 + length :]  # nothing, unless the server answers what was not asked
        if close:
            self.abort(status)
        else:
            self._finish(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._finish(0)
        if not self.closed.done():
            self.closed.set_result(None)
        self.driver.lost(self)

    def abort(self, status: int = 0) -> None:
        """Drop the connection; a request in flight ends with ``status`` (0: failed), and the lane is not
        handed another (`connection_lost` follows)."""
        transport, self.transport = self.transport, None
        self._finish(status)
        if transport is not None:
            transport.abort()

    def _finish(self, status: int) -> None:
        hit, self.hit = self.hit, None
        if hit is not None:
            self.driver.answered(self if self.transport is not None else None, hit, status)


@dataclass(slots=True)
class _InFlight:
    due: float  # when the hit was due (the schedule's time, not when it was sent)
    sent_at: float
    sample: _SampleMessage | None


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, content length and whether the server closes, from a response head. The edge always sends
    a Content-Length; anything chunked is refused rather than misread. Searched in the lowered head rather
    than split into lines: once per hit, the split cost the generator more than the rest of the parsing."""
    status_line = head.split(b" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP status line: {head[:40]!r}")
    status = int(status_line[1])
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        raise ValueError("chunked answers are not expected from the edge")
    length = 0
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at + 2)
        length = int(lower[at + 17 : end if end >= 0 else len(lower)])
    at = lower.find(b"\r\nconnection:")
    close = False
    if at >= 0:
        end = lower.find(b"\r\n", at + 2)
        close = lower[at + 14 : end if end >= 0 else len(lower)].strip() == b"close"
    return status, length, close


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def _path(url: str) -> bytes:
    parts = urlsplit(url)
    return (parts.path + (f"?{parts.query}" if parts.query else "")).encode("ascii")


@dataclass(slots=True)
class _Plan:
    """Which request hit ``i`` is: a sampled pixel, a click, or a pixel of a normal message."""

    normal: list[bytes]  # pixel paths
    clicks: list[bytes]  # click paths, one per normal message
    samples: list[_SampleMessage]
    free: list[_SampleMessage]
    sample_every: int
    click_every: int  # 0: no clicks

    def pick(self, i: int) -> tuple[bytes, str, _SampleMessage | None]:
        if self.sample_every and i % self.sample_every == 0 and self.free:
            sample = self.free.pop()
            return sample.path, "open", sample
        if self.click_every and i % self.click_every == self.click_every // 2:
            return self.clicks[(i // self.click_every) % len(self.clicks)], "click", None
        return self.normal[i % len(self.normal)], "open", None


async def _register(
    api: httpx.AsyncClient, campaign_id: str, count: int, prefix: str, progress: Progress | None
) -> list[dict[str, Any]]:
    """Register ``count`` messages of the campaign through ``POST /v1/messages/batch``, up to
    ``_REGISTER_BATCH`` per request (each request is one insert into the store), a few requests at a time."""
    gate = asyncio.Semaphore(_REGISTER_CONCURRENCY)
    task = progress.add_task(f"register {prefix}", total=count) if progress else None

    async def chunk(first: int) -> list[dict[str, Any]]:
        numbers = range(first, min(first + _REGISTER_BATCH, count))
        async with gate:
            r = await api.post(
                "/v1/messages/batch",
                json={
                    "messages": [
                        {
                            "campaign_id": campaign_id,
                            "recipient": f"{prefix}{n}@loadgen.example.com",
                            "message_id": f"{campaign_id}-{prefix}{n}",
                            "links": [LANDING],
                        }
                        for n in numbers
                    ]
                },
            )
        if r.status_code != 201:
            raise LoadgenError(f"POST /v1/messages/batch answered {r.status_code}: {r.text[:200]}")
        if progress is not None and task is not None:
            progress.advance(task, len(numbers))
        body: list[dict[str, Any]] = r.json()["messages"]
        return body

    chunks = await asyncio.gather(*(chunk(first) for first in range(0, count, _REGISTER_BATCH)))
    return [message for answers in chunks for message in answers]


async def _opens(api: httpx.AsyncClient, message_id: str) -> int | None:
    try:
        r = await api.get(f"/v1/messages/{message_id}")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    body = r.json()  # a sample message has only pixel hits: its replay floods are opens
    return int(body["opens"]) + int(body["filtered"].get("replay_flood", 0))


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to drive, where, and how to sample it (see `run_loadgen`)."""

    edge_url: str
    api_url: str
    api_key: str
    rate: float
    duration_s: float
    messages: int
    campaign_id: str
    connections: int = 64
    sample_every: int = 100
    sample_messages: int = 2
    poll_interval_s: float = 0.1
    click_per_mille: int = 10
    forwarded_for: Sequence[str] = ()
    settle_timeout_s: float = 60.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0 or self.messages <= 0 or self.connections <= 0:
            raise LoadgenError("rate, duration, messages and connections must be positive")
        if not 0 <= self.click_per_mille <= 500:
            raise LoadgenError("click_per_mille must be in 0..500")
        edge = urlsplit(self.edge_url)
        if edge.scheme != "http" or not edge.hostname:
            raise LoadgenError(f"the edge URL must be http://host:port (got {self.edge_url!r})")

    @property
    def total(self) -> int:
        return max(1, round(self.rate * self.duration_s))


class _Driver:
    """One run: the schedule, the pool of connections, the sample watchers and the progress display.

    The schedule puts due hits in line (`due`); a due hit goes out on an idle connection at once, or, when
    every connection is busy, on the first one whose answer arrives (`answered`). A connection that fails
    is replaced by its keeper task; while it cannot connect, each due hit it takes fails with status 0."""

    def __init__(
        self, spec: LoadSpec, api: httpx.AsyncClient, plan: _Plan, progress: Progress | None
    ) -> None:
        self.spec, self.api, self.plan, self.progress = spec, api, plan, progress
        edge = urlsplit(spec.edge_url)
        self.host, self.port = edge.hostname or "127.0.0.1", edge.port or 80
        head = b" HTTP/1.1\r\nHost: " + edge.netloc.encode("ascii") + b"\r\nUser-Agent: " + BROWSER.encode()
        self.heads = [
            head + b"\r\nX-Forwarded-For: " + ip.encode() + b"\r\n\r\n" for ip in spec.forwarded_for
        ] or [head + b"\r\n\r\n"]
        self.tally = _Tally()
        self.due: collections.deque[tuple[float, int]] = collections.deque()
        self.idle: list[_Lane] = []
        self.lanes: set[_Lane] = set()
        self.scheduled = False  # every hit is in line (or was sent)
        self.finished: asyncio.Future[None] | None = None  # every hit answered or failed
        self.watchers: set[asyncio.Task[None]] = set()

    async def run(self) -> float:
        """Send every hit on schedule and wait for the sampled ones; return the seconds spent sending."""
        self.finished = asyncio.get_running_loop().create_future()
        helpers = [asyncio.create_task(self._show()), asyncio.create_task(self._watchdog())]
        start = time.monotonic()
        keepers = [asyncio.create_task(self._keep_lane()) for _ in range(self.spec.connections)]
        await self._schedule(start)
        await self.finished
        sending_s = time.monotonic() - start
        for lane in list(self.lanes):
            lane.abort()
        await asyncio.gather(*keepers)
        if self.watchers:
            await asyncio.wait(set(self.watchers), timeout=_SAMPLE_TIMEOUT_S)
        for helper in helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        return sending_s

    async def _keep_lane(self) -> None:
        """One connection of the pool: connect, serve hits until the connection ends, reconnect."""
        loop = asyncio.get_running_loop()
        while self.finished is not None and not self.finished.done():
            try:
                _, lane = await loop.create_connection(lambda: _Lane(self), self.host, self.port)
            except OSError:
                if self.due:  # no connection for it: the hit fails, as the edge being away would fail it
                    self._fail(self.due.popleft())
                else:
                    await asyncio.sleep(_RECONNECT_S)
                continue
            if self.finished.done():  # the run ended while this one was connecting
                lane.abort()
                return
            self.lanes.add(lane)
            self._ready(lane)
            await lane.closed
            self.lanes.discard(lane)

    async def _watchdog(self) -> None:
        """Abort requests older than the request timeout (their hit is then counted as status 0)."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for lane in list(self.lanes):
                if lane.hit is not None and now - lane.hit.sent_at > self.spec.request_timeout_s:
                    lane.abort()

    async def _schedule(self, start: float) -> None:
        rate, total, sent = self.spec.rate, self.spec.total, 0
        while sent < total:
            now = time.monotonic()
            due_now = min(total, int((now - start) * rate) + 1)
            if sent < due_now:
                self.tally.schedule_lag_s = max(self.tally.schedule_lag_s, now - (start + sent / rate))
            while sent < due_now:
                self.due.append((start + sent / rate, sent))
                sent += 1
            while self.due and self.idle:
                self._send(self.idle.pop(), self.due.popleft())
            # Wake when the next hit is due, but not more often than every 2 ms: at high rates one wake-up
            # sends a handful, since a loop turn per hit costs the generator more CPU than the hit itself.
            await asyncio.sleep(max(_TICK_S, start + sent / rate - time.monotonic()))
        self.scheduled = True
        self._check_finished()

    def _take(self, i: int) -> tuple[bytes, _SampleMessage | None]:
        """Hit ``i``'s path and sample, counted as sent."""
        path, kind, sample = self.plan.pick(i)
        if kind == "click":
            self.tally.clicks_sent += 1
        else:
            self.tally.opens_sent += 1
        return path, sample

    def _send(self, lane: _Lane, item: tuple[float, int]) -> None:
        due, i = item
        now = time.monotonic()
        self.tally.max_lag_s = max(self.tally.max_lag_s, now - due)
        path, sample = self._take(i)
        lane.send(_InFlight(due, now, sample), b"GET " + path + self.heads[i % len(self.heads)])

    def _ready(self, lane: _Lane) -> None:
        """A live lane with nothing in flight: the next due hit, or the idle pool."""
        if self.due:
            self._send(lane, self.due.popleft())
        else:
            self.idle.append(lane)

    def _fail(self, item: tuple[float, int]) -> None:
        due, i = item
        _, sample = self._take(i)
        self.answered(None, _InFlight(due, time.monotonic(), sample), 0)

    def lost(self, lane: _Lane) -> None:
        """A lane's connection ended (its keeper reconnects)."""
        with contextlib.suppress(ValueError):
            self.idle.remove(lane)

    def answered(self, lane: _Lane | None, hit: _InFlight, status: int) -> None:
        """A hit's answer (status 0: failed). ``lane``: the connection it came on, if still usable."""
        now = time.monotonic()
        tally = self.tally
        tally.statuses[status] += 1
        tally.response_ms.append((now - hit.due) * 1000)
        tally.done += 1
        tally.last_answer = now
        sample = hit.sample
        if sample is not None:
            if status != 200:
                self.plan.free.append(sample)
            else:
                sample.expected += 1
                task = asyncio.create_task(self._watch_sample(sample, hit.sent_at))
                self.watchers.add(task)
                task.add_done_callback(self.watchers.discard)
        if lane is not None:
            self._ready(lane)
        self._check_finished()

    def _check_finished(self) -> None:
        finished = self.finished
        if (
            finished is not None
            and not finished.done()
            and self.scheduled
            and self.tally.done >= self.spec.total
        ):
            finished.set_result(None)

    async def _watch_sample(self, sample: _SampleMessage, sent_at: float) -> None:
        """Poll the sample's message until its opens reach the expected count; free it for the next sample.

        Each poll costs the process under test about three ClickHouse queries, so the first one waits for
        most of the fastest latency seen so far instead of polling the certain misses before it."""
        deadline = sent_at + _SAMPLE_TIMEOUT_S
        fastest = min(self.tally.visible_s, default=0.0)
        try:
            await asyncio.sleep(max(0.0, 0.8 * fastest - self.spec.poll_interval_s))
            while time.monotonic() < deadline:
                await asyncio.sleep(self.spec.poll_interval_s)
                opens = await _opens(self.api, sample.message_id)
                if opens is not None and opens >= sample.expected:
                    self.tally.visible_s.append(time.monotonic() - sent_at)
                    return
            self.tally.sample_timeouts += 1
        finally:
            self.plan.free.append(sample)

    async def _show(self) -> None:
        if self.progress is None:
            return
        task = self.progress.add_task("hits", total=self.spec.total)
        try:
            while True:
                self.progress.update(
                    task,
                    completed=self.tally.done,
                    description=(
                        f"hits  {len(self.tally.visible_s)} samples  lag {self.tally.max_lag_s * 1000:.0f} ms"
                    ),
                )
                await asyncio.sleep(0.25)
        finally:
            self.progress.update(task, completed=self.tally.done)


async def _campaign_counts(api: httpx.AsyncClient, campaign_id: str) -> tuple[int, int, int] | None:
    """The campaign's opens and clicks, each with its hits filtered as replay floods, and those floods."""
    try:
        r = await api.get(f"/v1/campaigns/{campaign_id}/stats")
        f = await api.get(f"/v1/campaigns/{campaign_id}/filtered")
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or f.status_code != 200:
        return None
    body = r.json()
    floods = Counter(
        {x["kind"]: int(x["hits"]) for x in f.json()["filtered"] if x["reason"] == "replay_flood"}
    )
    return int(body["opens"]) + floods["open"], int(body["clicks"]) + floods["click"], floods.total()


async def _settle(
    api: httpx.AsyncClient, spec: LoadSpec, expected: tuple[int, int], last_answer: float
) -> tuple[tuple[int, int, int], float | None]:
    """Wait until the campaign counts every answered hit (``expected``: opens, clicks); then look once more,
    a second later, for double counts. Returns the final opens, clicks and replay floods (`_campaign_counts`),
    and the seconds from the last answer until all were counted (None if not within the settle timeout)."""
    deadline = time.monotonic() + spec.settle_timeout_s
    counts: tuple[int, int, int] | None = None
    settle_s: float | None = None
    while time.monotonic() < deadline:
        counts = await _campaign_counts(api, spec.campaign_id)
        if counts is not None and counts[0] >= expected[0] and counts[1] >= expected[1]:
            settle_s = max(0.0, time.monotonic() - last_answer)
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything that arrives now would be a double count
    counts = await _campaign_counts(api, spec.campaign_id) or counts or (0, 0, 0)
    return counts, settle_s


async def _run(spec: LoadSpec, progress: Progress | None) -> LoadResult:
    headers = {"Authorization": f"Bearer {spec.api_key}"}
    async with httpx.AsyncClient(base_url=spec.api_url, headers=headers, timeout=30) as api:
        normal = await _register(api, spec.campaign_id, spec.messages, "m", progress)
        sampled = await _register(api, spec.campaign_id, spec.sample_messages, "s", progress)
        samples = [_SampleMessage(m["message_id"], _path(m["pixel_url"])) for m in sampled]
        plan = _Plan(
            normal=[_path(m["pixel_url"]) for m in normal],
            clicks=[_path(m["links"][LANDING]) for m in normal],
            samples=samples,
            free=list(samples),
            sample_every=spec.sample_every,
            click_every=1000 // spec.click_per_mille if spec.click_per_mille > 0 else 0,
        )
        driver = _Driver(spec, api, plan, progress)
        sending_s = await driver.run()
        tally = driver.tally
        answered, clicks_answered = tally.statuses.get(200, 0), tally.statuses.get(302, 0)
        # Sampled hits are opens of the same campaign, so they are part of `answered` and of the count.
        (counted, counted_clicks, floods), settle_s = await _settle(
            api, spec, (answered, clicks_answered), tally.last_answer
        )
    return LoadResult(
        rate=spec.rate,
        duration_s=spec.duration_s,
        sent=tally.opens_sent + tally.clicks_sent,
        opens_sent=tally.opens_sent,
        clicks_sent=tally.clicks_sent,
        answered=answered,
        clicks_answered=clicks_answered,
        statuses={str(k): v for k, v in sorted(tally.statuses.items())},
        achieved_rate=(answered + clicks_answered) / sending_s if sending_s else 0.0,
        counted=counted,
        counted_clicks=counted_clicks,
        zero_loss=counted == answered and counted_clicks == clicks_answered,
        replay_floods=floods,
        settle_s=settle_s,
        samples=len(tally.visible_s),
        sample_timeouts=tally.sample_timeouts,
        visible_p50_s=_percentile(tally.visible_s, 50),
        visible_p99_s=_percentile(tally.visible_s, 99),
        visible_max_s=max(tally.visible_s) if tally.visible_s else None,
        response_p50_ms=_percentile(tally.response_ms, 50),
        response_p99_ms=_percentile(tally.response_ms, 99),
        max_lag_ms=tally.max_lag_s * 1000,
        schedule_lag_ms=tally.schedule_lag_s * 1000,
        campaign_id=spec.campaign_id,
        messages=spec.messages,
        connections=spec.connections,
    )


def run_loadgen(  # noqa: PLR0917 - the command's six essentials, in the order the flags read
    edge_url: str,
    api_url: str,
    api_key: str,
    rate: float,
    duration_s: float,
    messages: int,
    *,
    campaign_id: str | None = None,
    connections: int = 64,
    sample_every: int = 100,
    sample_messages: int = 2,
    poll_interval_s: float = 0.1,
    click_per_mille: int = 10,
    forwarded_for: Sequence[str] = (),
    settle_timeout_s: float = 60.0,
    request_timeout_s: float = 10.0,
    show_progress: bool = True,
) -> LoadResult:
    """Register ``messages`` messages (plus ``sample_messages`` for sampling) in a fresh campaign, send
    ``rate * duration_s`` hits to the edge at a fixed rate, and check that the API counts each one once.

    ``forwarded_for``: client addresses sent round-robin in ``X-Forwarded-For`` (the edge believes them only
    from a trusted proxy; set ``PIXELPIPE_TRUSTED_PROXIES`` to the generator's address)."""
    spec = LoadSpec(
        edge_url=edge_url,
        api_url=api_url,
        api_key=api_key,
        rate=rate,
        duration_s=duration_s,
        messages=messages,
        campaign_id=campaign_id or f"loadgen-{secrets.token_hex(4)}",
        connections=connections,
        sample_every=sample_every,
        sample_messages=sample_messages,
        poll_interval_s=poll_interval_s,
        click_per_mille=click_per_mille,
        forwarded_for=tuple(forwarded_for),
        settle_timeout_s=settle_timeout_s,
        request_timeout_s=request_timeout_s,
    )
    if not show_progress:
        return _event_loop_run(_run(spec, None))
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        return _event_loop_run(_run(spec, progress))


def _event_loop_run(main: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """uvloop when it is there: the generator's own overhead is part of what it must keep small."""
    try:
        import uvloop  # noqa: PLC0415 - optional, not on Windows
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def summary(r: LoadResult) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    lines = [
        f"campaign {r.campaign_id}: asked {r.rate:g}/s for {r.duration_s:g}s, {r.connections} connections",
        f"  sent {r.sent} ({r.opens_sent} pixels, {r.clicks_sent} clicks), achieved {r.achieved_rate:.0f}/s, "
        f"statuses {r.statuses}",
        f"  answered: response p50 {r.response_p50_ms or 0:.1f} ms, p99 {r.response_p99_ms or 0:.1f} ms; "
        f"longest wait for a connection {r.max_lag_ms:.0f} ms, generator late by {r.schedule_lag_ms:.0f} ms",
        f"  visible in the API ({r.samples} samples, {r.sample_timeouts} timed out): "
        f"p50 {ms(r.visible_p50_s)}, p99 {ms(r.visible_p99_s)}, max {ms(r.visible_max_s)}",
        f"  counted opens {r.counted} / answered {r.answered}, clicks {r.counted_clicks} / "
        f"{r.clicks_answered}: {'zero loss' if r.zero_loss else 'MISMATCH'}"
        + (f", all counted {r.settle_s:.1f}s after the last answer" if r.settle_s is not None else "")
        + (f" ({r.replay_floods} of them filtered as replay floods)" if r.replay_floods else ""),
    ]
    return "\n".join(lines)


def loadgen_argparser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``loadgen`` subcommand to the ``pixelpipe`` command's subparsers."""
    text = "drive pixel hits at a fixed rate and measure hit-to-visible latency and loss"
    cmd: argparse.ArgumentParser = subparsers.add_parser("loadgen", help=text, description=__doc__)
    cmd.formatter_class = argparse.RawDescriptionHelpFormatter
    cmd.add_argument("--edge-url", default="http://127.0.0.1:8000", help="where pixels and clicks go")
    cmd.add_argument("--api-url", default=None, help="the stats API (default: the edge URL)")
    cmd.add_argument(
        "--api-key",
        default=os.environ.get("PIXELPIPE_LOADGEN_API_KEY"),
        help="bearer key of the API (default: $PIXELPIPE_LOADGEN_API_KEY)",
    )
    cmd.add_argument("--rate", type=float, default=200.0, help="hits per second")
    cmd.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    cmd.add_argument("--messages", type=int, default=200, help="messages to spread hits over")
    cmd.add_argument("--campaign", default=None, help="campaign id (default: a fresh one)")
    cmd.add_argument("--connections", type=int, default=64)
    cmd.add_argument("--sample-every", type=int, default=100, help="sample every Nth hit for visibility")
    cmd.add_argument("--sample-messages", type=int, default=2, help="samples in flight at most")
    cmd.add_argument("--poll-interval", type=float, default=0.1, help="seconds between visibility polls")
    cmd.add_argument("--click-per-mille", type=int, default=10, help="clicks per 1000 hits")
    cmd.add_argument("--forwarded-for", default="", help="comma-separated client addresses (X-Forwarded-For)")
    cmd.add_argument("--settle-timeout", type=float, default=60.0, help="seconds to wait for the counts")
    cmd.add_argument("--json", type=Path, default=None, help="also write the result here")
    cmd.add_argument("--no-progress", action="store_true")
    return cmd


def loadgen_main(args: argparse.Namespace) -> int:
    """Run the ``loadgen`` subcommand; exit 0 when every answered hit was counted exactly once."""
    if not args.api_key:
        print("pixelpipe loadgen: --api-key (or PIXELPIPE_LOADGEN_API_KEY) is required", file=sys.stderr)
        return 2
    try:
        result = run_loadgen(
            args.edge_url,
            args.api_url or args.edge_url,
            args.api_key,
            args.rate,
            args.duration,
            args.messages,
            campaign_id=args.campaign,
            connections=args.connections,
            sample_every=args.sample_every,
            sample_messages=args.sample_messages,
            poll_interval_s=args.poll_interval,
            click_per_mille=args.click_per_mille,
            forwarded_for=[ip.strip() for ip in args.forwarded_for.split(",") if ip.strip()],
            settle_timeout_s=args.settle_timeout,
            show_progress=not args.no_progress,
        )
    except (LoadgenError, httpx.HTTPError) as exc:
        print(f"pixelpipe loadgen: {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0 if result.zero_loss else 1
