"""The processors store campaign-pixel opens exactly once, with the batch they came in (real chDB, the
in-process bus): a record delivered again (a crash between the insert and the commit) or a replay that
overlaps it counts each open once; a malformed line is a dead letter and the rest of its record is stored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bus.memory import MemoryBus
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.aggregate_opens import AggregateOpen, encode_aggregate
from schemas.events import encode_hit, join_hits
from schemas.store import Store
from tests.integration.helpers import BROWSER, RESIDENTIAL, human_open

DATA = Path(__file__).parent.parent / "data"


AT = human_open(0, messages=1).received_at_ms


def _opens(first: int, count: int) -> list[bytes]:
    return [
        encode_aggregate(AggregateOpen(f"{AT:012x}{i:016x}", "acme", "c", AT, RESIDENTIAL, BROWSER))
        for i in range(first, first + count)
    ]


def _counted(store: Store) -> tuple[int, int]:
    db = store.database
    hits, rows = store.query(f"SELECT uniqExact(hit), count() FROM {db}.aggregate_opens")[0]
    return int(hits), int(rows)


async def test_each_campaign_pixel_open_is_stored_once_however_often_its_record_comes(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MemoryBus(capacity=100)
    processor = HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges())
    runner = HitRunner(source=bus, store=store, processor=processor, flush_interval_s=0.0)
    record = join_hits([*_opens(0, 3), encode_hit(human_open(1, messages=1))])
    bus.publish_encoded(None, record)
    await runner.step()
    assert _counted(store) == (3, 3)
    bus.publish_encoded(None, record)  # delivered again: the same batch, the same deduplication token
    await runner.step()
    assert _counted(store) == (3, 3)
    bus.publish_encoded(None, join_hits([*_opens(1, 3)]))  # a replay overlapping it: two old, one new
    await runner.step()
    assert _counted(store)[0] == 4  # exact before any merge
    store.command(f"OPTIMIZE TABLE {store.database}.aggregate_opens FINAL")
    assert _counted(store) == (4, 4)
    assert store.query(f"SELECT count() FROM {store.database}.events") == [(1,)]

    fields = '"campaign_id":"c","received_at_ms":1,"ip":"","user_agent":"","v":1'
    broken = ('{"aggregate_of":"x","account":"",' + fields + "}").encode()
    bus.publish_encoded(None, join_hits([broken, *_opens(10, 1)]))
    with caplog.at_level(logging.INFO, logger="processors.runner"):
        await runner.step()
    assert _counted(store)[0] == 5
    letters = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter ")]
    assert letters == ["dead letter memory:0:3: an aggregate open names its id and account"]
