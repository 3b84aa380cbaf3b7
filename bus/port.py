"""The bus port: how raw hits travel from the edge to the processors.

Two adapters implement it: `bus.memory.MemoryBus` (one process, bounded, in memory) and Kafka: the edge's
`ingest.kafka_publisher.KafkaPublisher` and the processors' `processors.kafka_source.KafkaSource`. The
processors' loop reads `BusRecord`s from a `HitSource` and commits the next offset to read per partition once
the rows are in ClickHouse, so the same loop runs on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas.events import RawHit


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One message read from the bus: its bytes and where it came from."""

    value: bytes
    partition: int
    offset: int
    topic: str = "memory"

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


class HitPublisher(Protocol):
    """The edge's side. `publish` never blocks and never raises: the pixel is already answered."""

    async def start(self) -> None: ...

    def publish(self, hit: RawHit) -> None: ...

    def ready(self) -> bool: ...

    async def stop(self) -> None: ...


@runtime_checkable
class EncodedHitPublisher(HitPublisher, Protocol):
    """A publisher that also takes hits already encoded: the edge's native fast path writes the line."""

    def publish_encoded(self, key: bytes | None, value: bytes) -> None: ...


class HitSource(Protocol):
    """The processors' side. Offsets are committed only after the rows they produced are stored."""

    async def start(self) -> None: ...

    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]: ...

    async def commit(self, next_offsets: Mapping[int, int]) -> None: ...

    async def stop(self) -> None: ...
