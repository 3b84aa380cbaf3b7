"""The replay-flood rule across restarts and rebalances, on a real Kafka broker and real chDB.

One client fetches one message's pixel 50 times in 5 s from one network: exactly 10 opens and 40
``bot``/``replay_flood`` hits, however the processor is interrupted after the first 25 are committed — the
processor crashing after storing all 50 (so 25 are read and judged again), stopping with 25 read (the rest
read by the next run), or the partition moving in a rebalance. The restarted reader replays the records of
the filter's reach before its committed offset into the flood filter first (`processors.runner`), so each
hit gets the verdict an uninterrupted run gave it, and no hit id is on both sides. And when the restarted
run cannot agree (here: another window), a hit read again keeps the side it was stored on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from bus.kafka_config import KafkaConfig
from processors.flood import ReplayFlood
from processors.geo import GeoLookup
from processors.kafka_source import KafkaSource
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit
from schemas.store import Store
from schemas.topics import Topics
from tests.integration.helpers import BROWSER, RESIDENTIAL, group_progress, human_open, path_of, wait_for
from tests.roles import Role, role_env

pytestmark = pytest.mark.kafka
DATA = Path(__file__).parent.parent / "data"
HITS, FIRST, LIMIT = 50, 25, 10
ACME = {"Authorization": "Bearer acme-key-123"}
OTHER_READER = "89.160.20.128"  # another network


class CrashingSource(KafkaSource):
    """A source whose commits never get past ``FIRST``: the run stores everything it reads and then dies
    before committing the rest, as a process killed between its insert and its commit does."""

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        await super().commit({p: min(o, FIRST) for p, o in next_offsets.items()})


def flood_hits() -> list[RawHit]:
    """One script replaying one pixel: ``HITS`` fetches 100 ms apart, from one address, ending now."""
    base = int(time.time() * 1000) - HITS * 100
    one = human_open(0, messages=1)
    return [replace(one, hit_id=f"flood{i:04d}", received_at_ms=base + i * 100) for i in range(HITS)]


def runner_on(source: KafkaSource, store: Store, flood: ReplayFlood | None = None) -> HitRunner:
    runner = HitRunner(
        source=source,
        store=store,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.05,
        flood=flood,
    )
    source.on_revoked = runner.on_revoked  # as `pixelpipe.app` wires it
    return runner


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.1)


async def publish(producer: AIOKafkaProducer, topics: Topics, hits: list[RawHit]) -> None:
    for h in hits:  # one hit a record: offsets count hits
        await producer.send_and_wait(topics.raw_hits, encode_hit(h), partition=0)


def totals(store: Store) -> tuple[int, int, int]:
    """Counted opens, replay-flood hits, and hit ids stored on both sides."""
    db = store.database
    [(opens,)] = store.query(f"SELECT uniqExact(hit_id) FROM {db}.events WHERE kind = 'open'")
    [(floods,)] = store.query(
        f"SELECT uniqExact(hit_id) FROM {db}.filtered_hits WHERE reason = 'replay_flood'"
    )
    [(both,)] = store.query(
        f"SELECT uniqExact(hit_id) FROM {db}.events WHERE hit_id IN (SELECT hit_id FROM {db}.filtered_hits)"
    )
    return int(opens), int(floods), int(both)


async def uncommitted(bootstrap: str, topics: Topics, group: str) -> int:
    """Records of the raw-hits topic the group has not committed (-1: the topic is not known yet)."""
    progress = await group_progress(bootstrap, topics.raw_hits, group)
    return sum(end - done for done, end in progress.values()) if progress else -1


async def committed(source: KafkaSource, offset: int) -> bool:
    return await source.committed(0) == offset


@pytest.mark.parametrize(
    "interruption", ["crash after storing", "stop", "rebalance", "crash, restarted with a 1 s window"]
)
async def test_a_flood_interrupted_after_25_hits_counts_10_opens_and_40_floods(
    store: Store, kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str, interruption: str
) -> None:
    hits = flood_hits()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    crash = interruption.startswith("crash")
    first_source = (CrashingSource if crash else KafkaSource)(
        KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group
    )
    first = runner_on(first_source, store)
    tasks = [asyncio.create_task(first.run())]
    runners = [first]
    try:

        async def assigned() -> bool:
            return first_source.assignment() == {0}

        await eventually(assigned, "the first reader's partition")
        if crash:
            await publish(producer, kafka_topics, hits)

            async def all_stored() -> bool:
                return sum(totals(store)[:2]) == HITS

            await eventually(all_stored, "every hit stored by the first run")
            assert totals(store) == (LIMIT, HITS - LIMIT, 0)
            await eventually(lambda: committed(first_source, FIRST), "the first 25 committed")
        else:
            await publish(producer, kafka_topics, hits[:FIRST])
            await eventually(lambda: committed(first_source, FIRST), "the first 25 committed")
            assert totals(store) == (LIMIT, FIRST - LIMIT, 0)
        if interruption == "rebalance":
            # A second member joins: the group takes the partition from the first and gives it to one of
            # them, which forgets what it knew of it (`HitRunner.on_revoked`) and starts at the commit.
            revoked = asyncio.Event()
            forget = first.on_revoked

            async def on_revoked(partitions: set[int]) -> None:
                await forget(partitions)
                revoked.set()

            first_source.on_revoked = on_revoked
            reader = first_source  # a member still: it reads the group's commits
            second_source = KafkaSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
            second = runner_on(second_source, store)
            runners.append(second)
            tasks.append(asyncio.create_task(second.run()))

            async def moved() -> bool:
                owners = first_source.assignment() | second_source.assignment()
                return revoked.is_set() and owners == {0}

            await eventually(moved, "the rebalance")
        else:
            first.stop()
            await asyncio.wait_for(tasks.pop(), 30)
            reader = KafkaSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
            # A window of 1 s, where hits 100 ms apart never make a flood: the replay cannot agree with the
            # run before, and each hit read again still keeps the side it was stored on.
            other = ReplayFlood(window_ms=1_000) if interruption.endswith("window") else None
            restarted = runner_on(reader, store, other)
            runners.append(restarted)
            tasks.append(asyncio.create_task(restarted.run()))

            async def reassigned() -> bool:
                return reader.assignment() == {0}

            await eventually(reassigned, "the restarted reader's partition")
        if not crash:
            await publish(producer, kafka_topics, hits[FIRST:])
        await eventually(lambda: committed(reader, HITS), "every hit committed")
        assert totals(store) == (LIMIT, HITS - LIMIT, 0)
    finally:
        for runner in runners:
            runner.stop()
        for task in tasks:
            await asyncio.wait_for(task, 30)
        await producer.stop()


def test_a_flood_across_a_processor_killed_mid_way_counts_10_opens(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """The same with the roles as real processes: the processor SIGKILLed after it stored the first 25
    hits of a flood (what it committed of them is up to the timing), the other 25 arriving while it is dead,
    then a person from another network: 11 opens and 40 floods."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    common = {
        "PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PIXELPIPE_TOPIC_PREFIX": prefix,
        "PIXELPIPE_CONSUMER_GROUP": f"{prefix}-processors",
    }
    edge_env = role_env(**common, PIXELPIPE_DATA_DIR=str(tmp_path / "edge"))
    edge = Role(["edge"], edge_env, tmp_path / "edge.log")
    core = Role(
        ["serve", "--roles", "process,api"],
        role_env(**common, PIXELPIPE_DATA_DIR=str(tmp_path / "core"), PIXELPIPE_PUBLIC_URL=edge.base),
        tmp_path / "core.log",
    )
    try:
        edge.start()
        core.start()
        with httpx.Client(base_url=core.base, timeout=10, headers=ACME) as api:
            r = api.post("/v1/messages", json={"campaign_id": "flood", "recipient": "ann@example.com"})
            assert r.status_code == 201, r.text
            pixel, message_id = path_of(r.json()["pixel_url"]), r.json()["message_id"]

            def stats() -> dict[str, Any]:
                return dict(api.get(f"/v1/messages/{message_id}").json())

            def fetch(n: int, ip: str = RESIDENTIAL) -> None:
                headers = {"User-Agent": BROWSER, "X-Forwarded-For": ip}
                with httpx.Client(base_url=edge.base, timeout=10, headers=headers) as client:
                    assert [client.get(pixel).status_code for _ in range(n)] == [200] * n

            fetch(FIRST)
            wait_for(stats, lambda m: m["opens"] + m["bot_opens"] == FIRST, 60)
            topics = Topics.with_prefix(prefix)
            group = common["PIXELPIPE_CONSUMER_GROUP"]
            wait_for(lambda: asyncio.run(uncommitted(kafka_bootstrap, topics, group)), lambda n: n == 0, 60)
            core.kill()
            fetch(HITS - FIRST)
            fetch(1, ip=OTHER_READER)  # read after the flood on its partition: a positive signal
            core.start()
            message, _ = wait_for(stats, lambda m: m["opens"] + m["bot_opens"] >= HITS + 1, 120)
            assert (message["opens"], message["bot_opens"]) == (LIMIT + 1, HITS - LIMIT)
            assert message["filtered"] == {"replay_flood": HITS - LIMIT}
    finally:
        edge.stop()
        core.stop()
