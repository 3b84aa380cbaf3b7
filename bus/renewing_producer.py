"""Producers that outlive a broker restart: `RenewingProducer` replaces an idempotent producer after an error
no retry on it can fix, and `close_producer` stops a producer without hanging on a broker that is away.
Never builds a producer itself: `bus.kafka_config.KafkaConfig` does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)

log = logging.getLogger(__name__)

# Errors after which an idempotent producer is unusable (its sequence numbers or its producer id are no longer
# the broker's, e.g. after a broker restart lost its state): only a fresh producer recovers.
PRODUCER_FATAL: Final = (OutOfOrderSequenceNumber, ProducerFenced, ProducerClosed, UnknownProducerId)


class RenewingProducer:
    """An acked producer (`bus.kafka_config.KafkaConfig.renewing_producer` builds it) that replaces itself
    after an error no retry on it can fix (`PRODUCER_FATAL`). The call that met the error still raises it, so
    the caller's own retry (the notice hub's, the dead-letter path's, the API's answer) reaches a fresh
    producer instead of failing the same way for ever. A producer that cannot be started raises `KafkaError`
    (or `OSError`) from `use`, and the next `use` tries again."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        *,
        start: Callable[..., Awaitable[Any]],
        **options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._start = start  # (bootstrap, client_id, **options) -> a started producer
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
