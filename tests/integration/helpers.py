"""Helpers for tests that drive a running pixelpipe over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from bus.port import BusRecord
from schemas.events import RawHit
from schemas.reads import ReadEnd, ReadRecord
from tests.conftest import DATA, SECRET

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
RESIDENTIAL = "81.2.69.160"  # GB, London in MaxMind's test City DB


def human_open(i: int, messages: int) -> RawHit:
    """The ``i``-th raw hit of a stream of human opens (a browser, a residential address) spread over
    ``messages`` messages of account ``acme``'s campaign ``c``, as the edge would publish it now."""
    now_ms = int(time.time() * 1000)
    return RawHit(
        hit_id=f"{now_ms:012x}{i:016x}",
        kind="open",
        received_at_ms=now_ms,
        ip=RESIDENTIAL,
        user_agent=BROWSER,
        token_ok=True,
        account="acme",
        campaign_id="c",
        message_id=f"m{i % messages}",
        sent_at=now_ms // 1000 - 3600,
    )


def path_of(url: str) -> str:
    return urlsplit(url).path


def wait_for(
    probe: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 30.0, every_s: float = 0.02
) -> tuple[Any, float]:
    """Poll until ``done(probe())``; return the last value and the seconds it took. Fails on timeout, which
    is generous on purpose: a test waits for an exact outcome, and how fast it comes is for bench/."""
    start = time.monotonic()
    value = probe()
    while not done(value):
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not reached within {timeout_s}s; last value: {value!r}")
        time.sleep(every_s)
        value = probe()
    return value, time.monotonic() - start


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    """Await ``condition()`` every 0.1 s until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.1)


async def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 15) -> list[Any]:
    """The records of ``topic`` from its beginning, until ``count`` are read or ``timeout_s`` passes."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def hit(client: httpx.Client, url: str, *, ua: str = BROWSER, ip: str = RESIDENTIAL) -> httpx.Response:
    return client.get(path_of(url), headers={"User-Agent": ua, "X-Forwarded-For": ip})


def outbox_rows(path: Path) -> list[tuple[str, str, str]]:
    """(message id, state, body's recipient) of every delivery in a dispatcher's outbox, read beside it."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        rows = db.execute("SELECT message_id, state, body FROM deliveries ORDER BY seq").fetchall()
    return [(m, s, orjson.loads(b)["data"]["recipient"]) for m, s, b in rows]


def embedded_env(data_dir: Path, chdb_path: Path, **settings: str) -> dict[str, str]:
    """The environment of an embedded deployment a module's tests share: account ``acme`` (key
    ``acme-key-123``), a database of its own in the session's chDB, the test GeoIP City DB, 100 ms flushes;
    ``settings`` adds to it (``PIXELPIPE_TRUSTED_PROXIES="..."``)."""
    return {
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123",
        "PIXELPIPE_DATA_DIR": str(data_dir),
        "PIXELPIPE_CLICKHOUSE_URL": f"chdb://{chdb_path}?database=t_{uuid.uuid4().hex[:12]}",
        "PIXELPIPE_GEOIP_CITY_DB": str(DATA / "GeoIP2-City-Test.mmdb"),
        "PIXELPIPE_FLUSH_INTERVAL_MS": "100",
        **settings,
    }


async def group_progress(bootstrap: str, topic: str, group: str) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: (the offset ``group`` committed, 0 if none; the end offset). Empty while
    the topic is not known yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        [described] = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        ends = await consumer.end_offsets(tps) if tps else {}
        done = {tp: o.offset for tp, o in offsets.items() if tp.topic == topic}
        return {tp.partition: (max(0, done.get(tp, 0)), end) for tp, end in ends.items()}
    finally:
        await consumer.stop()
        await admin.close()


def read_record(hit: RawHit, read_ms: int, end: ReadEnd = ReadEnd.CLOSED) -> ReadRecord:
    """The read record the edge publishes when the held pixel of the timed open ``hit`` ends after
    ``read_ms`` (issue 18)."""
    return ReadRecord(
        read_of=hit.hit_id,
        account=hit.account,
        campaign_id=hit.campaign_id,
        message_id=hit.message_id,
        recipient_tag=hit.recipient_tag,
        opened_at_ms=hit.received_at_ms,
        ended_at_ms=hit.received_at_ms + read_ms,
        read_ms=read_ms,
        end=end,
    )


@dataclass
class ListSource:
    """A bus source of records given up front, fetched once, in order; the commits it was given."""

    records: list[BusRecord]
    commits: list[dict[int, int]] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]:
        batch, self.records = self.records[:max_records], self.records[max_records:]
        if not batch:
            await asyncio.sleep(min(timeout_s, 0.01))
        return batch

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        self.commits.append(dict(next_offsets))

    async def stop(self) -> None:
        return None


@dataclass
class CollectedDeadLetters:
    """Dead letters kept in a list: (record, reason)."""

    letters: list[tuple[BusRecord, str]] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def send(self, record: BusRecord, reason: str) -> None:
        self.letters.append((record, reason))

    async def stop(self) -> None:
        return None
