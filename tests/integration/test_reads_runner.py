"""Read records through the processor on real chDB (issue 18): stored in ``reads`` with the batch they came
in, handed to ``on_reads_stored`` with their open's classification, a malformed one dead-lettered alone, a
do-not-track recipient's dropped, the same batch read again stored once, and a record read again in another
batch one row for the API's exact read (FINAL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import REGISTRY

from bus.port import BusRecord
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from processors.reads import StoredRead
from processors.runner import HitRunner
from schemas.events import RawHit, encode_hit, join_hits
from schemas.reads import encode_read
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring, recipient_tag
from schemas.verdicts import Verdict
from tests.integration.helpers import CollectedDeadLetters, ListSource, human_open, read_record

DATA = Path(__file__).parent.parent / "data"
KEYS = Keyring(((1, b"k" * 32),))
MPP_UA = "Mozilla/5.0"  # a bare Mozilla from Apple's space: the MPP prefetch


def tag(recipient: str) -> str:
    return recipient_tag(KEYS.keys[0][1], "acme", recipient).hex()


def an_open(i: int, recipient: str) -> RawHit:
    return dataclasses.replace(human_open(i, messages=1000), recipient_tag=tag(recipient))


async def run(
    store: Store,
    values: Sequence[bytes],
    *,
    dnt: DoNotTrack | None = None,
    dead: CollectedDeadLetters | None = None,
) -> tuple[list[StoredRead], ListSource]:
    handed: list[StoredRead] = []
    source = ListSource([BusRecord(v, 0, offset, "raw-hits") for offset, v in enumerate(values)])
    runner = HitRunner(
        source=source,
        store=store,
        processor=HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges()),
        flush_interval_s=0.01,
        max_batch=1000,
        dead_letters=dead,
        on_reads_stored=handed.extend,
        do_not_track=dnt,
    )
    while source.records:
        await runner.step()
    for _ in range(3):
        await runner.step()
    return handed, source


def stored_reads(store: Store) -> list[tuple[str, int, str, str]]:
    db = store.database
    rows = store.query(f"SELECT read_of, read_ms, `end`, source FROM {db}.reads FINAL ORDER BY read_of")
    return [(str(a), int(b), str(c), str(d)) for a, b, c, d in rows]


async def test_a_read_record_is_stored_with_its_batch_and_handed_on_with_its_opens_classification(
    store: Store,
) -> None:
    ann, machine = an_open(1, "ann@example.com"), an_open(2, "bob@example.com")
    machine = dataclasses.replace(machine, user_agent=MPP_UA, ip="17.58.63.200")  # Apple's prefetch relay
    unknown_open = read_record(an_open(3, "cy@example.com"), 3_000)  # its open was never seen here
    before = REGISTRY.get_sample_value("pixelpipe_reads_total", {"outcome": "stored"}) or 0.0
    handed, source = await run(
        store,
        [
            join_hits([encode_hit(ann), encode_hit(machine)]),
            join_hits([encode_read(read_record(ann, 9_500)), encode_read(read_record(machine, 4_000))]),
            encode_read(unknown_open),
        ],
    )
    assert stored_reads(store) == [
        (ann.hit_id, 9_500, "closed", "raw-hits:0:1"),
        (machine.hit_id, 4_000, "closed", "raw-hits:0:1"),
        (unknown_open.read_of, 3_000, "closed", "raw-hits:0:2"),
    ]
    assert [(r.record.read_of, r.category) for r in handed] == [
        (ann.hit_id, "read"),
        (machine.hit_id, "unknown"),
        (unknown_open.read_of, None),
    ]
    assert [r.open.verdict if r.open else None for r in handed] == [Verdict.HUMAN, Verdict.MACHINE, None]
    assert source.commits[-1] == {0: 3}
    assert REGISTRY.get_sample_value("pixelpipe_reads_total", {"outcome": "stored"}) == before + 3


async def test_a_malformed_read_record_is_dead_lettered_alone_and_a_suppressed_recipients_is_dropped(
    store: Store,
) -> None:
    ann, bob = an_open(1, "ann@example.com"), an_open(2, "bob@example.com")
    dnt = DoNotTrack(KEYS)
    dnt.add("acme", "bob@example.com")
    dead = CollectedDeadLetters()
    malformed = b'{"read_of":"x","v":1}'
    suppressed = REGISTRY.get_sample_value("pixelpipe_reads_total", {"outcome": "suppressed"}) or 0.0
    handed, source = await run(
        store,
        [
            join_hits(
                [
                    encode_hit(ann),
                    encode_read(read_record(ann, 1_500)),
                    malformed,
                    encode_read(read_record(bob, 5_000)),
                ]
            )
        ],
        dnt=dnt,
        dead=dead,
    )
    assert stored_reads(store) == [(ann.hit_id, 1_500, "closed", "raw-hits:0:0")]
    assert [r.category for r in handed] == ["glanced"]
    assert [(r.value, r.offset) for r, _ in dead.letters] == [(malformed, 0)]
    assert dead.letters[0][1].startswith("missing fields: account")
    assert REGISTRY.get_sample_value("pixelpipe_reads_total", {"outcome": "suppressed"}) == suppressed + 1
    assert source.commits[-1] == {0: 1}


async def test_a_read_record_read_again_is_one_row(store: Store) -> None:
    ann = an_open(1, "ann@example.com")
    batch = join_hits([encode_hit(ann), encode_read(read_record(ann, 6_000))])
    await run(store, [batch])
    await run(store, [batch])  # the same batch again (a crash before the commit): deduplicated by its token
    db = store.database
    assert store.query(f"SELECT count() FROM {db}.reads") == [(1,)]
    await run(store, [encode_read(read_record(ann, 6_000))])  # in another batch: one row read exactly
    assert stored_reads(store) == [(ann.hit_id, 6_000, "closed", "raw-hits:0:0")]
    assert store.query(f"SELECT count() FROM {db}.reads FINAL") == [(1,)]


async def test_read_records_the_store_refuses_for_good_go_to_the_dead_letters_and_the_hits_are_stored(
    store: Store,
) -> None:
    db = store.database
    store.command(f"ALTER TABLE {db}.reads ADD CONSTRAINT refuse_all CHECK read_of = ''")
    labels = {"table": "reads", "code": "469", "name": "VIOLATED_CONSTRAINT"}
    before = REGISTRY.get_sample_value("pixelpipe_store_rejected_hits_total", labels) or 0.0
    ann, bob = an_open(1, "ann@example.com"), an_open(2, "bob@example.com")
    dead = CollectedDeadLetters()
    handed, source = await run(
        store,
        [
            join_hits([encode_hit(ann), encode_read(read_record(ann, 9_000))]),
            join_hits([encode_hit(bob), encode_read(read_record(bob, 1_000))]),
        ],
        dead=dead,
    )
    assert handed == []  # nothing stored: no read notice
    assert store.query(f"SELECT count() FROM {db}.reads") == [(0,)]
    assert store.query(f"SELECT uniqExact(hit_id) FROM {db}.events") == [(2,)]  # the opens are stored
    # one dead letter per source record, holding its read records, with the table and the store's error
    assert sorted((r.offset, r.value) for r, _ in dead.letters) == [
        (0, encode_read(read_record(ann, 9_000))),
        (1, encode_read(read_record(bob, 1_000))),
    ]
    assert {reason for _, reason in dead.letters} == {
        "the store refused the insert into reads: VIOLATED_CONSTRAINT (code 469)"
    }
    assert REGISTRY.get_sample_value("pixelpipe_store_rejected_hits_total", labels) == before + 2
    assert source.commits[-1] == {0: 2}
