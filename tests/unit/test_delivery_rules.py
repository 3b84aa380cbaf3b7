"""The one rule of a message's delivery status (`api.sql.deliveries.RULES`): its Python and SQL forms agree
on every set of events, and the cases the README's counting rules name."""

from __future__ import annotations

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
