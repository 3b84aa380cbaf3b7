"""The processor loop on a real Kafka broker and real chDB: store outages and malformed records.

ClickHouse away for a while: the processor pauses, retries with backoff, commits nothing, then catches up.
The store is made unavailable by a switch in front of it that fails every insert the way a refused
connection does (a retriable `StoreError`), for as long as the test holds it down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bus.kafka_config import KafkaConfig
from ingest.kafka_publisher import KafkaPublisher
from processors import metrics
from processors.geo import GeoLookup
from processors.kafka_source import DeadLetterPublisher, KafkaSource
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit
from schemas.store import Store, StoreError
from schemas.topics import Topics
from tests.integration.helpers import eventually, human_open, read_topic

pytestmark = pytest.mark.kafka
DATA = Path(__file__).parent.parent / "data"


class SwitchedStore(Store):
    """The real store, behind a switch that can make it unreachable."""

    def __init__(self, real: Store) -> None:
        super().__init__(real._client, real.target)  # the same engine, not a copy
        self.down = False
        self.refused = 0

    def insert(self, table: str, columns: Any, rows: Any, *, dedup_token: str | None = None) -> None:
        if self.down:
            self.refused += 1
            raise StoreError("OperationalError: connection refused", retriable=True)
        super().insert(table, columns, rows, dedup_token=dedup_token)


def _hit(i: int) -> RawHit:
    return human_open(i, messages=100)  # six opens each: within the replay-flood limit (10 a minute)


async def test_processor_pauses_while_the_store_is_away_then_catches_up(
    tmp_path: Path, store: Store, kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str
) -> None:
    switched = SwitchedStore(store)
    publisher = KafkaPublisher(KafkaConfig(kafka_bootstrap), kafka_topics, spool_dir=tmp_path / "spool")
    source = KafkaSource(KafkaConfig(kafka_bootstrap), kafka_topics, kafka_group)
    runner = HitRunner(
        source=source,
        store=switched,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.1,
    )
    await publisher.start()
    switched.down = True
    task = asyncio.create_task(runner.run())
    try:
        for i in range(600):
            publisher.publish(_hit(i))

        async def retried() -> bool:
            return switched.refused >= 3

        await eventually(retried, "three refused inserts")  # it read hits, and kept retrying (with backoff)
        db = store.database
        assert store.query(f"SELECT count() FROM {db}.events") == [(0,)]
        assert metrics.STORE_UP._value.get() == 0  # the gauge /metrics shows
        committed = [await source.committed(p) for p in source.assignment()]
        assert committed, "no partitions assigned"
        assert all(c is None for c in committed), committed  # nothing committed meanwhile
        switched.down = False

        async def caught_up() -> bool:
            return store.query(f"SELECT uniqExact(hit_id) FROM {db}.events") == [(600,)]

        await eventually(caught_up, "every hit stored")
        # Every record read is committed (a record holds many hits: offsets count records).
        ends = await source.end_offsets()
        assert sum(ends.values()) > 0

        async def committed_all() -> bool:
            return {p: await source.committed(p) for p in ends} == ends

        await eventually(committed_all, "every record committed")
        assert store.query(f"SELECT count() FROM {db}.events") == [(600,)]  # not one row twice
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)
        await publisher.stop()


async def test_malformed_records_go_to_the_dead_letter_topic_and_never_stop_the_partition(
    store: Store, kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str
) -> None:
    source = KafkaSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
    runner = HitRunner(
        source=source,
        store=store,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.1,
        dead_letters=DeadLetterPublisher(KafkaConfig(kafka_bootstrap), kafka_topics),
    )
    task = asyncio.create_task(runner.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:

        async def assigned() -> bool:  # the source made the topics (with one partition) and owns them
            return source.assignment() == {0}

        await eventually(assigned, "the source's partition")
        values = [
            encode_hit(_hit(0)),
            b"not json",
            b'{"v": 99}',
            encode_hit(_hit(1)),
            b"",
            encode_hit(_hit(2)),
        ]
        for value in values:
            await producer.send_and_wait(kafka_topics.raw_hits, value)
        db = store.database

        async def stored() -> bool:
            return store.query(f"SELECT count() FROM {db}.events") == [(3,)]

        async def committed() -> bool:
            return await source.committed(0) == 6  # past the bad records too

        await eventually(stored, "the valid hits after the bad ones")
        await eventually(committed, "every record committed")
        assert store.query(f"SELECT count() FROM {db}.events") == [(3,)]
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()
    dead = await read_topic(kafka_bootstrap, kafka_topics.dead_letter, 3)
    assert [d.value for d in dead] == [b"not json", b'{"v": 99}', b""]
    reasons = [dict(d.headers)["pixelpipe-reason"].decode() for d in dead]
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "unknown schema version 99"
    assert [dict(d.headers)["pixelpipe-source-offset"] for d in dead] == [b"1", b"2", b"4"]
