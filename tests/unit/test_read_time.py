"""Read time's pure parts (issue 18): the names in SQL equal to the names in Python over a grid (run by chDB),
a read record as a ``reads`` row and the batch's insert, the opens a processor remembers for their reads, and
how the API shapes the numbers."""

from __future__ import annotations

import itertools
import math

import pytest

from api.sql import campaigns
from api.sql import privacy as privacy_sql
from api.sql.reads import open_read, shape_read_time, with_client_read_time
from processors.reads import READ_COLUMNS, RecentOpens, StoredRead, plan_read_insert, read_row
from schemas.reads import GLANCED_MS, READ_MS, ReadEnd, ReadRecord, category_sql, read_category
from schemas.store import Store
from schemas.verdicts import Classification, Verdict

GRID_MS = sorted(
    {0, 1, 999, GLANCED_MS - 1, GLANCED_MS, GLANCED_MS + 1, 5_000, READ_MS - 1, READ_MS, READ_MS + 1, 25_000}
)
RECORD = ReadRecord(
    read_of="h1", account="acme", campaign_id="c", message_id="m1", recipient_tag="00" * 8,
    opened_at_ms=1_767_225_612_345, ended_at_ms=1_767_225_621_845, read_ms=9_500, end=ReadEnd.CLOSED,
)  # fmt: skip


def test_the_names_in_sql_are_the_names_in_python_over_a_grid(store: Store) -> None:
    grid = list(itertools.product(GRID_MS, [e.value for e in ReadEnd], [True, False]))
    expression = category_sql("read_ms", "`end`", "person")
    rows = store.query(
        f"""SELECT read_ms, `end`, person, {expression}
            FROM (SELECT t.1 AS read_ms, t.2 AS `end`, t.3 AS person
                  FROM (SELECT arrayJoin({{grid:Array(Tuple(UInt32, String, Bool))}}) AS t))""",
        {"grid": grid},
    )
    assert len(rows) == len(grid)
    assert [(int(ms), str(end), bool(person), str(name)) for ms, end, person, name in rows] == [
        (ms, end, person, read_category(ms, end, person)) for ms, end, person in grid
    ]


def test_the_bounds_are_litmus_names() -> None:
    assert [read_category(ms, "closed", True) for ms in (0, 1_999, 2_000, 7_999, 8_000)] == [
        "glanced", "glanced", "skimmed", "skimmed", "read",
    ]  # fmt: skip
    assert read_category(30_000, "closed", False) == "unknown"  # a machine's open
    assert read_category(0, "busy", True) == "unknown"
    assert read_category(0, "proxy", True) == "unknown"
    assert read_category(3_000, "stopped", True) == "unknown"  # a lower bound under 8 s says nothing
    assert read_category(9_000, "stopped", True) == "read"  # a lower bound past 8 s is a read
    assert read_category(25_000, "cap", True) == "read"


def test_a_read_record_is_a_reads_row_and_its_batch_one_insert_with_its_own_token() -> None:
    row = read_row(RECORD, "raw-hits:0:7")
    assert dict(zip(READ_COLUMNS, row, strict=True)) == {
        "read_of": "h1", "account": "acme", "campaign_id": "c", "message_id": "m1",
        "opened_at": 1_767_225_612_345, "ended_at": 1_767_225_621_845, "read_ms": 9_500, "end": "closed",
        "source": "raw-hits:0:7",
    }  # fmt: skip
    assert plan_read_insert([]) is None
    plan = plan_read_insert([row])
    assert plan is not None
    assert (plan.table, plan.columns, plan.rows) == ("reads", READ_COLUMNS, [row])
    assert plan.dedup_token.startswith("reads:")
    again = plan_read_insert([read_row(RECORD, "raw-hits:0:7")])
    assert again is not None
    assert again.dedup_token == plan.dedup_token  # the same batch again: stored once
    other = plan_read_insert([row, read_row(ReadRecord(**{**_fields(RECORD), "read_of": "h2"}), "x:0:8")])
    assert other is not None
    assert other.dedup_token != plan.dedup_token


def _fields(record: ReadRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in ReadRecord.__dataclass_fields__}


