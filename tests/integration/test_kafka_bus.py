"""The Kafka adapters against a real broker: every hit once, per-message order, manual commits, dead letters,
and the edge's spool through a broker that is not there and a broker that goes away and comes back."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from bus.kafka_config import KafkaConfig
from bus.port import BusRecord
from bus.renewing_producer import close_producer
from ingest.kafka_publisher import DeliveryMode, KafkaPublisher, pack_keyed, unpack_keyed
from processors.kafka_source import DeadLetterPublisher, KafkaSource
from schemas.events import RawHit, decode_hit, encode_hit, split_hits
from schemas.topics import Topics
from tests.kafka_broker import LocalKafka, free_ports


def make_hit(message: int, seq: int, *, token_ok: bool = True) -> RawHit:
    """``received_at_ms`` carries the hit's position within its message, so order can be checked."""
    return RawHit(
        hit_id=f"m{message}-{seq}",
        kind="open",
        received_at_ms=seq,
        ip="198.51.100.7",
        user_agent="Mozilla/5.0",
        token_ok=token_ok,
        account="acme",
        campaign_id="spring",
        message_id=f"msg-{message}" if token_ok else "",
    )


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def consume(bootstrap: str, topics: Topics, group: str) -> list[BusRecord]:
    """Everything the topic holds for the group, from its committed offsets (or the start) to the end of
    every partition (nothing publishes meanwhile: the end is fixed), so a duplicate cannot hide after it."""
    source = KafkaSource(KafkaConfig(bootstrap), topics, group)
    await source.start()
    try:
        records: list[BusRecord] = []
        deadline = time.monotonic() + 60
        while not (ends := await source.end_offsets()):  # until the group gave this member its partitions
            assert time.monotonic() < deadline, "no partitions assigned"
            records += await source.fetch(1000, 0.5)
        read = {p: await source.committed(p) or 0 for p in ends}
        while True:
            for r in records:
                read[r.partition] = max(read[r.partition], r.offset + 1)
            if read == ends:
                return records
            assert time.monotonic() < deadline, f"read up to {read}, the topic ends at {ends}"
            records += await source.fetch(1000, 0.5)
    finally:
        await source.stop()


def hit_count(records: Iterable[BusRecord]) -> int:
    return sum(len(split_hits(r.value)) for r in records)


def assert_once_and_in_order(records: Iterable[BusRecord], sent: list[RawHit]) -> None:
    """Every hit once; each message's hits on one partition, in the order they were published (by offset,
    then by position within a record of many)."""
    placed_hits = [
        ((r.partition, r.offset, i), decode_hit(raw))
        for r in records
        for i, raw in enumerate(split_hits(r.value))
    ]
    assert len(placed_hits) == len(sent)
    assert sorted(h.hit_id for _, h in placed_hits) == sorted(h.hit_id for h in sent)
    per_message: dict[str, list[tuple[tuple[int, int, int], int]]] = collections.defaultdict(list)
    for place, hit in placed_hits:
        if hit.token_ok:
            per_message[hit.message_id].append((place, hit.received_at_ms))
    for message, placed in per_message.items():
        partitions = {p for (p, _, _), _ in placed}
        assert len(partitions) == 1, f"{message} is spread over partitions {partitions}"
        in_log_order = [seq for _, seq in sorted(placed)]
        assert in_log_order == sorted(in_log_order), f"{message} out of order: {in_log_order}"


def test_spool_payload_round_trip() -> None:
    assert unpack_keyed(pack_keyed(b"acme\x1fmsg-1", b"{}")) == (b"acme\x1fmsg-1", b"{}")
    assert unpack_keyed(pack_keyed(None, b"{}")) == (None, b"{}")
    assert unpack_keyed(pack_keyed(b"", b"")) == (b"", b"")


@pytest.mark.kafka
async def test_every_hit_once_and_each_message_on_one_partition_in_order(
    kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str, tmp_path: Path
) -> None:
    publisher = KafkaPublisher(KafkaConfig(kafka_bootstrap), kafka_topics, tmp_path / "spool")
    await publisher.start()
    assert publisher.mode is DeliveryMode.DIRECT
    sent: list[RawHit] = []
    for seq in range(40):  # interleaved, as they arrive at an edge
        sent.extend(make_hit(message, seq) for message in range(6))
        if seq % 4 == 0:
            sent.append(make_hit(99, seq, token_ok=False))  # unkeyed: any partition
    for hit in sent:
        publisher.publish(hit)
    await publisher.stop()

    state = publisher.state()
    assert state.acked_total == 250
    assert state.spooled_total == 0
    assert state.dropped_total == 0
    records = await consume(kafka_bootstrap, kafka_topics, kafka_group)
    assert_once_and_in_order(records, sent)


