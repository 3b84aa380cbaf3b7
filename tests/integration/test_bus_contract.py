"""One contract for the bus port, run against both adapters: the in-process `MemoryBus` and Kafka."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.kafka_config import KafkaConfig
from bus.memory import MemoryBus
from bus.port import BusRecord, HitPublisher, HitSource
from schemas.events import RawHit, decode_hit, split_hits
from schemas.topics import Topics


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[HitPublisher, HitSource]]:
    if request.param == "memory":
        memory = MemoryBus(capacity=10_000)
        yield memory, memory
        return
    from ingest.kafka_publisher import KafkaPublisher
    from processors.kafka_source import KafkaSource

    bootstrap = request.getfixturevalue("kafka_bootstrap")
    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}")
    publisher = KafkaPublisher(KafkaConfig(bootstrap), topics, spool_dir=tmp_path / "spool")
    source = KafkaSource(KafkaConfig(bootstrap), topics, f"g{uuid.uuid4().hex[:10]}")
    await publisher.start()
    await source.start()
    yield publisher, source
    await publisher.stop()
    await source.stop()


def _hit(i: int, message: int) -> RawHit:
    return RawHit(
        hit_id=f"{i:08d}",
        kind="open",
        received_at_ms=int(time.time() * 1000),
        ip="81.2.69.160",
        user_agent="UA",
        token_ok=True,
        account="acme",
        campaign_id="c",
        message_id=f"m{message}",
        sent_at=1,
    )


async def _drain(source: HitSource, expected: int, timeout_s: float = 30) -> list[BusRecord]:
    records: list[BusRecord] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(split_hits(r.value)) for r in records) < expected and time.monotonic() < deadline:
        records += await source.fetch(1000, 0.5)
    return records


async def test_every_hit_arrives_once_in_order_per_message(bus: tuple[HitPublisher, HitSource]) -> None:
    publisher, source = bus
    for i in range(500):
        publisher.publish(_hit(i, message=i % 7))
    assert publisher.ready()
    records = await _drain(source, 500)
    placed = [(r, decode_hit(raw)) for r in records for raw in split_hits(r.value)]  # in log order
    assert sorted(h.hit_id for _, h in placed) == [f"{i:08d}" for i in range(500)]
    for message in range(7):
        mine = [(r, h) for r, h in placed if h.message_id == f"m{message}"]
        assert len({r.partition for r, _ in mine}) == 1  # one message, one partition
        ids = [h.hit_id for _, h in mine]
        assert ids == sorted(ids)  # in the order they were published
    next_offsets = {}
    for r in records:
        next_offsets[r.partition] = max(next_offsets.get(r.partition, 0), r.offset + 1)
    await source.commit(next_offsets)
    # Nothing else is on the bus: one more hit of every message, published now, is all that is read next (a
    # duplicate of an earlier hit would come before it, on its message's partition).
    for message in range(7):
        publisher.publish(_hit(500 + message, message=message))
    later = await _drain(source, 7)
    assert sorted(decode_hit(raw).hit_id for r in later for raw in split_hits(r.value)) == [
        f"{i:08d}" for i in range(500, 507)
    ]


async def test_the_memory_bus_is_bounded_and_counts_what_it_drops() -> None:
    from bus import metrics

    bus = MemoryBus(capacity=100)
    dropped = metrics.BUS_DROPPED._value.get()
    for i in range(150):
        bus.publish(_hit(i, 0))
    assert bus.depth == 100
    assert not bus.ready()
    assert metrics.BUS_DROPPED._value.get() - dropped == 50
    assert len(await bus.fetch(1000, 0.1)) == 100