def test_the_stored_read_is_named_by_its_opens_classification_when_known() -> None:
    human = Classification(Verdict.HUMAN, "ua:client")
    machine = Classification(Verdict.MACHINE, "apple_mpp")
    assert StoredRead(RECORD, "s", human).category == "read"
    assert StoredRead(RECORD, "s", machine).category == "unknown"
    assert StoredRead(RECORD, "s", None).category is None


def test_recent_opens_forget_the_oldest_beyond_their_bound() -> None:
    opens = RecentOpens(bound=4)  # two generations of two
    human = Classification(Verdict.HUMAN, "ua:client")
    machine = Classification(Verdict.MACHINE, "apple_mpp")
    for hit_id in ("a", "b", "c"):
        opens.remember(hit_id, human)
    assert [opens.get(h) for h in ("a", "b", "c")] == [human, human, human]
    opens.remember("d", machine)  # the newer generation full again: "a" and "b" go
    assert [opens.get(h) for h in ("a", "b", "c", "d")] == [None, None, human, machine]
    assert len(opens) == 2
    none = RecentOpens(bound=0)
    none.remember("a", human)
    assert none.get("a") is None
    with pytest.raises(ValueError, match="bound"):
        RecentOpens(bound=-1)


def test_the_numbers_are_shaped_with_a_null_median_when_nothing_was_measured() -> None:
    assert shape_read_time((1, 1, 1, 2, 4_000.0)) == {
        "read": 1, "skimmed": 1, "glanced": 1, "unknown": 2, "measured": 3, "median_seconds": 4.0,
    }  # fmt: skip
    assert shape_read_time((0, 0, 0, 3, math.nan))["median_seconds"] is None
    assert shape_read_time(None) == {
        "read": 0, "skimmed": 0, "glanced": 0, "unknown": 0, "measured": 0, "median_seconds": None,
    }  # fmt: skip


def test_the_breakdown_rows_gain_read_time_and_a_client_with_reads_only_gets_a_row() -> None:
    rows = [{"key": "Apple Mail", "opens": 3, "unique_opens": 2, "clicks": 0, "unique_clicks": 0}]
    out = with_client_read_time(rows, [("Apple Mail", 1, 0, 0, 0, 9_000.0), ("", 0, 0, 0, 2, math.nan)])
    assert [(r["key"], r["opens"], r["read_time"]["read"], r["read_time"]["unknown"]) for r in out] == [
        ("Apple Mail", 3, 1, 0),
        (None, 0, 0, 2),
    ]
    assert with_client_read_time(rows, [])[0]["read_time"]["measured"] == 0


def test_an_opens_read_in_the_timeline() -> None:
    reads = {"a": (9_500, "closed"), "b": (0, "busy"), "c": (3_000, "stopped")}
    assert open_read(reads, "a", "human") == (9.5, "read")
    assert open_read(reads, "a", "machine") == (9.5, "unknown")
    assert open_read(reads, "b", "human") == (None, "unknown")  # nothing was measured
    assert open_read(reads, "c", "human") == (3.0, "unknown")  # a lower bound
    assert open_read(reads, "z", "human") == (None, None)  # not timed


def test_a_read_record_changes_the_signature_that_keeps_its_campaigns_stats(store: Store) -> None:
    """``0013_reads_rollup.sql``: an insert into ``reads`` writes a ``reads`` rollup row, so the parts that
    sign a campaign's kept stats change with its read records; an erasure finds their open hit ids."""
    db = store.database
    q = campaigns.campaign_parts(db, "acme", "c")
    before = store.query(q.sql, q.parameters)
    store.insert("reads", READ_COLUMNS, [read_row(RECORD, "raw-hits:0:7")])
    after = store.query(q.sql, q.parameters)
    assert before != after
    assert after[0][1] == before[0][1] + 1
    rows = store.query(f"SELECT kind, hits, last_at FROM {db}.rollups WHERE rollup = 'reads'")
    assert [(kind, list(hits)) for kind, hits, _ in rows] == [("open", [_hash(store, "h1")])]
    scope = {"account": "acme", "messages": ["m1"]}
    assert store.query(privacy_sql.erased_hits(db), scope) == [("h1",)]
    # no other rollup row: the API's numbers read none of it
    assert store.query(f"SELECT DISTINCT rollup FROM {db}.rollups") == [("reads",)]


def _hash(store: Store, hit_id: str) -> int:
    return int(store.query("SELECT cityHash64({h:String})", {"h": hit_id})[0][0])