@pytest.mark.kafka
async def test_a_new_consumer_of_the_group_resumes_after_the_commit(
    kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str, tmp_path: Path
) -> None:
    publisher = KafkaPublisher(KafkaConfig(kafka_bootstrap), kafka_topics, tmp_path / "spool")
    await publisher.start()  # creates the topics
    await publisher.stop()
    # One hit per record (the edge sends many per record): this is about the source's offsets.
    producer = await KafkaConfig(kafka_bootstrap).started_producer("test-single-hits")
    try:
        for seq in range(10):
            for message in range(12):
                hit = make_hit(message, seq)
                await producer.send(kafka_topics.raw_hits, encode_hit(hit), key=hit.partition_key)
        await producer.flush()
    finally:
        await close_producer(producer, 10.0)

    first = KafkaSource(KafkaConfig(kafka_bootstrap), kafka_topics, kafka_group)
    await first.start()
    read: list[BusRecord] = []
    deadline = time.monotonic() + 30
    while len(read) < 120 and time.monotonic() < deadline:
        read += await first.fetch(500, 0.5)
    assert len(read) == 120
    # Commit the first three records of every partition; the rest is "read but not stored".
    by_partition: dict[int, list[BusRecord]] = collections.defaultdict(list)
    for record in read:
        by_partition[record.partition].append(record)
    await first.commit({p: rs[2].offset + 1 for p, rs in by_partition.items()})
    for p, rs in by_partition.items():
        assert await first.committed(p) == rs[2].offset + 1
    await first.stop()

    uncommitted = sorted((r.partition, r.offset) for rs in by_partition.values() for r in rs[3:])
    second = await consume(kafka_bootstrap, kafka_topics, kafka_group)
    assert sorted((r.partition, r.offset) for r in second) == uncommitted
    assert len(second) == 120 - 3 * len(by_partition)


