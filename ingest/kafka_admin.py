"""Kafka plumbing shared by the edge's publisher, the processors' source and the notice bus: topic creation
(with the configs `schemas.topics.Topics.configs` decides, applied to existing topics too), the compression
codec, and closing a producer without hanging on a broker that is away. Never creates or changes topics other
than those it is given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.codec import has_lz4
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)

# What the busy consumers (raw hits, notices) ask of a fetch: at least 64 KiB, or whatever there is after
# 25 ms. aiokafka's defaults (1 byte, 500 ms) answer every fetch as soon as one record arrives, so under load
# each consumer sends hundreds of small fetch requests a second, and each costs Python on both sides; this
# adds at most 25 ms to a hit's way.
BATCHED_FETCH: Final = {"fetch_min_bytes": 64 * 1024, "fetch_max_wait_ms": 25}

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


_TOPIC_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS


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


# Errors after which an idempotent producer is unusable (its sequence numbers or its producer id are no longer
# the broker's, e.g. after a broker restart lost its state): only a fresh producer recovers.
PRODUCER_FATAL: Final = (OutOfOrderSequenceNumber, ProducerFenced, ProducerClosed, UnknownProducerId)


class RenewingProducer:
    """An acked producer (`acked_producer`) that replaces itself after an error no retry on it can fix
    (`PRODUCER_FATAL`). The call that met the error still raises it, so the caller's own retry (the notice
    hub's, the dead-letter path's, the API's answer) reaches a fresh producer instead of failing the same way
    for ever. A producer that cannot be started raises `KafkaError` (or `OSError`) from `use`, and the next
    `use` tries again."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        *,
        start: Callable[..., Awaitable[Any]] | None = None,
        **options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._start = start or start_acked_producer
        self._options = options
        self._producer: Any = None
        self.renewals = 0

    async def start(self) -> None:
        if self._producer is None:
            self._producer = await self._start(self.bootstrap, self.client_id, **self._options)

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        """The current producer, for one send (or a few); renewed if they fail for good."""
        await self.start()
        producer = self._producer
        try:
            yield producer
        except PRODUCER_FATAL as exc:
            if self._producer is producer:
                self._producer = None
                self.renewals += 1
                log.warning(
                    "Kafka producer %s failed for good (%r); the next send starts a fresh one",
                    self.client_id,
                    exc,
                )
                await close_producer(producer, 0.0)
            raise

    async def stop(self, flush_timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_producer(producer, flush_timeout_s)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    timeout_s: float = 10.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, each with its ``configs`` (by name; `Topics.configs`), and
    bring the configs of those that exist into line (retention set by hand or by an older version is
    replaced: these settings are where it is decided). Returns the topics created. Failing to create raises
    `KafkaError`; failing to change an existing topic's configs (a broker that forbids it) is logged, since
    the topic still works."""
    wanted = {name: dict((configs or {}).get(name, {})) for name in names}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    created: list[str] = []
    async with asyncio.timeout(timeout_s):
        await admin.start()
        try:
            new = [
                NewTopic(name, partitions, replication_factor, topic_configs=topic_configs)
                for name, topic_configs in wanted.items()
            ]
            try:
                response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                response = None
            for error in response.topic_errors if response is not None else ():
                name, code = error[0], error[1]
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_EXISTS:
                    raise KafkaError(f"creating topic {name} failed: error {code} {error[2:]}")
            existing = {n: c for n, c in wanted.items() if c and n not in created}
            if existing:
                await _align_configs(admin, existing)
        finally:
            await admin.close()
    if created:
        log.info("created topics %s (%d partitions, replication %d)", created, partitions, replication_factor)
    return created


# DescribeConfigs' config_source (v1+): a value set on the topic itself, as opposed to broker or default ones.
_TOPIC_CONFIG_SOURCE: Final = 1


ConfigChanges = dict[str, tuple[str | None, str]]  # config -> (current value or None, wanted value)


def config_changes(wanted: Mapping[str, str], current: Mapping[str, str]) -> ConfigChanges:
    """The configs of ``wanted`` whose value differs from ``current`` (the topic's effective configs)."""
    return {k: (current.get(k), v) for k, v in wanted.items() if current.get(k) != v}


def altered_configs(wanted: Mapping[str, str], set_on_topic: Mapping[str, str]) -> dict[str, str]:
    """The full set of configs to send with AlterConfigs, which replaces every config set on the topic: those
    already set there (say, ``min.insync.replicas`` by an operator) kept, ours over them. (aiokafka has no
    IncrementalAlterConfigs.)"""
    return {**set_on_topic, **wanted}


async def _align_configs(admin: AIOKafkaAdminClient, wanted: Mapping[str, Mapping[str, str]]) -> None:
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
        )
    except KafkaError as exc:
        log.warning("cannot read the configs of topics %s to set their retention: %r", sorted(wanted), exc)
        return
    for response in described:
        for resource in response.resources:
            error_code, error_message, _, name, entries = resource[:5]
            if name not in wanted:
                continue
            if error_code != 0:
                log.warning("cannot read topic %s's configs: error %d %s", name, error_code, error_message)
                continue
            current = {entry[0]: entry[1] for entry in entries}
            changes = config_changes(wanted[name], current)
            if not changes:
                continue
            # v0 has is_default where v1+ has config_source in the same place
            on_topic = {
                entry[0]: entry[1]
                for entry in entries
                if (entry[3] == _TOPIC_CONFIG_SOURCE if response.API_VERSION >= 1 else not entry[3])
                and entry[1] is not None
            }
            await _alter(admin, name, altered_configs(wanted[name], on_topic), changes)


async def _alter(
    admin: AIOKafkaAdminClient,
    name: str,
    configs: Mapping[str, str],
    changes: ConfigChanges,
) -> None:
    shown = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(changes.items()))
    try:
        responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))])
    except KafkaError as exc:
        log.warning("cannot change the configs of topic %s (%s): %r", name, shown, exc)
        return
    for response in responses:
        for error_code, error_message, _, resource_name in response.resources:
            if error_code != 0:
                log.warning(
                    "cannot change the configs of topic %s (%s): error %d %s",
                    resource_name,
                    shown,
                    error_code,
                    error_message,
                )
                return
    log.info("topic %s: configs changed to pixelpipe's (%s)", name, shown)


