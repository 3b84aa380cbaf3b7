"""The bus port: how raw hits travel from the edge to the processors.

Two adapters implement it: `MemoryBus` (one process, bounded, in memory) and the Kafka adapter in
`ingest.kafka_bus`. The processors' loop reads `BusRecord`s from a `HitSource` and commits the next offset to
read per partition once the rows are in ClickHouse, so the same loop runs on both.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ingest import metrics
from schemas.events import RawHit, encode_hit


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


class MemoryBus:
    """In-process bus, bounded to ``capacity`` hits.

    Overflow: when the processors fall this far behind, a new hit is dropped and counted in
    ``pixelpipe_bus_dropped_total`` (the pixel is still answered). Memory stays bounded; nothing is dropped
    silently. Both sides run on one event loop.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queue: collections.deque[BusRecord] = collections.deque()
        self._next_offset = 0
        self._wakeup = asyncio.Event()
        metrics.BUS_DEPTH.set_function(lambda: len(self._queue))

    # -- publisher side
    async def start(self) -> None:
        return None

    def publish(self, hit: RawHit) -> None:
        self.publish_encoded(None, encode_hit(hit))

    def publish_encoded(self, key: bytes | None, value: bytes) -> None:
        """`publish` of a hit already encoded (the edge's native fast path); one partition: no key."""
        if len(self._queue) >= self.capacity:
            metrics.BUS_DROPPED.inc()
            return
        self._queue.append(BusRecord(value, 0, self._next_offset))
        self._next_offset += 1
        metrics.HITS_PUBLISHED.inc()
        self._wakeup.set()

    def ready(self) -> bool:
        return len(self._queue) < self.capacity

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- source side
    async def fetch(self, max_records: int, timeout_s: float) -> list[BusRecord]:
        if not self._queue:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout_s)
            except TimeoutError:
                return []
        batch: list[BusRecord] = []
        while self._queue and len(batch) < max_records:
            batch.append(self._queue.popleft())
        return batch

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        return None  # nothing durable to commit in memory

    async def stop(self) -> None:
        return None
