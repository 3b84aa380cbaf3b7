"""Engagement for rows stored before 0012 (issue 20): `api.engagement_backfill` tags them and rebuilds their
recipients' engagement rows, exactly, over real HTTP and chDB.

A store "before 0012" is made by emptying what 0012 added: every row's `recipient_tag` set back to '' (the
column's default, what a row stored before the migration reads) and the engagement rollup truncated. The
numbers the API answers after the backfill must be those it answered before; running the backfill again, or
inserting the rollup's rows twice, changes nothing (sets and maxima).

Dataset (campaign ``spring``): ann a1 opened and link 0 clicked, a2 opened; bob b1 opened only by Apple's
prefetch, b2 nothing; dan d1 delivered and hard-bounced (matched by the delivery matcher); ivy i1's link
clicked, its pixel never loaded (an implied open); after the "upgrade", ann's a3 is registered (tagged at
registration, through the view) and must merge with her backfilled row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.engagement_backfill import Backfilled, EngagementBackfill, backfill_engagement
from schemas.store import Store, parse_store_url
from schemas.tokens import Keyring
from tests.integration.engagement_serving import delivered_then_bounced, engagement_app
from tests.integration.helpers import hit, wait_for

ACME = {"Authorization": "Bearer acme-key-123"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")
LINKS = ["https://shop.example.com/a", "https://shop.example.com/b"]
RECIPIENTS = ("ann@example.com", "bob@example.com", "dan@example.com", "ivy@example.com")
TAGGED_TABLES = ("sends", "events", "filtered_hits", "deliveries")


def register(client: httpx.Client, message: str, recipient: str) -> dict[str, Any]:
    sent_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body = {"campaign_id": "spring", "message_id": message, "recipient": recipient, "links": LINKS}
    r = client.post("/v1/messages", json={**body, "sent_at": sent_at}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def engagement(client: httpx.Client, recipient: str) -> dict[str, Any] | None:
    r = client.get(f"/v1/recipients/{recipient}/engagement", headers=ACME)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def members(client: httpx.Client, **body: Any) -> list[str]:
    r = client.post("/v1/segments/query", json=body, headers=ACME)
    assert r.status_code == 200, r.text
    return sorted(x["recipient"] for x in r.json()["recipients"])


def untagged(store: Store, table: str) -> int:
    db = store.database
    return int(store.query(f"SELECT count() FROM {db}.{table} WHERE recipient_tag = ''")[0][0])


def before_0012(store: Store) -> None:
    """Make the store read as one migrated to 0012 whose rows were stored before it."""
    db = store.database
    for table in TAGGED_TABLES:
        store.command(
            f"ALTER TABLE {db}.{table} UPDATE recipient_tag = '' WHERE 1 SETTINGS mutations_sync = 2"
        )
    store.command(f"TRUNCATE TABLE {db}.engagement")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, chdb_path: Path
) -> Iterator[tuple[httpx.Client, Store, Keyring]]:
    with engagement_app(tmp_path_factory.mktemp("data"), chdb_path) as (client, components, store):
        sent = {
            "a1": register(client, "a1", "ann@example.com"),
            "a2": register(client, "a2", "ann@example.com"),
            "b1": register(client, "b1", "bob@example.com"),
            "b2": register(client, "b2", "bob@example.com"),
            "d1": register(client, "d1", "dan@example.com"),
            "i1": register(client, "i1", "ivy@example.com"),
        }
        for message, ip in (("a1", "81.2.69.160"), ("a2", "81.2.69.161")):
            assert hit(client, sent[message]["pixel_url"], ua=OUTLOOK, ip=ip).status_code == 200
        assert hit(client, sent["b1"]["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1]).status_code == 200
        time.sleep(0.5)  # past the click window
        assert hit(client, sent["a1"]["links"][LINKS[0]], ip="81.2.69.160").status_code in (302, 303)
        assert hit(client, sent["i1"]["links"][LINKS[0]], ip="81.2.69.165").status_code in (302, 303)
        wait_for(
            lambda: client.get("/v1/campaigns/spring/stats", headers=ACME).json(),
            lambda s: s.get("opens") == 2 and s.get("clicks") == 2 and s.get("machine_opens") == 1,
        )
        delivered_then_bounced(store, "d1")
        yield client, store, components.settings.keyring


def test_the_backfill_gives_back_the_numbers_exactly(served: tuple[httpx.Client, Store, Keyring]) -> None:
    client, store, keyring = served
    answered = {r: engagement(client, r) for r in RECIPIENTS}
    assert answered["ivy@example.com"] is not None
    assert (answered["ivy@example.com"]["implied_opens"], answered["ivy@example.com"]["status"]) == (
        1,
        "engaged",
    )
    assert members(client, clicked={"campaign": "spring", "link_index": 0}) == [
        "ann@example.com",
        "ivy@example.com",
    ]

    before_0012(store)
    assert {r: engagement(client, r) for r in RECIPIENTS} == dict.fromkeys(RECIPIENTS)
    assert [untagged(store, t) for t in ("sends", "events", "deliveries")] == [6, 5, 2]
    # ann's third message, registered after the upgrade: tagged at registration, in the rollup by the view
    register(client, "a3", "ann@example.com")

    # 4 recipients, 5 events (3 opens, 2 clicks) and 2 delivery events of their 6 messages
    assert backfill_engagement(store, keyring) == Backfilled(4, 5, 2)
    assert [untagged(store, t) for t in TAGGED_TABLES] == [0, 0, 0, 0]
    after = {r: engagement(client, r) for r in RECIPIENTS}
    ann_before = answered["ann@example.com"]
    assert ann_before is not None
    assert after["ann@example.com"] == {**ann_before, "sends": 3, "tracked": 3, "score": 3,
                                         "last_sent": after["ann@example.com"]["last_sent"]}  # fmt: skip
    assert {r: after[r] for r in RECIPIENTS[1:]} == {r: answered[r] for r in RECIPIENTS[1:]}
    # the events' tags are back: a campaign condition finds them
    assert members(client, clicked={"campaign": "spring", "link_index": 0}) == [
        "ann@example.com",
        "ivy@example.com",
    ]
    assert members(client, opened={"campaign": "spring"}) == ["ann@example.com", "ivy@example.com"]

    # nothing left to do: no send without a tag
    assert backfill_engagement(store, keyring) == Backfilled()


def test_the_backfill_and_the_rollup_are_idempotent(served: tuple[httpx.Client, Store, Keyring]) -> None:
    """Run again over rows already in the rollup (a backfill cut short before the sends were tagged), and the
    rollup's rows inserted twice: the sets and maxima keep every number."""
    client, store, keyring = served
    answered = {r: engagement(client, r) for r in RECIPIENTS}
    db = store.database
    blank = "recipient_tag = '' WHERE message_id != 'a3' SETTINGS mutations_sync = 2"
    store.command(f"ALTER TABLE {db}.sends UPDATE {blank}")
    assert backfill_engagement(store, keyring) == Backfilled(4, 5, 2)
    store.command(f"INSERT INTO {db}.engagement SELECT * FROM {db}.engagement")  # every row twice
    assert {r: engagement(client, r) for r in RECIPIENTS} == answered
    store.command(f"OPTIMIZE TABLE {db}.engagement FINAL")
    assert {r: engagement(client, r) for r in RECIPIENTS} == answered


