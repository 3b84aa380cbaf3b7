"""The edge's delivery spool (`deliveries.spool`): what it takes survives a restart, a failed replay
acknowledges nothing, a replay the broker took empties it, and a full spool refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from deliveries.port import BusUnavailable
from deliveries.spool import DeliverySpool
from schemas.delivery_events import DeliveryEvent
from tests.deliveries_data import delivery

EVENTS = [delivery(f"s{i}", message_id=f"m{i}") for i in range(1100)]


async def test_taken_events_survive_a_restart_and_are_replayed_once_the_send_succeeds(tmp_path: Path) -> None:
    spool = DeliverySpool(tmp_path)
    await spool.open()
    await spool.take(EVENTS[:1000])
    await spool.take(EVENTS[1000:])
    assert spool.depth == 3  # records of up to 500 events
    await spool.close()

    again = DeliverySpool(tmp_path)
    await again.open()
    assert again.depth == 3

    async def broker_away(events: list[DeliveryEvent]) -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await again.replay(broker_away)
    assert again.depth == 3  # nothing acknowledged
    sent: list[DeliveryEvent] = []

    async def broker(events: list[DeliveryEvent]) -> None:
        sent.extend(events)

    assert await again.replay(broker) == 3
    assert (again.depth, sent) == (0, EVENTS)
    await again.close()
    reopened = DeliverySpool(tmp_path)
    await reopened.open()
    assert reopened.depth == 0  # the acknowledgement was made durable too
    await reopened.close()


async def test_a_full_spool_refuses_with_bus_unavailable(tmp_path: Path) -> None:
    spool = DeliverySpool(tmp_path, max_bytes=64 * 1024)
    await spool.open()
    try:
        await spool.take(EVENTS[:100])  # about 30 KB
        with pytest.raises(BusUnavailable, match="full"):
            await spool.take(EVENTS[100:500])
    finally:
        await spool.close()
