"""0017 fills the set of individually tracked sends (0010's 'individual' rollup rows) for sends stored
before 0010, on the embedded ClickHouse: 0010's own backfill copied nothing (its alias `who` hid the column
in WHERE), so a store upgraded through it counted 0 tracked sends and rates of 0 over them."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.ddl import migrations
from schemas.store import Store

COLUMNS = (
    "account", "campaign_id", "message_id", "recipient", "sent_at", "registered_at", "links", "tracking",
)  # fmt: skip


def _tracked(store: Store) -> int:
    rows = store.query(
        f"SELECT length(groupUniqArrayArray(messages)) FROM {store.database}.rollups "
        "WHERE account = 'acme' AND campaign_id = 'spring' AND rollup = 'messages' AND kind = 'sent' "
        "AND who = 'individual'"
    )
    return int(rows[0][0])


def _statement(store: Store, version: int) -> str:
    (migration,) = [m for m in migrations(store.database) if m.version == version]
    return migration.statements[-1]


def test_the_sends_tracked_before_0010_are_counted(store: Store) -> None:
    db = store.database
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    rows = [["acme", "spring", f"m-{i}", f"r{i}@example.com", at, at, [], "individual"] for i in range(3)] + [
        ["acme", "spring", "m-agg", "agg@example.com", at, at, [], "aggregate"]
    ]
    store.insert("sends", COLUMNS, rows)
    assert _tracked(store) == 3  # 0010's view, for sends stored since
    # A store whose sends came before 0010: no 'individual' rows for them.
    store.command(f"ALTER TABLE {db}.rollups DELETE WHERE who = 'individual' SETTINGS mutations_sync = 2")
    assert _tracked(store) == 0
    store.command(_statement(store, 10))  # 0010's backfill, as it ran: nothing copied
    assert _tracked(store) == 0
    store.command(_statement(store, 17))
    assert _tracked(store) == 3  # the aggregate send is not tracked individually
    store.command(_statement(store, 17))  # again (a start cut short): a set, nothing counted twice
    assert _tracked(store) == 3
