"""The edge's spool of delivery events while Kafka is away: `DeliverySpool` takes a request's events durably
(written and fsynced before `take` returns, so the ingest may answer 2xx) and hands them back, oldest first,
to be replayed once the broker answers again. The framing, bounds and crash safety are `ingest.spool.Spool`'s;
one spool record is one bus record's worth of events (`schemas.delivery_events.encode_deliveries`).

A record is acknowledged (and its segment deleted) only after the broker acknowledged its replay; a crash
in between replays it again: the events' ``delivery_id`` makes the repeat count once. Never drops what it
took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from deliveries.port import BusUnavailable
from ingest.spool import Spool
from schemas.delivery_events import DeliveryEvent, MalformedDelivery, decode_deliveries, encode_deliveries

log = logging.getLogger(__name__)

RECORD_EVENTS: Final = 500  # events per spool record (well under its 1 MiB record limit)
REPLAY_RECORDS: Final = 20  # spool records replayed per step


def _payloads(events: Sequence[DeliveryEvent]) -> list[bytes]:
    return [encode_deliveries(events[i : i + RECORD_EVENTS]) for i in range(0, len(events), RECORD_EVENTS)]


def _events_of(payload: bytes) -> list[DeliveryEvent]:
    try:
        return decode_deliveries(payload)
    except MalformedDelivery as exc:  # written by `take`, checked by its CRC: a version this one cannot read
        log.error("a spooled delivery record cannot be read (%s); skipped", exc)  # noqa: TRY400 - the reason says it
        return []


class DeliverySpool:
    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._spool: Spool | None = None
        self._lock = asyncio.Lock()  # one append or acknowledgement (and its fsync) at a time

    async def open(self) -> None:
        self._spool = await asyncio.to_thread(Spool, self.directory, max_bytes=self.max_bytes)

    @property
    def depth(self) -> int:
        """Records waiting (not acknowledged)."""
        return self._spool.depth if self._spool is not None else 0

    async def take(self, events: Sequence[DeliveryEvent]) -> None:
        """Durable when it returns; `BusUnavailable` when the spool is full or unwritable (what it wrote of
        the request stays, and is replayed: the provider's retry of the rest repeats it, counted once)."""
        spool = self._spool
        if spool is None:
            raise BusUnavailable("the delivery spool is not open")
        payloads = _payloads(events)
        async with self._lock:
            try:
                taken = spool.append_many(payloads)
                await self._sync(spool)
            except OSError as exc:
                raise BusUnavailable(f"the delivery spool could not be written: {exc}") from exc
        if taken < len(payloads):
            raise BusUnavailable(f"the delivery spool at {self.directory} is full")

    async def replay(self, send: Callable[[list[DeliveryEvent]], Awaitable[None]]) -> int:
        """Hand the oldest records' events to ``send`` (which returns once the broker acknowledged them) and
        acknowledge them; the records replayed. On a failure nothing is acknowledged and it raises."""
        spool = self._spool
        if spool is None or not spool.depth:
            return 0
        payloads = spool.read(REPLAY_RECORDS)
        try:
            await send([e for payload in payloads for e in _events_of(payload)])
        except BaseException:
            spool.rewind()
            raise
        async with self._lock:
            spool.ack(len(payloads))
            await self._sync(spool)
        return len(payloads)

    async def close(self) -> None:
        if self._spool is not None:
            async with self._lock:
                await asyncio.to_thread(self._spool.close)
            self._spool = None

    @staticmethod
    async def _sync(spool: Spool) -> None:
        plan = spool.begin_sync()
        running = asyncio.ensure_future(asyncio.to_thread(spool.run_sync, plan))
        try:
            await asyncio.shield(running)
        finally:
            # Cancelled meanwhile (a stop): the fsync goes on in its thread; the spool's next sync (at close)
            # must not start before it ends.
            await asyncio.wait({running})
            spool.end_sync(plan)
