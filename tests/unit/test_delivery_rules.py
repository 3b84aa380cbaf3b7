"""The one rule of a message's delivery status (`api.sql.deliveries.RULES`): its Python and SQL forms agree
on every set of events, and the cases the README's counting rules name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.sql import deliveries
from api.sql.deliveries import Flag, event_flag, status_of
from schemas.store import Store, parse_store_url


@pytest.mark.parametrize(
    ("events", "read", "status"),
    [
        ([], False, None),
        ([], True, "delivered"),  # an open or click proves delivery
        ([("delivered", "")], False, "delivered"),
        ([("bounce", "soft"), ("delivered", "")], False, "delivered"),  # a later delivery wins
        ([("delivered", ""), ("bounce", "hard")], False, "hard"),  # accepted, then bounced
        ([("bounce", "hard")], True, "delivered"),  # the open proves it arrived
        ([("bounce", "hard"), ("bounce", "soft")], False, "hard"),
        ([("bounce", "")], False, "soft"),  # a bounce of no known type
        ([("dropped", ""), ("deferred", "")], False, "dropped"),
        ([("deferred", "")], False, "deferred"),
        ([("complaint", "")], False, "delivered"),
        ([("unsubscribe", ""), ("bounce", "hard")], False, "delivered"),
    ],
)
def test_a_message_status_follows_the_counting_rules(
    events: list[tuple[str, str]], read: bool, status: str | None
) -> None:
    flags = Flag.READ if read else Flag(0)
    for event, bounce_type in events:
        flags |= event_flag(event, bounce_type)
    assert status_of(flags) == status


def test_the_sql_rule_is_the_python_rule(chdb_path: Path) -> None:
    store = Store.connect(parse_store_url(f"chdb://{chdb_path}?database=t_rules"), migrate=False)
    every = f"(SELECT toUInt16(number) AS f FROM numbers({int(max(Flag)) * 2}))"
    rows = store.query(f"SELECT f, {deliveries.status_sql('f')} FROM {every} ORDER BY f")
    assert [(int(f), s) for f, s in rows] == [(f, status_of(f) or "") for f in range(int(max(Flag)) * 2)]


def test_the_flags_table_sets_the_flag_of_each_event(store: Store) -> None:
    """0008's views give each message the flags `event_flag` gives its events (SQL written out in the DDL),
    SENT for a send and READ for a counted open or click, OR-ed over its rows."""
    db = store.database
    kinds = [
        ("delivered", ""), ("deferred", ""), ("bounce", "hard"), ("bounce", "soft"), ("bounce", ""),
        ("dropped", ""), ("complaint", ""), ("unsubscribe", ""), ("processed", ""),
    ]  # fmt: skip
    now = datetime.now(UTC)  # the rows' times: within the retention's TTL
    rows = [[f"d{i}", "acme", "c", f"m{i}", event, bounce, now] for i, (event, bounce) in enumerate(kinds)]
    rows += [
        ["d-again", "acme", "c", "m0", "delivered", "", now],
        ["d-x", "acme", "c", "m9", "bounce", "hard", now],
    ]
    rows += [["d-unmatched", "acme", "c", "", "delivered", "", now]]  # matches no send: no row
    columns = ("delivery_id", "account", "campaign_id", "message_id", "event", "bounce_type", "occurred_at")
    store.insert("deliveries", columns, rows)
    sends = [["acme", "c", m, now] for m in ("m0", "m9")]
    store.insert("sends", ("account", "campaign_id", "message_id", "sent_at"), sends)
    store.insert(
        "events",
        ("hit_id", "account", "campaign_id", "message_id", "kind", "verdict", "received_at"),
        [["h1", "acme", "c", "m9", "open", "machine", now], ["h2", "acme", "c", "m9", "click", "human", now]],
    )
    want = {f"m{i}": int(event_flag(event, bounce)) for i, (event, bounce) in enumerate(kinds)}
    want["m0"] |= Flag.SENT
    want["m9"] = Flag.HARD | Flag.SENT | Flag.READ
    names = [f"m{i}" for i in range(10)]
    found = store.query(
        f"SELECT message, flags FROM {db}.message_flags FINAL WHERE account = 'acme' AND campaign_id = 'c'"
    )
    by_hash = {int(store.query(f"SELECT cityHash64('{n}')")[0][0]): n for n in names}
    # an event of no known kind (m8) still lists its message, as the reference count does (flags 0)
    assert {by_hash[int(h)]: int(f) for h, f in found} == {m: int(f) for m, f in want.items()}
    empty = store.query(f"SELECT count() FROM {db}.message_flags WHERE message = cityHash64('')")
    assert empty == [(0,)]