async def close_producer(producer: Any, flush_timeout_s: float) -> None:
    """Stop a producer, waiting at most ``flush_timeout_s`` for it to deliver what it holds.

    aiokafka's ``stop`` flushes with no deadline, and an idempotent producer retries a dead broker forever,
    so after the deadline its pending batches are failed on purpose (our own window still holds the records;
    the caller spools them) and the stop then completes at once.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=max(flush_timeout_s, 0.0))
    if not done:
        # Private in aiokafka 0.14 (RecordAccumulator.fail_all): the one way to end the flush early.
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:
            unsent = [batch for queue in getattr(accumulator, "_batches", {}).values() for batch in queue]
            pending = getattr(accumulator, "_pending_batches", None)
            if isinstance(pending, set):
                # A batch that was sent once and re-queued for a retry still carries the callback that
                # removes it from this set when it completes; without this, failing it raises KeyError
                # in that callback (aiokafka 0.14) and asyncio logs a traceback per batch.
                pending.update(unsent)
            accumulator.fail_all(ProducerClosed())
            for batch in unsent:
                # fail_all also fails each unsent batch's drain waiter, which nobody awaits any more;
                # retrieve it so asyncio does not log one "exception was never retrieved" per batch.
                waiter = getattr(batch, "_drain_waiter", None)
                if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
                    waiter.exception()
        else:
            stopping.cancel()
    try:
        await stopping
    except (asyncio.CancelledError, KafkaError, OSError):
        pass
    except Exception:
        if done:
            raise
        # Failing batches under aiokafka's feet can race its sender: a produce request that fails after
        # fail_all re-queues a batch fail_all already retired (KeyError in reenqueue, 0.14). The producer is
        # being discarded and our window still holds its records: nothing to do.
        log.debug("abandoned Kafka producer stopped with an error", exc_info=True)
        with contextlib.suppress(Exception):
            await producer.client.close()  # what its stop did not reach
