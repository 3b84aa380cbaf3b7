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

**Traffic a person could have made, at any rate.** The pipeline files every counted hit of one message's
pixel (or one link) from one client network (/24, /48) beyond 10 within 60 s as ``bot``/``replay_flood``
(`processors.flood`): a few hundred messages driven at 10k/s from one or two addresses are a flood, and a
filtered hit costs the pipeline less than a person's (no notice, no webhook), so such a run would measure
the wrong thing. So hits are spread over ``messages`` messages and ``width`` client networks, in an order that
brings each (message, network) pair round again only every ``messages * width`` hits: hit *i* goes to
message ``i % messages`` with the client address ``(i // messages) % len(addresses)``. The pair sees at
most `BUCKET_HITS` (5, half the rule's limit: margin for a generator that falls behind and catches up)
within `BUCKET_WINDOW_S`, because ``messages`` is derived (`messages_needed`): ``min(rate * 60 s, all
hits) / (5 * width)`` at least. Sampled hits use a pool of messages of their own, sized the same way.

The networks come from ``X-Forwarded-For`` (``networks``: that many /24s of `CLIENT_BLOCK`, a residential
ISP's, one address each; or ``forwarded_for``), which the edge believes only from a trusted proxy
(``PIXELPIPE_TRUSTED_PROXIES`` covering the generator); without it every hit comes from the generator's own
address, one network, and the messages alone carry the spread. Networks are the cheaper lever, so the
benchmark rotates 256 of them: 10k/s needs ``12 * 10,000 / 256`` = 469 messages, one registration batch,
where one network would need 120,000 (120 batches of 1000), and a message per 5 hits of a 10-minute run
1.2 M. Registering costs about 140 µs of CPU a message (20,000 in 2.8 CPU-s, the API and the client in one
process, 3 Dec), so those would be 17 and 170 CPU-s of the core being measured, before every step, and
as many more messages in its caches. Either way the generator's CPU per hit does not change (26-30 µs at
10k/s, 27 before): the request heads are built once per address, and choosing a hit's path and head is two
index operations.

**Zero loss.** Every hit is a person's (a desktop browser's user agent) open of one fresh campaign; clicks
always follow their message's only link (so never a click burst). So at the end the campaign's ``opens``
must equal the pixels answered 200, ``clicks`` the clicks answered 302, and no hit may have been filtered as
a replay flood (``replay_floods``, reported: one is a generator that no longer looks like people).

Owns nothing of the product: it is a client of the public HTTP contract and never imports the pipeline.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
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

from schemas.errors import PixelpipeError

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
BUCKET_HITS: Final = 5  # hits of one (message, network) pair at most within BUCKET_WINDOW_S (the rule: 10)
BUCKET_WINDOW_S: Final = 60.0  # the replay-flood rule's window
MIN_MESSAGES: Final = 200  # as many as the runs recorded before the flood rule used, when fewer would do
# Generated client networks: /24s of BT's residential block (AS2856, in the GeoLite2 ASN test database),
# one address each, in no published gateway range; so every hit is classified a person's.
CLIENT_BLOCK: Final = "81.128.0.0/11"
MAX_NETWORKS: Final = 8192  # the /24s of CLIENT_BLOCK


def client_addresses(networks: int) -> list[str]:
    """One address in each of the first ``networks`` /24s of `CLIENT_BLOCK` (the host varies, as people's
    do), consecutive ones in different networks."""
    if not 0 <= networks <= MAX_NETWORKS:
        raise LoadgenError(f"networks must be in 0..{MAX_NETWORKS}")
    return [f"81.{128 + j // 256}.{j % 256}.{1 + (j * 53) % 254}" for j in range(networks)]


def network_of(address: str) -> str:
    """The network the flood rule buckets an address by: its /24, or /48 for IPv6."""
    if ":" not in address:
        return address.rsplit(".", 1)[0]
    return str(ipaddress.ip_network(f"{address.split('%', maxsplit=1)[0]}/48", strict=False))


def spread_width(addresses: Sequence[str]) -> int:
    """How many networks a rotation over ``addresses`` spreads a message's hits over: the rotation's length
    over the most any one network appears in it (1 without addresses: the generator's own)."""
    if not addresses:
        return 1
    return len(addresses) // max(Counter(network_of(a) for a in addresses).values())


def messages_needed(rate: float, total: int, width: int) -> int:
    """The fewest messages that keep each (message, network) pair within `BUCKET_HITS` per
    `BUCKET_WINDOW_S`: a pair comes round every ``messages * width`` hits, so that many hits must take at
    least 60 s / 5 = 12 s (or be more than the run has)."""
    hits = min(rate * BUCKET_WINDOW_S, total)
    return max(1, math.ceil(hits / (BUCKET_HITS * width)))


def sample_messages_needed(in_flight: int, poll_interval_s: float, width: int) -> int:
    """The sampling pool: messages are reused in turn, ``in_flight`` at a time, each sample taking a poll
    interval at least; the pool keeps each (message, network) pair within `BUCKET_HITS` per window too."""
    samples_per_window = BUCKET_WINDOW_S / max(poll_interval_s, 0.001) * in_flight
    return in_flight - 1 + math.ceil(samples_per_window / (BUCKET_HITS * width))


class LoadgenError(PixelpipeError, RuntimeError):
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
    counted: int  # the campaign's opens at the end
    counted_clicks: int
    zero_loss: bool  # counted == answered, counted_clicks == clicks_answered, and no replay floods
    settle_s: float | None  # last answer -> every hit counted or filtered (None: not within the timeout)
    samples: int
    sample_timeouts: int
    visible_p50_s: float | None
    visible_p99_s: float | None
    visible_max_s: float | None
    response_p50_ms: float | None  # from the time a hit was due to its answer
    response_p99_ms: float | None
    max_lag_ms: float  # longest wait of a due hit for a free connection
    schedule_lag_ms: float  # how late the generator itself was (a busy CPU, not a slow edge)
    replay_floods: int  # hits filtered as one client replaying a URL: 0, or the traffic was not people's
    campaign_id: str
    messages: int  # the hits' messages (the sampling pool's apart)
    networks: int  # client networks the hits were spread over (`spread_width`)
    register_s: float  # registering the messages, before the first hit
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _SampleMessage:
    message_id: str
    path: bytes
    slot: int  # its place in the pool: where its turn through the client addresses starts
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
    """Which request hit ``i`` is (a sampled pixel, a click, or a pixel of a normal message), and from which
    client address: the next message each hit, the next address each round of the messages, so a (message,
    network) pair comes round every ``len(normal) * width`` hits (see the module docstring)."""

    normal: list[bytes]  # pixel paths
    clicks: list[bytes]  # click paths, one per normal message
    addresses: int  # how many client addresses (request heads) the hits rotate over
    samples: list[_SampleMessage]
    sample_every: int
    sample_in_flight: int
    click_every: int  # 0: no clicks
    free: collections.deque[_SampleMessage] = field(default_factory=collections.deque)
    busy: int = 0  # samples in flight

    def __post_init__(self) -> None:
        self.free.extend(self.samples)

    def pick(self, i: int) -> tuple[bytes, int, str, _SampleMessage | None]:
        """Hit ``i``'s path, client address (an index), kind, and sample if it is one."""
        if (
            self.sample_every
            and i % self.sample_every == 0
            and self.free
            and self.busy < self.sample_in_flight
        ):
            sample = self.free.popleft()  # in turn: the pool's other messages go before this one again
            self.busy += 1
            return sample.path, (sample.slot + sample.expected) % self.addresses, "open", sample
        n = len(self.normal)
        address = (i // n) % self.addresses
        if self.click_every and i % self.click_every == self.click_every // 2:
            return self.clicks[(i // self.click_every) % n], address, "click", None
        return self.normal[i % n], address, "open", None

    def release(self, sample: _SampleMessage) -> None:
        """A sample is done (seen, timed out or failed): back in line, last."""
        self.busy -= 1
        self.free.append(sample)


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
    return int(r.json()["opens"])


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to drive, where, and how to sample it (see `run_loadgen`)."""

    edge_url: str
    api_url: str
    api_key: str
    rate: float
    duration_s: float
    messages: int | None  # None: `messages_needed`, at least `MIN_MESSAGES`
    campaign_id: str
    connections: int = 64
    sample_every: int = 100
    sample_messages: int = 2  # samples in flight at most
    poll_interval_s: float = 0.1
    click_per_mille: int = 10
    forwarded_for: Sequence[str] = ()
    networks: int = 0  # with no forwarded_for: that many generated client networks (`client_addresses`)
    settle_timeout_s: float = 60.0
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0 or self.connections <= 0:
            raise LoadgenError("rate, duration and connections must be positive")
        if self.messages is not None and self.messages <= 0:
            raise LoadgenError("messages must be positive")
        if self.sample_messages <= 0 or self.poll_interval_s <= 0:
            raise LoadgenError("sample_messages and poll_interval_s must be positive")
        if not 0 <= self.click_per_mille <= 500:
            raise LoadgenError("click_per_mille must be in 0..500")
        if self.forwarded_for and self.networks:
            raise LoadgenError("give forwarded_for or networks, not both")
        edge = urlsplit(self.edge_url)
        if edge.scheme != "http" or not edge.hostname:
            raise LoadgenError(f"the edge URL must be http://host:port (got {self.edge_url!r})")
        needed = messages_needed(self.rate, self.total, self.width)
        if self.messages is not None and self.messages < needed:
            raise LoadgenError(
                f"{self.messages} messages over {self.width} client network(s) at {self.rate:g}/s would "
                f"bring one message's pixel from one network more than {BUCKET_HITS} times a minute (the "
                f"pipeline files over 10 as a replay flood): give at least {needed} messages or more networks"
            )

    @property
    def total(self) -> int:
        return max(1, round(self.rate * self.duration_s))

    @property
    def addresses(self) -> list[str]:
        """The client addresses in ``X-Forwarded-For``, in turn (none: the generator's own)."""
        return list(self.forwarded_for) or client_addresses(self.networks)

    @property
    def width(self) -> int:
        return spread_width(self.addresses)

    @property
    def message_count(self) -> int:
        if self.messages is not None:
            return self.messages
        return max(MIN_MESSAGES, messages_needed(self.rate, self.total, self.width))

    @property
    def sample_pool(self) -> int:
        return sample_messages_needed(self.sample_messages, self.poll_interval_s, self.width)


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
            head + b"\r\nX-Forwarded-For: " + ip.encode() + b"\r\n\r\n" for ip in spec.addresses
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

    def _take(self, i: int) -> tuple[bytes, int, _SampleMessage | None]:
        """Hit ``i``'s path, client address and sample, counted as sent."""
        path, address, kind, sample = self.plan.pick(i)
        if kind == "click":
            self.tally.clicks_sent += 1
        else:
            self.tally.opens_sent += 1
        return path, address, sample

    def _send(self, lane: _Lane, item: tuple[float, int]) -> None:
        due, i = item
        now = time.monotonic()
        self.tally.max_lag_s = max(self.tally.max_lag_s, now - due)
        path, address, sample = self._take(i)
        lane.send(_InFlight(due, now, sample), b"GET " + path + self.heads[address])

    def _ready(self, lane: _Lane) -> None:
        """A live lane with nothing in flight: the next due hit, or the idle pool."""
        if self.due:
            self._send(lane, self.due.popleft())
        else:
            self.idle.append(lane)

    def _fail(self, item: tuple[float, int]) -> None:
        due, i = item
        _, _, sample = self._take(i)
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
                self.plan.release(sample)
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
            self.plan.release(sample)

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


async def _campaign_counts(api: httpx.AsyncClient, campaign_id: str) -> tuple[int, int, int, int] | None:
    """The campaign's opens and clicks, and its pixel and click hits filtered as replay floods (none, when
    the traffic is people's)."""
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
    return int(body["opens"]), int(body["clicks"]), floods["open"], floods["click"]


async def _settle(
    api: httpx.AsyncClient, spec: LoadSpec, expected: tuple[int, int], last_answer: float
) -> tuple[tuple[int, int, int, int], float | None]:
    """Wait until the campaign has every answered hit (``expected``: opens, clicks), counted or filtered as a
    replay flood; then look once more, a second later, for double counts. Returns the final counts
    (`_campaign_counts`), and the seconds from the last answer until all were there (None if not within the
    settle timeout)."""
    deadline = time.monotonic() + spec.settle_timeout_s
    counts: tuple[int, int, int, int] | None = None
    settle_s: float | None = None
    while time.monotonic() < deadline:
        counts = await _campaign_counts(api, spec.campaign_id)
        if (
            counts is not None
            and counts[0] + counts[2] >= expected[0]
            and counts[1] + counts[3] >= expected[1]
        ):
            settle_s = max(0.0, time.monotonic() - last_answer)
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything that arrives now would be a double count
    counts = await _campaign_counts(api, spec.campaign_id) or counts or (0, 0, 0, 0)
    return counts, settle_s


async def _run(spec: LoadSpec, progress: Progress | None) -> LoadResult:
    headers = {"Authorization": f"Bearer {spec.api_key}"}
    async with httpx.AsyncClient(base_url=spec.api_url, headers=headers, timeout=30) as api:
        registering = time.monotonic()
        normal = await _register(api, spec.campaign_id, spec.message_count, "m", progress)
        sampled = await _register(
            api, spec.campaign_id, spec.sample_pool if spec.sample_every else 0, "s", progress
        )
        register_s = time.monotonic() - registering
        samples = [_SampleMessage(m["message_id"], _path(m["pixel_url"]), n) for n, m in enumerate(sampled)]
        plan = _Plan(
            normal=[_path(m["pixel_url"]) for m in normal],
            clicks=[_path(m["links"][LANDING]) for m in normal],
            addresses=max(1, len(spec.addresses)),
            samples=samples,
            sample_every=spec.sample_every,
            sample_in_flight=spec.sample_messages,
            click_every=1000 // spec.click_per_mille if spec.click_per_mille > 0 else 0,
        )
        driver = _Driver(spec, api, plan, progress)
        sending_s = await driver.run()
        tally = driver.tally
        answered, clicks_answered = tally.statuses.get(200, 0), tally.statuses.get(302, 0)
        # Sampled hits are opens of the same campaign, so they are part of `answered` and of the count.
        (counted, counted_clicks, open_floods, click_floods), settle_s = await _settle(
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
        zero_loss=counted == answered
        and counted_clicks == clicks_answered
        and not open_floods + click_floods,
        replay_floods=open_floods + click_floods,
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
        messages=spec.message_count,
        networks=spec.width,
        register_s=register_s,
        connections=spec.connections,
    )


def run_loadgen(  # noqa: PLR0917 - the command's six essentials, in the order the flags read
    edge_url: str,
    api_url: str,
    api_key: str,
    rate: float,
    duration_s: float,
    messages: int | None = None,
    *,
    campaign_id: str | None = None,
    connections: int = 64,
    sample_every: int = 100,
    sample_messages: int = 2,
    poll_interval_s: float = 0.1,
    click_per_mille: int = 10,
    forwarded_for: Sequence[str] = (),
    networks: int = 0,
    settle_timeout_s: float = 60.0,
    request_timeout_s: float = 10.0,
    show_progress: bool = True,
) -> LoadResult:
    """Register ``messages`` messages (None: as many as keep the traffic people's, see the module
    docstring), and a pool for sampling, in a fresh campaign; send ``rate * duration_s`` hits to the edge at
    a fixed rate, and check that the API counts each one once, as a person's.

    Client addresses, sent in turn in ``X-Forwarded-For``: ``forwarded_for``, or one in each of ``networks``
    generated /24s (the edge believes them only from a trusted proxy: set ``PIXELPIPE_TRUSTED_PROXIES`` to
    cover the generator's address)."""
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
        networks=networks,
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
        f"campaign {r.campaign_id}: asked {r.rate:g}/s for {r.duration_s:g}s, {r.connections} connections, "
        f"{r.messages} messages (registered in {r.register_s:.1f}s) from {r.networks} client network(s)",
        f"  sent {r.sent} ({r.opens_sent} pixels, {r.clicks_sent} clicks), achieved {r.achieved_rate:.0f}/s, "
        f"statuses {r.statuses}",
        f"  answered: response p50 {r.response_p50_ms or 0:.1f} ms, p99 {r.response_p99_ms or 0:.1f} ms; "
        f"longest wait for a connection {r.max_lag_ms:.0f} ms, generator late by {r.schedule_lag_ms:.0f} ms",
        f"  visible in the API ({r.samples} samples, {r.sample_timeouts} timed out): "
        f"p50 {ms(r.visible_p50_s)}, p99 {ms(r.visible_p99_s)}, max {ms(r.visible_max_s)}",
        f"  counted opens {r.counted} / answered {r.answered}, clicks {r.counted_clicks} / "
        f"{r.clicks_answered}: {'zero loss' if r.zero_loss else 'MISMATCH'}"
        + (f", all counted {r.settle_s:.1f}s after the last answer" if r.settle_s is not None else "")
        + f"; {r.replay_floods} filtered as replay floods",
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
    cmd.add_argument(
        "--messages",
        type=int,
        default=None,
        help="messages to spread hits over (default: enough to look like people)",
    )
    cmd.add_argument("--campaign", default=None, help="campaign id (default: a fresh one)")
    cmd.add_argument("--connections", type=int, default=64)
    cmd.add_argument("--sample-every", type=int, default=100, help="sample every Nth hit for visibility")
    cmd.add_argument("--sample-messages", type=int, default=2, help="samples in flight at most")
    cmd.add_argument("--poll-interval", type=float, default=0.1, help="seconds between visibility polls")
    cmd.add_argument("--click-per-mille", type=int, default=10, help="clicks per 1000 hits")
    cmd.add_argument("--forwarded-for", default="", help="comma-separated client addresses (X-Forwarded-For)")
    cmd.add_argument(
        "--networks",
        type=int,
        default=0,
        help=f"or: that many generated client /24s in X-Forwarded-For (at most {MAX_NETWORKS}; the edge must "
        "trust the generator's address: PIXELPIPE_TRUSTED_PROXIES)",
    )
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
            networks=args.networks,
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
