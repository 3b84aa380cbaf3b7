"""Read records on a real Kafka broker (issue 18): stored exactly once across a crash between the insert and
the offset commit, and across a processor SIGKILLed twice while opens and their read records stream in.

A read record is a line on the raw-hit topic, keyed like its open (one partition, after it). The processor
stores it in ``reads`` with its batch (its own deduplication token), then commits; a crash before the commit
reads it again, in another batch (another token), so its row may be stored twice: ``reads`` is a
ReplacingMergeTree by ``read_of`` and the API reads it with FINAL, so every number is exact.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from bus.kafka_config import KafkaConfig
from processors.geo import GeoLookup
from processors.kafka_source import KafkaSource
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit
from schemas.reads import ReadRecord, encode_read
from schemas.store import Store
from schemas.topics import Topics
from tests.integration.helpers import eventually, human_open, read_record, wait_for
from tests.roles import Role, role_env

pytestmark = pytest.mark.kafka
DATA = Path(__file__).parent.parent / "data"
ACME = {"Authorization": "Bearer acme-key-123"}
READ_MS = (9_000, 4_000, 1_000)  # read, skimmed, glanced, in turn


def pair(i: int, messages: int) -> tuple[RawHit, ReadRecord]:
    """The ``i``-th human open (of ``messages`` messages of acme's campaign c) and its read record."""
    hit = replace(human_open(i, messages), hit_id=f"r{uuid.uuid4().hex[:8]}{i:08d}")
    return hit, read_record(hit, READ_MS[i % 3])


def expected(n: int) -> dict[str, Any]:
    values = [READ_MS[i % 3] for i in range(n)]
    return {
        "read": values.count(9_000), "skimmed": values.count(4_000), "glanced": values.count(1_000),
        "unknown": 0, "measured": n, "median_seconds": statistics.median(values) / 1000,
    }  # fmt: skip


class CrashingSource(KafkaSource):
    """Commits never past ``upto``: the run stores everything it reads and dies before committing the rest,
    as a process killed between its insert and its commit does."""

    upto = 0

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        await super().commit({p: min(o, self.upto) for p, o in next_offsets.items()})


def runner_on(source: KafkaSource, store: Store) -> HitRunner:
    runner = HitRunner(
        source=source,
        store=store,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.05,
        max_batch=7,  # small batches: the records read again come in other batches than the first run's
    )
    source.on_revoked = runner.on_revoked
    return runner


def campaign_read_time(store: Store) -> dict[str, Any]:
    from api.sql import reads

    q = reads.campaign_read_time(store.database, "acme", "c")
    return reads.shape_read_time(store.query(q.sql, q.parameters)[0])


async def test_read_records_read_again_after_a_crash_before_the_commit_count_once(
    store: Store, kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str
) -> None:
    n = 30
    pairs = [pair(i, messages=n) for i in range(n)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    first_source = CrashingSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
    first_source.upto = 20  # 10 opens and 10 reads committed; the other 40 records are read again
    first = runner_on(first_source, store)
    tasks = [asyncio.create_task(first.run())]
    runners = [first]
    db = store.database
    try:

        async def assigned() -> bool:
            return first_source.assignment() == {0}

        await eventually(assigned, "the first reader's partition")
        for hit, record in pairs:  # one line a record: offsets count lines
            await producer.send_and_wait(kafka_topics.raw_hits, encode_hit(hit), partition=0)
            await producer.send_and_wait(kafka_topics.raw_hits, encode_read(record), partition=0)

        async def all_stored() -> bool:
            return store.query(f"SELECT uniqExact(read_of) FROM {db}.reads") == [(n,)]

        await eventually(all_stored, "every read stored by the first run")
        first.stop()
        await asyncio.wait_for(tasks.pop(), 30)
        reader = KafkaSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
        second = runner_on(reader, store)
        runners.append(second)
        tasks.append(asyncio.create_task(second.run()))

        async def reassigned() -> bool:
            return reader.assignment() == {0}

        await eventually(reassigned, "the restarted reader's partition")

        async def caught_up() -> bool:
            return await reader.committed(0) == 2 * n

        await eventually(caught_up, "every record read again and committed")
        assert store.query(f"SELECT count() FROM {db}.reads FINAL") == [(n,)]
        assert store.query(f"SELECT uniqExact(hit_id) FROM {db}.events") == [(n,)]
        assert campaign_read_time(store) == expected(n)
    finally:
        for runner in runners:
            runner.stop()
        for task in tasks:
            await asyncio.wait_for(task, 30)
        await producer.stop()


class Stream:
    """Publishes opens and their read records (each read right after its open, keyed by the message) at a
    steady rate from a thread, until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.sent

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            while not self._stop.is_set():
                hit, record = pair(self.sent, messages=10**6)
                key = hit.partition_key
                await producer.send_and_wait(self.topic, encode_hit(hit), key=key)
                await producer.send_and_wait(self.topic, encode_read(record), key=key)
                self.sent += 1
                await asyncio.sleep(1 / self.rate)
        finally:
            await producer.stop()


def test_a_processor_killed_twice_mid_stream_loses_no_read_and_counts_none_twice(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    core = Role(
        ["serve", "--roles", "process,api"],
        role_env(
            PIXELPIPE_KAFKA_BOOTSTRAP=kafka_bootstrap,
            PIXELPIPE_TOPIC_PREFIX=prefix,
            PIXELPIPE_CONSUMER_GROUP=f"{prefix}-processors",
            PIXELPIPE_DATA_DIR=str(tmp_path / "core"),
        ),
        tmp_path / "core.log",
    )

    def read_time() -> dict[str, Any]:
        try:
            r = httpx.get(f"{core.base}/v1/campaigns/c/stats", headers=ACME, timeout=5)
        except httpx.HTTPError:
            return {}
        return dict(r.json()["read_time"]) if r.status_code == 200 else {}

    try:
        core.start()
        core.wait_ready()
        stream = Stream(kafka_bootstrap, Topics.with_prefix(prefix).raw_hits, rate=100).start()
        wait_for(read_time, lambda got: got.get("measured", 0) > 0, timeout_s=60)
        core.kill()
        time.sleep(1)
        core.start()
        time.sleep(2)
        core.kill()
        core.start()
        time.sleep(2)
        sent = stream.stop()
        assert sent > 300
        got, took = wait_for(
            read_time, lambda got: got.get("measured", 0) >= sent, timeout_s=120, every_s=0.5
        )
        assert got == expected(sent)
        time.sleep(1)  # nothing more arrives: still exact
        assert read_time() == expected(sent)
        print(f"\nprocessor SIGKILL x2: {sent} opens with their reads, counted exactly {took:.1f}s after")
    finally:
        core.stop()
