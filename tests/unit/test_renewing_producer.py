"""`bus.renewing_producer.RenewingProducer`: after an error an idempotent producer cannot recover from (such
as OutOfOrderSequenceNumber once a restarted broker lost its producer state), the failing send still raises,
and the next send gets a fresh producer instead of failing the same way for ever. Other errors keep the
producer. (A real broker cannot be made to answer OutOfOrderSequenceNumber on demand; the producers here
are stand-ins that count what is done to them.)"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from bus.renewing_producer import RenewingProducer


class _Producer:
    def __init__(self, number: int) -> None:
        self.number = number
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


class _Starts:
    def __init__(self) -> None:
        self.started: list[_Producer] = []
        self.options: list[dict[str, Any]] = []

    async def __call__(self, bootstrap: str, client_id: str, **options: Any) -> _Producer:
        assert (bootstrap, client_id) == ("127.0.0.1:9092", "test")
        self.options.append(options)
        producer = _Producer(len(self.started))
        self.started.append(producer)
        return producer


async def _send_failing(renewing: RenewingProducer, error: Exception) -> None:
    async with renewing.use():
        raise error


async def test_a_fatal_error_renews_the_producer_and_still_raises() -> None:
    starts = _Starts()
    renewing = RenewingProducer("127.0.0.1:9092", "test", start=starts, linger_ms=5)
    await renewing.start()
    with pytest.raises(OutOfOrderSequenceNumber):
        await _send_failing(renewing, OutOfOrderSequenceNumber())
    assert starts.started[0].stopped  # the broken one is closed
    async with renewing.use() as producer:
        assert producer.number == 1  # the next send gets a fresh producer
    assert renewing.renewals == 1
    assert starts.options == [{"linger_ms": 5}, {"linger_ms": 5}]


async def test_other_errors_keep_the_producer() -> None:
    starts = _Starts()
    renewing = RenewingProducer("127.0.0.1:9092", "test", start=starts)
    with pytest.raises(KafkaTimeoutError):
        await _send_failing(renewing, KafkaTimeoutError())
    async with renewing.use() as producer:
        assert producer.number == 0
    assert renewing.renewals == 0
    await renewing.stop(0.0)
    assert starts.started[0].stopped
