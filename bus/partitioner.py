"""Which partition a key's records go to: Kafka's default partitioner (murmur2), for producers that group
records by partition themselves (the edge's publisher, the notice producer). Never sends anything."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER: Final = DefaultPartitioner()


class KeyPartitions:
    """The partition Kafka's default partitioner (murmur2) picks for a key, for producers that group records
    by partition themselves (many hits or notices per record) and still want a key's records in order on
    one partition, the same one a keyed send would pick. aiokafka's murmur2 is pure Python, so each key's
    partition is remembered (up to ``cache_keys`` keys, then forgotten at once); the memory is dropped when
    the topic's partitions change. A record without a key goes to the partitions in turn."""

    def __init__(self, cache_keys: int = 100_000) -> None:
        self._cache_keys = cache_keys
        self._partitions: list[int] = []
        self._of: dict[bytes, int] = {}
        self._turn = 0

    def use(self, partitions: Iterable[int]) -> None:
        """The topic's partitions, as its metadata lists them now."""
        ordered = sorted(partitions)
        if ordered != self._partitions:
            self._partitions, self._of = ordered, {}

    def __call__(self, key: bytes | None) -> int:
        if key is None:
            self._turn += 1
            return self._partitions[self._turn % len(self._partitions)]
        p = self._of.get(key)
        if p is None:
            if len(self._of) >= self._cache_keys:
                self._of = {}
            p = self._of[key] = _PARTITIONER(key, self._partitions, self._partitions)
        return p
