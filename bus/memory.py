"""The in-memory adapter of the bus port (`bus.port`): one process, bounded, no durability. Never blocks the
publisher and never drops a hit without counting it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import TypeVar

from bus import metrics
from bus.port import BusRecord
from schemas.events import RawHit, encode_hit

T = TypeVar("T")


async def take(queue: collections.deque[T], wakeup: asyncio.Event, most: int, timeout_s: float) -> list[T]:
    """The fetch of an in-process queue: up to ``most`` of its oldest items, waiting at most ``timeout_s``
    (for ``wakeup``, set by its publisher) while it is empty. Also the in-process delivery bus's."""
    if not queue:
        wakeup.clear()
        try:
            await asyncio.wait_for(wakeup.wait(), timeout_s)
        except TimeoutError:
            return []
    taken: list[T] = []
    while queue and len(taken) < most:
        taken.append(queue.popleft())
    return taken


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
        return await take(self._queue, self._wakeup, max_records, timeout_s)

    async def commit(self, next_offsets: Mapping[int, int]) -> None:
        return None  # nothing durable to commit in memory

    async def stop(self) -> None:
        return None
