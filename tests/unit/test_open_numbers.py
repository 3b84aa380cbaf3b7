"""MPP-only messages and implied opens per bucket of message hashes (`api.open_numbers`, the rows of
``0015_mpp_sets.sql``), on the embedded ClickHouse: exact over replays and unmerged parts, counted again only
for the buckets a new part touched, and filled for opens stored before 0015 by the migration's backfill.

Campaign ``c``:

    a  a person's open                                   neither
    b  Apple's prefetch only (stored twice: a replay)    MPP-only
    c  Apple's prefetch and Gmail's prefetch             neither (another machine's open)
    d  a person's click, no open                         implied
    e  Apple's prefetch, then a person's click           MPP-only (its pixel loaded: not implied)
    f  Apple's prefetch, by the MPP ASN rule             MPP-only
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from api.open_numbers import OpenNumbers
from api.sql import reference
from api.sql.common import Query
from api.sql.open_rates import OpenFacts
from processors.rows import EVENT_COLUMNS
from schemas.ddl import migrations
from schemas.store import Store

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _hit(hit_id: str, kind: str, message_id: str, verdict: str, reason: str) -> list[Any]:
    return [
        hit_id, kind, "acme", "c", message_id, T0, T0 + timedelta(minutes=1), -1, "", verdict, reason, False,
        "", "", "", 0, "", "", "", "", "", "UA", "test:0:0",
    ]  # fmt: skip


EVENTS = [
    _hit("h1", "open", "a", "human", "ua:client"),
    _hit("h2", "open", "b", "machine", "apple_mpp"),
    _hit("h3", "open", "c", "machine", "apple_mpp"),
    _hit("h4", "open", "c", "machine", "gmail_prefetch"),
    _hit("h5", "click", "d", "human", "ua:client"),
    _hit("h6", "open", "e", "machine", "apple_mpp"),
    _hit("h7", "click", "e", "human", "ua:client"),
    _hit("h8", "open", "f", "machine", "apple_mpp_asn"),
]


class Recorded:
    """The store's reads, with the queries they ran."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries: list[Query] = []

    def __call__(self, q: Query) -> list[tuple[Any, ...]]:
        self.queries.append(q)
        return self.store.query(q.sql, q.parameters)


def _bucket(store: Store, message_id: str) -> int:
    return int(store.query("SELECT cityHash64({m:String}) % 4096", {"m": message_id})[0][0])


def test_counted_per_bucket_exactly_and_again_only_where_a_part_came(store: Store) -> None:
    store.insert("events", EVENT_COLUMNS, EVENTS)
    store.insert("events", EVENT_COLUMNS, [EVENTS[1]])  # b's prefetch replayed, in a part of its own
    numbers = OpenNumbers()
    run = Recorded(store)
    db = store.database
    assert numbers.facts(run, db, "acme", ["c", "unknown"]) == {
        "c": OpenFacts(mpp_only=3, implied=1),
        "unknown": OpenFacts(),
    }
    assert numbers.facts(run, db, "globex", ["c"]) == {"c": OpenFacts()}  # another account's: nothing
    assert run(reference.campaign_open_facts(db, "acme", "c")) == [(3, 1)]  # the raw count by message

    # A person opens b, and d's pixel loads: b is no longer MPP-only, d no longer implied.
    store.insert(
        "events",
        EVENT_COLUMNS,
        [_hit("h9", "open", "b", "human", "ua:client"), _hit("h10", "open", "d", "human", "ua:client")],
    )
    run.queries.clear()
    assert numbers.facts(run, db, "acme", ["c"]) == {"c": OpenFacts(mpp_only=2, implied=0)}
    counted = [q for q in run.queries if "buckets" in q.parameters]
    assert len(counted) == 1
    assert sorted(counted[0].parameters["buckets"]) == sorted({_bucket(store, "b"), _bucket(store, "d")})
    assert run(reference.campaign_open_facts(db, "acme", "c")) == [(2, 0)]

    run.queries.clear()  # nothing changed: the signature query only
    assert numbers.facts(run, db, "acme", ["c"]) == {"c": OpenFacts(mpp_only=2, implied=0)}
    assert len(run.queries) == 1


def test_the_migration_fills_the_sets_of_opens_stored_before_it(store: Store) -> None:
    store.insert("events", EVENT_COLUMNS, EVENTS)
    db = store.database
    # A store before 0015: no 'opened' rows for the opens already stored.
    store.command(f"ALTER TABLE {db}.rollups DELETE WHERE `rollup` = 'opened' SETTINGS mutations_sync = 2")
    assert OpenNumbers().facts(Recorded(store), db, "acme", ["c"])["c"].mpp_only == 5  # every opened one
    (backfill,) = [m.statements[-1] for m in migrations(db) if m.version == 15]
    assert backfill.startswith(f"INSERT INTO {db}.rollups")
    store.command(backfill)
    store.command(backfill)  # applied again (a start cut short): sets, nothing counts twice
    assert OpenNumbers().facts(Recorded(store), db, "acme", ["c"]) == {"c": OpenFacts(mpp_only=3, implied=1)}
