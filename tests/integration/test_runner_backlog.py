"""A backlog read in records of many hits (what the edge publishes) is a backlog: held clicks wait for their
burst partners instead of being released by the wall clock.

The runner, the real processor and chDB, fed through the in-process bus with newline-delimited records,
stepped by hand under a fixed clock a minute after the hits. Click A (link 0) and click B (link 1) of one
message are 200 ms apart: a link scanner's burst, so neither may count. A arrives in one fetch, B in the
next; when the runner took a fetch of a few records for "caught up" (it counted records, not hits), A was
released by the wall clock at once and counted as a human click.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client import REGISTRY

from bus.memory import MemoryBus
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit, join_hits
from schemas.store import Store
from tests.integration.helpers import human_open

DATA = Path(__file__).parent.parent / "data"
OPENS_PER_RECORD = 60


def _click(base: RawHit, hit_id: str, link_index: int, at_ms: int) -> RawHit:
    return dataclasses.replace(
        base,
        hit_id=hit_id,
        kind="click",
        received_at_ms=at_ms,
        link_index=link_index,
        url=f"https://shop.example.com/{link_index}",
    )


def _record(click: RawHit, first: int) -> bytes:
    """The click and ``OPENS_PER_RECORD`` human opens of other messages, as one bus record."""
    opens = [
        dataclasses.replace(human_open(i, messages=10**6), received_at_ms=click.received_at_ms)
        for i in range(first, first + OPENS_PER_RECORD)
    ]
    return join_hits([encode_hit(click), *(encode_hit(hit) for hit in opens)])


def _processed(kind: str, verdict: str) -> float:
    labels = {"kind": kind, "verdict": verdict}
    return REGISTRY.get_sample_value("pixelpipe_processed_hits_total", labels) or 0.0


async def test_a_burst_split_over_two_fetches_of_a_backlog_counts_no_click(store: Store) -> None:
    counted = [("open", "human"), ("click", "human"), ("click", "bot")]
    counters = {key: _processed(*key) for key in counted}
    base = human_open(0, messages=1)  # message m0 of acme's campaign c
    at_ms = base.received_at_ms
    bus = MemoryBus(capacity=100)
    runner = HitRunner(
        source=bus,
        store=store,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.05,
        max_batch=50,  # hits per insert; a fetch of 61 hits is a full one
        clock=lambda: at_ms / 1000 + 60,  # a minute after the hits: the runner is behind
    )
    bus.publish_encoded(None, _record(_click(base, "a" * 28, 0, at_ms), first=1))
    await runner.step()
    assert len(runner.window) == 1  # click A is held: its partner may still be unread
    bus.publish_encoded(None, _record(_click(base, "b" * 28, 1, at_ms + 200), first=1000))
    await runner.step()
    await runner.step()  # nothing more to read: caught up, and the wall clock releases click A
    assert len(runner.window) == 0
    await runner.step()  # one flush interval later, A's row is inserted
    db = store.database
    human_clicks = store.query(f"SELECT count() FROM {db}.events WHERE kind = 'click' AND verdict = 'human'")
    assert human_clicks == [(0,)]
    bursts = store.query(
        f"SELECT hit_id, reason FROM {db}.filtered_hits WHERE kind = 'click' ORDER BY hit_id"
    )
    assert bursts == [("a" * 28, "click_burst"), ("b" * 28, "click_burst")]
    opens = store.query(f"SELECT count() FROM {db}.events WHERE kind = 'open' AND verdict = 'human'")
    assert opens == [(2 * OPENS_PER_RECORD,)]
    # The processed-hits counter says the same, per kind and verdict (counted once per flush and pair).
    assert {key: _processed(*key) - before for key, before in counters.items()} == {
        ("open", "human"): 2 * OPENS_PER_RECORD,
        ("click", "human"): 0,
        ("click", "bot"): 2,
    }
