"""How pixelpipe talks to Kafka: one frozen `KafkaConfig`, built once from the settings by the wiring, builds
every producer, consumer and admin client of every role, so that the servers, the client names, the
acknowledgements and the compression are decided here and nowhere else.

Never creates topics (`bus.topics`) and never sends or reads a record itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.codec import has_lz4

from bus.renewing_producer import RenewingProducer

# What the busy consumers (raw hits, notices) ask of a fetch: at least 64 KiB, or whatever there is after
# 25 ms. aiokafka's defaults (1 byte, 500 ms) answer every fetch as soon as one record arrives, so under load
# each consumer sends hundreds of small fetch requests a second, and each costs Python on both sides; this
# adds at most 25 ms to a hit's way.
BATCHED_FETCH: Final = {"fetch_min_bytes": 64 * 1024, "fetch_max_wait_ms": 25}


def default_compression() -> str:
    """lz4 when aiokafka can do it (it needs cramjam), else gzip, which needs nothing."""
    return "lz4" if has_lz4() else "gzip"


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the brokers are and how every client of this process talks to them.

    ``client_id`` names the process's clients: each is ``{client_id}-{role}`` (``pixelpipe-edge``,
    ``pixelpipe-processor``, ...), so a broker's logs and quotas tell them apart. ``partitions`` and
    ``replication_factor`` are those of the topics pixelpipe creates (`bus.topics`; the privacy topic has one
    partition)."""

    bootstrap: str
    client_id: str = "pixelpipe"
    partitions: int = 6
    replication_factor: int = 1
    compression: str = field(default_factory=default_compression)

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ValueError("Kafka needs at least one bootstrap server")
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError("topics need at least one partition and one replica")

    def client(self, role: str) -> str:
        """The client id of ``role``'s clients."""
        return f"{self.client_id}-{role}"

    def producer(self, role: str, **options: Any) -> AIOKafkaProducer:
        """A producer (not started) whose sends return once every in-sync replica has the record
        (``acks=all``), idempotent (a retried send is stored once), compressed: what every producer of
        pixelpipe needs. ``options`` are further `AIOKafkaProducer` settings (e.g. ``linger_ms``)."""
        return self._acked(self.bootstrap, self.client(role), **options)

    async def started_producer(self, role: str, **options: Any) -> AIOKafkaProducer:
        """`producer`, started."""
        return await self._start_acked(self.bootstrap, self.client(role), **options)

    def renewing_producer(self, role: str, **options: Any) -> RenewingProducer:
        """A `producer` that replaces itself after an error no retry on it can fix (the dead letters, the
        notices and the privacy changes)."""
        return RenewingProducer(self.bootstrap, self.client(role), start=self._start_acked, **options)

    def consumer(
        self, role: str, *, group_id: str | None, batched: bool = False, **options: Any
    ) -> AIOKafkaConsumer:
        """A consumer (not started, subscribed to nothing) that never commits by itself: pixelpipe commits
        what it has stored (a group) or nothing (no group). ``batched``: `BATCHED_FETCH`, for the busy
        topics. ``options`` are further `AIOKafkaConsumer` settings (e.g. ``auto_offset_reset``)."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client(role),
            group_id=group_id,
            enable_auto_commit=False,
            **(BATCHED_FETCH if batched else {}),
            **options,
        )

    def admin(self, timeout_s: float) -> AIOKafkaAdminClient:
        """An admin client (not started) whose requests give up after ``timeout_s``."""
        return AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=self.client("admin"),
            request_timeout_ms=int(timeout_s * 1000),
        )

    def _acked(self, bootstrap: str, client_id: str, **options: Any) -> AIOKafkaProducer:
        options.setdefault("compression_type", self.compression)
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, enable_idempotence=True, acks="all", **options
        )

    async def _start_acked(self, bootstrap: str, client_id: str, **options: Any) -> AIOKafkaProducer:
        # What `RenewingProducer` calls to start each of its producers, with the servers and name it was
        # given here.
        producer = self._acked(bootstrap, client_id, **options)
        await producer.start()
        return producer
