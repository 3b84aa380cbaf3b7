"""Rows the store refuses for good do not stall a partition: their hits go to the dead letters with
ClickHouse's code and name, are counted, their offsets are committed, and the partition goes on.

Real chDB with its schema broken in ways no retry fixes — a constraint every row of `filtered_hits` violates
(the server refuses: VIOLATED_CONSTRAINT, code 469), a column of `events` dropped (clickhouse-connect refuses
before sending: no server code) — on a real Kafka broker and on the in-process bus.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from bus.kafka_config import KafkaConfig
from bus.memory import MemoryBus
from processors.geo import GeoLookup
from processors.kafka_source import DeadLetterPublisher, KafkaSource
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit, join_hits
from schemas.store import Store
from schemas.topics import Topics
from tests.integration.helpers import eventually, human_open, read_topic

DATA = Path(__file__).parent.parent / "data"
CRAWLER = "Googlebot/2.1 (+http://www.google.com/bot.html)"
RECORDS = 5
HUMANS_PER_RECORD = 2
BOTS_PER_RECORD = 3


def _processor() -> HitProcessor:
    return HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges())


def _refused(table: str, code: str, name: str) -> float:
    labels = {"table": table, "code": code, "name": name}
    return REGISTRY.get_sample_value("pixelpipe_store_rejected_hits_total", labels) or 0.0


def _bot(i: int) -> RawHit:
    return dataclasses.replace(human_open(i, messages=1000), user_agent=CRAWLER)


def _record(n: int) -> tuple[list[RawHit], list[RawHit]]:
    """The humans and the bots of the ``n``-th record (distinct hit ids across records)."""
    base = n * 100
    humans = [human_open(base + i, messages=1000) for i in range(HUMANS_PER_RECORD)]
    bots = [_bot(base + 50 + i) for i in range(BOTS_PER_RECORD)]
    return humans, bots


@pytest.mark.kafka
async def test_a_table_the_store_refuses_sends_its_hits_to_the_dead_letter_topic_and_the_partition_goes_on(
    store: Store, kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str
) -> None:
    db = store.database
    # No retry fixes this: every filtered hit violates it. `events` is untouched: its rows are stored.
    store.command(f"ALTER TABLE {db}.filtered_hits ADD CONSTRAINT refuse_all CHECK hit_id = ''")
    before = _refused("filtered_hits", "469", "VIOLATED_CONSTRAINT")
    source = KafkaSource(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics, kafka_group)
    notified: list[str] = []  # what the notice hub would be handed: stored hits only
    runner = HitRunner(
        source=source,
        store=store,
        processor=_processor(),
        flush_interval_s=0.1,
        dead_letters=DeadLetterPublisher(KafkaConfig(kafka_bootstrap, partitions=1), kafka_topics),
        on_stored=lambda stored: notified.extend(p.hit.hit_id for p, _ in stored),
    )
    task = asyncio.create_task(runner.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    sent_bots: list[list[RawHit]] = []
    sent_humans: list[RawHit] = []
    try:

        async def assigned() -> bool:
            return source.assignment() == {0}

        await eventually(assigned, "the source's partition")
        for n in range(RECORDS):
            humans, bots = _record(n)
            sent_bots.append(bots)
            sent_humans += humans
            value = join_hits([encode_hit(h) for pair in zip(humans, bots, strict=False) for h in pair])
            value = join_hits([value, *(encode_hit(b) for b in bots[len(humans) :])])
            await producer.send_and_wait(kafka_topics.raw_hits, value)

        async def committed_all() -> bool:
            return await source.committed(0) == RECORDS  # past every record: the partition went on

        await eventually(committed_all, "every record committed")
        assert store.query(f"SELECT count() FROM {db}.events") == [(RECORDS * HUMANS_PER_RECORD,)]
        assert store.query(f"SELECT count() FROM {db}.filtered_hits") == [(0,)]
        assert _refused("filtered_hits", "469", "VIOLATED_CONSTRAINT") - before == RECORDS * BOTS_PER_RECORD
        assert runner.store_ok is False  # the last insert failed: /readyz shows it until one succeeds
        assert sorted(notified) == sorted(h.hit_id for h in sent_humans)  # refused rows make no notice

        # The schema mended, the next record's filtered hits are stored and it is committed.
        store.command(f"ALTER TABLE {db}.filtered_hits DROP CONSTRAINT refuse_all")
        _, bots = _record(RECORDS)
        await producer.send_and_wait(kafka_topics.raw_hits, join_hits([encode_hit(b) for b in bots]))

        async def mended() -> bool:
            return await source.committed(0) == RECORDS + 1

        await eventually(mended, "the record after the mend committed")
        assert store.query(f"SELECT count() FROM {db}.filtered_hits") == [(BOTS_PER_RECORD,)]
        assert len(notified) == RECORDS * HUMANS_PER_RECORD + BOTS_PER_RECORD  # stored: handed on
        assert runner.store_ok is True
        assert _refused("filtered_hits", "469", "VIOLATED_CONSTRAINT") - before == RECORDS * BOTS_PER_RECORD
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()
    dead = await read_topic(kafka_bootstrap, kafka_topics.dead_letter, RECORDS)
    # One dead letter per source record, holding that record's refused hits (its bots) and nothing else.
    assert [d.value for d in dead] == [join_hits([encode_hit(b) for b in bots]) for bots in sent_bots]
    offsets = [dict(d.headers)["pixelpipe-source-offset"] for d in dead]
    assert offsets == [str(n).encode() for n in range(RECORDS)]
    reasons = {dict(d.headers)["pixelpipe-reason"].decode() for d in dead}
    assert reasons == {"the store refused the insert into filtered_hits: VIOLATED_CONSTRAINT (code 469)"}


async def test_a_dropped_column_dead_letters_the_batch_on_the_in_process_bus_and_the_next_is_stored(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    db = store.database
    bus = MemoryBus(capacity=100)
    runner = HitRunner(source=bus, store=store, processor=_processor(), flush_interval_s=0.0)
    before = _refused("events", "none", "none")
    store.command(f"ALTER TABLE {db}.events DROP COLUMN user_agent")
    humans = [human_open(i, messages=1000) for i in range(4)]
    bus.publish_encoded(None, join_hits([encode_hit(h) for h in humans[:3]]))
    bus.publish_encoded(None, encode_hit(humans[3]))
    with caplog.at_level(logging.INFO, logger="processors.runner"):
        await runner.step()  # fetch both records, insert (refused at once: no retry), dead-letter, go on
    assert _refused("events", "none", "none") - before == 4
    letters = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter ")]
    reason = "the store refused the insert into events: no server error code"
    assert letters == [f"dead letter memory:0:0: {reason}", f"dead letter memory:0:1: {reason}"]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # refused once, not retried

    store.command(f"ALTER TABLE {db}.events ADD COLUMN user_agent String AFTER client")
    bus.publish_encoded(None, encode_hit(human_open(10, messages=1000)))
    await runner.step()
    assert store.query(f"SELECT count() FROM {db}.events") == [(1,)]
    assert _refused("events", "none", "none") - before == 4
