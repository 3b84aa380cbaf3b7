"""What an erasure finds beyond the recipient's own rows: URLs that name them, attempts not to log."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from api.erasure_residue import names_recipient
from api.privacy import ERASED_TABLES
from api.sql import privacy as privacy_sql
from notices.attempts import AttemptLog
from notices.deliveries import Delivery
from notices.outbox import PendingDelivery
from schemas.store import Store, StoreError


@pytest.mark.parametrize(
    ("label", "named"),
    [
        ("https://shop.example.com/unsub?email=ann%40example.com", True),
        ("https://shop.example.com/unsub?email=ANN%40Example.COM", True),
        ("https://shop.example.com/refer?friend=Ann@Example.com", True),
        ("https://shop.example.com/u/ann@example.com/prefs", True),
        ("https://shop.example.com/unsub?e=ann%2540example.com", False),  # encoded twice: not the address
        ("https://shop.example.com/unsub?email=joann%40example.com", False),  # another address
        ("https://shop.example.com/unsub?email=ann%40example.community", False),
        ("https://shop.example.com/unsub?email=ann%40example.com.au", False),
        ("https://shop.example.com/unsub?email=ann%40example.com.&x=1", True),  # a sentence's full stop
        ("https://shop.example.com/unsub?to=x.ann%40example.com", False),
        ("https://shop.example.com/unsub?to=ann%40example.com&from=ann%40example.com", True),
        ("https://shop.example.com/unsub?email=bob%40example.com", False),
        ("https://shop.example.com/sale", False),
    ],
)
def test_a_url_names_the_recipient(label: str, named: bool) -> None:
    assert names_recipient(label, " Ann@Example.com ") is named


def test_a_recipient_id_without_at_names_no_url() -> None:
    assert not names_recipient("https://shop.example.com/u1/sale", "u1")


def test_a_plus_in_the_address_matches_written_plain_or_encoded() -> None:
    assert names_recipient("https://x.example/?e=ann%2Btag%40example.com", "ann+tag@example.com")
    assert names_recipient("https://x.example/?e=ann+tag@example.com", "ann+tag@example.com")


class Inserts:
    """Stands in for the store's insert (a unit test of the buffer; the HTTP tests use ClickHouse)."""

    database = "db"

    def __init__(self) -> None:
        self.rows: list[Sequence[Any]] = []

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.rows.extend(rows)


def pending(account: str, message_id: str) -> PendingDelivery:
    d = Delivery(f"dlv-{message_id}", "wh_1", "lane", f"hit-{message_id}", account, message_id, "open", b"{}")
    return PendingDelivery(1, d, 0, 0.0)


def test_the_attempt_log_forgets_erased_messages_and_logs_none_of_theirs() -> None:
    store = Inserts()
    log = AttemptLog(store)  # type: ignore[arg-type]

    def attempt(account: str, message_id: str) -> None:
        log.record(
            pending=pending(account, message_id), attempt=1, status="delivered", response_code=204,
            error="", at=1_767_225_600.0, next_attempt_at=None, duration_ms=3,
        )  # fmt: skip

    attempt("acme", "m-ann")
    attempt("acme", "m-bob")
    attempt("globex", "m-ann")  # another account's message of the same id
    assert log.forget("acme", ["m-ann"]) == 1
    attempt("acme", "m-ann")  # in flight during the erasure: not logged after it
    asyncio.run(log.flush())
    assert [(row[0], row[4]) for row in store.rows] == [("acme", "m-bob"), ("globex", "m-ann")]