@pytest.mark.kafka
async def test_dead_letter_keeps_the_bytes_and_says_why_and_where(
    kafka_bootstrap: str, kafka_topics: Topics, tmp_path: Path
) -> None:
    publisher = KafkaPublisher(KafkaConfig(kafka_bootstrap), kafka_topics, tmp_path / "spool")
    await publisher.start()  # creates the topics
    await publisher.stop()
    dead = DeadLetterPublisher(KafkaConfig(kafka_bootstrap), kafka_topics)
    await dead.start()
    source = BusRecord(value=b"\x00not json", partition=3, offset=41, topic=kafka_topics.raw_hits)
    await dead.send(source, "not JSON: unexpected character")
    await dead.stop()

    consumer = AIOKafkaConsumer(
        kafka_topics.dead_letter, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    (message,) = [m for ms in batches.values() for m in ms]
    assert message.value == b"\x00not json"
    assert dict(message.headers) == {
        "pixelpipe-reason": b"not JSON: unexpected character",
        "pixelpipe-source-topic": kafka_topics.raw_hits.encode(),
        "pixelpipe-source-partition": b"3",
        "pixelpipe-source-offset": b"41",
    }


@pytest.mark.kafka
async def test_hits_spooled_while_no_broker_answers_are_replayed_in_order_after_a_restart(
    kafka_bootstrap: str, kafka_topics: Topics, kafka_group: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    (closed_port,) = free_ports(1)  # nothing listens there
    offline = KafkaPublisher(
        KafkaConfig(f"127.0.0.1:{closed_port}"), kafka_topics, spool_dir, connect_timeout_s=1.0
    )
    await offline.start()  # must not fail: the edge keeps serving
    assert offline.mode is DeliveryMode.SPOOL
    assert offline.ready()
    before = [make_hit(message, seq) for seq in range(25) for message in range(4)]
    for hit in before:
        offline.publish(hit)
    await eventually(lambda: offline.state().spool_depth == 100, 30, "100 hits in the spool")
    await offline.stop()
    assert offline.state().spooled_total == 100
    assert offline.state().dropped_total == 0

    # The edge restarts with the broker back: the spool goes first, new hits queue behind it.
    online = KafkaPublisher(KafkaConfig(kafka_bootstrap), kafka_topics, spool_dir)
    await online.start()
    after = [make_hit(message, seq) for seq in range(25, 30) for message in range(4)]
    for hit in after:
        online.publish(hit)
    await eventually(
        lambda: online.state().acked_total == 120 and online.state().spool_depth == 0, 60, "the replay"
    )
    await online.stop()
    state = online.state()
    # The 20 new hits arrived while the replay ran, so they queued in the spool behind the old 100.
    assert state.spooled_total == 20
    assert state.replayed_total == 120
    assert state.mode is DeliveryMode.STOPPED
    assert not any(spool_dir.glob("*.seg"))

    records = await consume(kafka_bootstrap, kafka_topics, kafka_group)
    assert_once_and_in_order(records, before + after)


@pytest.mark.kafka
async def test_broker_outage_under_load_spools_and_replays_without_loss_or_duplicates(
    kafka_local_broker: LocalKafka, kafka_topics: Topics, kafka_group: str, tmp_path: Path
) -> None:
    bootstrap = kafka_local_broker.bootstrap
    publisher = KafkaPublisher(
        KafkaConfig(bootstrap),
        kafka_topics,
        tmp_path / "spool",
        stall_timeout_s=1.0,
        connect_timeout_s=2.0,
        reconnect_backoff_s=(0.1, 0.5),
    )
    await publisher.start()
    sent: list[RawHit] = []
    seq = 0

    def publish_round() -> None:
        nonlocal seq
        for message in range(5):
            hit = make_hit(message, seq)
            publisher.publish(hit)
            sent.append(hit)
        seq += 1

    for _ in range(10):
        publish_round()
    await eventually(lambda: publisher.state().acked_total == 50, 30, "the first 50 acknowledgements")

    await asyncio.to_thread(kafka_local_broker.down)
    # Load continues while the broker is away; the edge keeps accepting (publish never blocks).
    for _ in range(40):
        publish_round()
        assert publisher.ready()
        await asyncio.sleep(0.05)
    await eventually(lambda: publisher.state().spool_depth > 0, 30, "hits in the spool")
    assert publisher.mode is DeliveryMode.SPOOL
    assert not publisher.state().broker_reachable

    await asyncio.to_thread(kafka_local_broker.up)
    for _ in range(10):
        publish_round()
        await asyncio.sleep(0.01)
    await eventually(
        lambda: publisher.state().acked_total == 300 and publisher.state().spool_depth == 0,
        30,
        "every hit acknowledged after the outage",
    )
    assert publisher.mode is DeliveryMode.DIRECT
    await publisher.stop()
    state = publisher.state()
    assert state.dropped_total == 0
    assert state.spooled_total > 0
    assert state.replayed_total == state.spooled_total

    records = await consume(bootstrap, kafka_topics, kafka_group)
    assert_once_and_in_order(records, sent)


@pytest.mark.kafka
async def test_edge_stopped_during_an_outage_keeps_its_hits_for_the_next_start(
    kafka_local_broker: LocalKafka, kafka_topics: Topics, kafka_group: str, tmp_path: Path
) -> None:
    bootstrap = kafka_local_broker.bootstrap
    spool_dir = tmp_path / "spool"
    options = {"stall_timeout_s": 1.0, "connect_timeout_s": 2.0, "reconnect_backoff_s": (0.1, 0.5)}
    first = KafkaPublisher(KafkaConfig(bootstrap), kafka_topics, spool_dir, drain_timeout_s=1.0, **options)
    await first.start()
    await asyncio.to_thread(kafka_local_broker.down)
    # Not noticed yet: these are handed to the producer and wait, unacknowledged, in its window ...
    early = [make_hit(message, seq) for seq in range(4) for message in range(5)]
    for hit in early:
        first.publish(hit)
    await eventually(lambda: first.mode is DeliveryMode.SPOOL, 30, "the outage to be noticed")
    assert first.state().in_flight == 20
    # ... and these go to the spool.
    late = [make_hit(message, seq) for seq in range(4, 10) for message in range(5)]
    for hit in late:
        first.publish(hit)
    await eventually(lambda: first.state().spool_depth == 30, 30, "30 hits in the spool")
    await first.stop()  # SIGTERM while the broker is away
    assert first.state().spool_depth == 50  # the window went in front of the spool
    assert first.state().dropped_total == 0

    await asyncio.to_thread(kafka_local_broker.up)
    second = KafkaPublisher(KafkaConfig(bootstrap), kafka_topics, spool_dir, **options)
    await second.start()
    await eventually(lambda: second.state().spool_depth == 0, 60, "the replay")
    await second.stop()
    assert second.state().replayed_total == 50

    records = await consume(bootstrap, kafka_topics, kafka_group)
    assert_once_and_in_order(records, early + late)
