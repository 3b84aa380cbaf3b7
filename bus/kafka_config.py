"""How pixelpipe talks to Kafka: the options every producer and consumer of every role shares.

Never creates topics (`bus.topics`) and never sends or reads a record itself.
"""

from __future__ import annotations

from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4

# What the busy consumers (raw hits, notices) ask of a fetch: at least 64 KiB, or whatever there is after
# 25 ms. aiokafka's defaults (1 byte, 500 ms) answer every fetch as soon as one record arrives, so under load
# each consumer sends hundreds of small fetch requests a second, and each costs Python on both sides; this
# adds at most 25 ms to a hit's way.
BATCHED_FETCH: Final = {"fetch_min_bytes": 64 * 1024, "fetch_max_wait_ms": 25}


def default_compression() -> str:
    """lz4 when aiokafka can do it (it needs cramjam), else gzip, which needs nothing."""
    return "lz4" if has_lz4() else "gzip"


def acked_producer(bootstrap: str, client_id: str, **options: Any) -> AIOKafkaProducer:
    """A producer (not started) whose sends return once every in-sync replica has the record
    (``acks=all``), idempotent (a retried send is stored once), compressed (`default_compression` unless
    ``compression_type`` is given): what every producer of pixelpipe needs. ``options`` are further
    `AIOKafkaProducer` settings (e.g. ``linger_ms``)."""
    options.setdefault("compression_type", default_compression())
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id=client_id, enable_idempotence=True, acks="all", **options
    )


async def start_acked_producer(bootstrap: str, client_id: str, **options: Any) -> AIOKafkaProducer:
    """`acked_producer`, started (the dead letters, the notices and the privacy changes)."""
    producer = acked_producer(bootstrap, client_id, **options)
    await producer.start()
    return producer