class SlowInserts(Inserts):
    """An insert that takes its time (or fails), so an erasure can arrive while it is in flight."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise StoreError("the store is away", retriable=True)
        super().insert(table, columns, rows)


def _record(log: AttemptLog, account: str, message_id: str) -> None:
    log.record(
        pending=pending(account, message_id), attempt=1, status="delivered", response_code=204,
        error="", at=1_767_225_600.0, next_attempt_at=None, duration_ms=3,
    )  # fmt: skip


def _forget_during_a_flush(
    log: AttemptLog, store: SlowInserts, message_id: str
) -> tuple[threading.Thread, threading.Thread]:
    """A flush started (its insert held in the store) and, while it is in flight, `forget` of ``message_id``
    in account acme started: the flushing thread and the forgetting one."""
    flushing = threading.Thread(target=asyncio.run, args=(log.flush(),))
    flushing.start()
    assert store.started.wait(10)
    forgotten = threading.Thread(target=log.forget, args=("acme", [message_id]))
    forgotten.start()
    return flushing, forgotten


def test_an_erasure_during_a_flush_returns_only_once_the_flushed_rows_are_stored() -> None:
    # The API deletes the logged rows right after `forget`: rows still on their way to the store would
    # land after that delete and outlive the erasure.
    store = SlowInserts()
    log = AttemptLog(store)  # type: ignore[arg-type]
    _record(log, "acme", "m-ann")
    flushing, forgotten = _forget_during_a_flush(log, store, "m-ann")
    forgotten.join(0.3)
    assert forgotten.is_alive()  # waits for the insert in flight
    store.release.set()
    forgotten.join(10)
    flushing.join(10)
    assert [(row[0], row[4]) for row in store.rows] == [("acme", "m-ann")]  # stored before forget returned


def test_rows_of_a_failed_flush_are_not_kept_for_an_erased_message() -> None:
    store = SlowInserts(fail=True)
    log = AttemptLog(store)  # type: ignore[arg-type]
    _record(log, "acme", "m-ann")
    _record(log, "acme", "m-bob")
    flushing, forgotten = _forget_during_a_flush(log, store, "m-ann")
    store.release.set()
    flushing.join(10)
    forgotten.join(10)
    store.fail = False
    asyncio.run(log.flush())
    assert [(row[0], row[4]) for row in store.rows] == [("acme", "m-bob")]


def test_every_table_that_keeps_a_message_id_is_erased_by_message(store: Store) -> None:
    """A table whose rows name a message (``message_id``) is one an erasure deletes by the erased messages:
    `api.privacy.ERASED_TABLES`, or the attempt log (`api.erasure_residue.erase_webhook_attempts`). So a
    table added later (``reads``, issue 18's read time) cannot be forgotten."""
    rows = store.query(
        "SELECT DISTINCT c.table FROM system.columns AS c INNER JOIN system.tables AS t "
        "ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} AND c.name = 'message_id' AND t.engine LIKE '%MergeTree'",
        {"db": store.database},
    )
    keeping = {str(table) for (table,) in rows}
    erased = {table for table, _ in ERASED_TABLES} | {"webhook_deliveries"}
    assert "reads" in keeping
    assert keeping <= erased, f"not erased: {sorted(keeping - erased)}"


def test_an_erasure_deletes_the_reads_of_the_erased_messages(store: Store) -> None:
    """The erasure's statements over ``reads`` (`api.sql.privacy.erasure` with the erased scope) hide the
    erased messages' read records at once and leave the others."""
    db = store.database
    columns = ("read_of", "account", "campaign_id", "message_id", "opened_at", "ended_at", "read_ms", "end")
    at = 1_767_225_612_345
    store.insert(
        "reads",
        columns,
        [
            ["h1", "acme", "c", "m-ann", at, at + 9_000, 9_000, "closed"],
            ["h2", "acme", "c", "m-ann", at, at + 1_000, 1_000, "closed"],
            ["h3", "acme", "c", "m-bob", at, at + 4_000, 4_000, "closed"],
            ["h4", "globex", "c", "m-ann", at, at + 4_000, 4_000, "closed"],  # another account's m-ann
        ],
    )
    scope = {"account": "acme", "messages": ["m-ann"]}
    scoped = dict(ERASED_TABLES)["reads"]
    assert store.query(privacy_sql.erased_count(db, "reads", scoped), scope) == [(2,)]
    hide, rewrite = privacy_sql.erasure(db, "reads", scoped)
    store.command(hide, scope)
    store.command(rewrite)
    assert store.query(f"SELECT account, read_of FROM {db}.reads ORDER BY read_of") == [
        ("acme", "h3"),
        ("globex", "h4"),
    ]