def test_a_store_at_13_without_12_gets_12(chdb_path: Path) -> None:
    """A store migrated to 0013 and after on main (0012 was this branch's) gets 0012 at its next start: the
    store applies every version not yet applied, not only those above the highest."""
    store = Store.connect(parse_store_url(f"chdb://{chdb_path}?database=t_mig_{uuid.uuid4().hex[:8]}"))
    db = store.database
    try:
        for view in ("engagement_from_sends", "engagement_from_events", "engagement_from_deliveries"):
            store.command(f"DROP VIEW {db}.{view}")
        store.command(f"DROP TABLE {db}.engagement")
        for table in TAGGED_TABLES:
            store.command(f"ALTER TABLE {db}.{table} DROP COLUMN recipient_tag")
        store.command(
            f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 12 SETTINGS mutations_sync = 2"
        )
        assert store.query(f"SELECT min(version) FROM {db}.schema_migrations WHERE version > 12") == [(13,)]
        assert store.migrate() == [12]
        assert store.query(f"EXISTS TABLE {db}.engagement") == [(1,)]
        assert store.migrate() == []
    finally:
        store.command(f"DROP DATABASE IF EXISTS {db}")


def test_an_erasure_while_the_backfill_runs_is_erased_again_at_its_end(
    served: tuple[httpx.Client, Store, Keyring],
) -> None:
    """The backfill runs beside the API (`EngagementBackfill`, from start): it may have read an erased
    recipient's rows before the erasure hid them and write their engagement row after the erasure deleted
    it. The erasure tells it; its end deletes the row again, by the tags kept under the address too."""
    _, store, keyring = served
    db = store.database
    backfill = EngagementBackfill(store, keyring)
    backfill._running = True
    backfill.erased("acme", ["not-this-one"], "late@example.com")  # an erasure answered meanwhile
    backfill.erased("acme", ["t-late-other"])  # another process's, by tags only
    late = "('acme', 't-late', 'late@example.com', now()), ('acme', 't-late-other', '', now())"
    store.command(f"INSERT INTO {db}.engagement (account, recipient_tag, recipient, last_at) VALUES {late}")
    backfill.run()  # the backfill's last rows written: then the erasures again
    left = store.query(
        f"SELECT count() FROM {db}.engagement WHERE recipient_tag IN ('t-late', 't-late-other') "
        "SETTINGS apply_deleted_mask = 0"
    )
    assert left == [(0,)]
    assert not backfill.running
    backfill.erased("acme", ["t-after"], "after@example.com")  # after its end: nothing kept to do
    assert backfill._erased == []
