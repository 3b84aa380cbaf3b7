"""Privacy over real HTTP: do-not-track, erasure, retention and what of an address is stored."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.privacy import load_suppressed
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.ddl import migrations
from schemas.store import Store, parse_store_url
from schemas.tokens import recipient_tag
from tests.conftest import SECRET
from tests.integration.helpers import hit, outbox_rows, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
GLOBEX = {"Authorization": "Bearer globex-key-456"}


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    env = {**env, "PIXELPIPE_RETENTION_DAYS": "30", "PIXELPIPE_FILTERED_RETENTION_DAYS": "7"}
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def register(client: httpx.Client, recipient: str, **body: Any) -> dict[str, Any]:
    payload = {"campaign_id": "c", "recipient": recipient, "links": ["https://example.com/x"], **body}
    r = client.post("/v1/messages", json=payload, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def opens(client: httpx.Client, message_id: str) -> int:
    return int(client.get(f"/v1/messages/{message_id}", headers=ACME).json()["opens"])


def message(client: httpx.Client, message_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/messages/{message_id}", headers=ACME).json())


def campaign(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/v1/campaigns/c/stats", headers=ACME).json())


def test_do_not_track_serves_but_records_nothing(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    sent = register(client, "Ann@Example.com")
    r = client.put("/v1/recipients/ann@example.com/do-not-track", headers=ACME)
    assert r.json() == {"recipient": "ann@example.com", "tracking": False}
    assert hit(client, sent["pixel_url"]).status_code == 200
    clicked = hit(client, sent["links"]["https://example.com/x"])
    assert (clicked.status_code, clicked.headers["location"]) == (302, "https://example.com/x")
    # A tracked recipient's open and click, after them: once these count (the click held in the same
    # window), anything recorded of the opted-out hits before them would show.
    zoe = register(client, "zoe@example.com")
    hit(client, zoe["pixel_url"])
    hit(client, zoe["links"]["https://example.com/x"])
    wait_for(lambda: message(client, zoe["message_id"]), lambda m: (m["opens"], m["clicks"]) == (1, 1), 30)
    stats = message(client, sent["message_id"])
    assert (stats["opens"], stats["clicks"], stats["filtered"]) == (0, 0, {})

    assert client.delete("/v1/recipients/ann@example.com/do-not-track", headers=ACME).json()["tracking"]
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)


def test_another_account_cannot_opt_out_my_recipient(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    sent = register(client, "bob@example.com")
    client.put("/v1/recipients/bob@example.com/do-not-track", headers=GLOBEX)
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)


def test_erasure_removes_a_recipient_and_keeps_them_untracked(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    ann = [register(client, "ann@example.com") for _ in range(2)]
    bob = register(client, "bob@example.com")
    for sent in (*ann, bob):
        hit(client, sent["pixel_url"])
        hit(client, sent["pixel_url"], ua="curl/8.4.0")  # a filtered hit too
    wait_for(lambda: campaign(client), lambda c: c["opens"] == 3 and c["filtered"] == {"ua:http_library": 3})
    assert components.notifications is not None
    assert components.notifications.hub is not None
    lookup = components.notifications.hub.lookup
    assert lookup is not None
    wait_for(lambda: len(lookup), lambda n: n == 3)  # the notices of the three human opens were made
    live = components.notifications.live
    assert live is not None
    wait_for(lambda: live.held("acme"), lambda n: n == 3)  # and reached the live feed

    asked = datetime.now(UTC)
    r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
    assert r.status_code == 200
    answer = r.json()
    on_disk_by = datetime.fromisoformat(answer.pop("on_disk_by"))
    assert asked + timedelta(seconds=299) <= on_disk_by <= datetime.now(UTC) + timedelta(seconds=300)
    assert answer == {
        "recipient": "ann@example.com",
        "erased": {
            "messages": 2,
            "events": 2,
            "filtered_hits": 2,
            "webhook_deliveries": {"pending": 0, "finished": 0},  # no webhooks
            "cached_messages": 2,
            "live_notices": 2,  # her two opens, in this process's ring for Last-Event-ID resumes
            "link_labels": 0,  # no clicks (api.erasure_residue)
            "webhook_attempts": 0,
        },
        "tracking": False,
    }
    assert len(lookup) == 1  # bob's
    assert live.held("acme") == 1  # bob's open
    for sent in ann:
        assert client.get(f"/v1/messages/{sent['message_id']}", headers=ACME).status_code == 404
    after = campaign(client)
    assert (after["sent"], after["opens"], after["unique_opens"], after["filtered"]) == (
        1, 1, 1, {"ua:http_library": 1},
    )  # fmt: skip
    assert client.delete("/v1/recipients/ann@example.com", headers=ACME).status_code == 404
    # an old email of the erased recipient is opened again: answered, not recorded
    assert hit(client, ann[0]["pixel_url"]).status_code == 200
    hit(client, bob["pixel_url"])  # after it: once bob's second open counts, hers would have too
    wait_for(lambda: opens(client, bob["message_id"]), lambda n: n == 2, 30)
    assert campaign(client)["opens"] == 2
    store = components.store
    assert store is not None
    db = store.database
    left = store.query(f"SELECT count() FROM {db}.events WHERE message_id IN {{ids:Array(String)}}", {
        "ids": [s["message_id"] for s in ann]
    })  # fmt: skip
    assert left == [(0,)]


def test_retention_is_configured_and_addresses_are_truncated(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    sent = register(client, "cy@example.com")
    hit(client, sent["pixel_url"], ip="2001:db8:1234:5678::9")
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)
    store = components.store
    assert store is not None
    db = store.database
    assert store.query(f"SELECT ip FROM {db}.events") == [("2001:db8:1234::",)]
    ttl = dict(store.query(f"SELECT name, engine_full FROM system.tables WHERE database = '{db}'"))
    assert "toIntervalDay(30)" in ttl["events"]
    assert "toIntervalDay(30)" in ttl["sends"]
    assert "toIntervalDay(7)" in ttl["filtered_hits"]


# -- erasure reaches the notice path -------------------------------------------------------------------------


def test_erasure_drops_the_recipients_pending_webhook_deliveries(
    env: dict[str, str], failing_receiver: tuple[list[bytes], str]
) -> None:
    bodies, url = failing_receiver
    env = {**env, "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true"}
    settings = settings_mod.load(env)
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    outbox = settings.data_dir / "webhooks" / "outbox.sqlite3"
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.post("/v1/webhooks", json={"url": url, "events": ["open"]}, headers=ACME)
        assert r.status_code == 201, r.text
        ann, bob = register(client, "ann@example.com"), register(client, "bob@example.com")
        time.sleep(1.2)  # the dispatcher's directory of webhooks reloads every second
        hit(client, ann["pixel_url"])
        hit(client, bob["pixel_url"])
        wait_for(lambda: outbox_rows(outbox), lambda rows: len(rows) == 2, timeout_s=10)
        wait_for(lambda: len(bodies), lambda n: n >= 2, timeout_s=10)  # both were tried, and failed

        r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
        assert r.status_code == 200, r.text
        erased = r.json()["erased"]
        assert erased["webhook_deliveries"] == {"pending": 1, "finished": 0}
        assert erased["cached_messages"] == 1  # ann's opened message; the other one never made a notice
        assert outbox_rows(outbox) == [(bob["message_id"], "pending", "bob@example.com")]
        # and the file keeps no copy of the deleted rows (SQLite leaves them in free pages and the WAL)
        assert _files_holding(outbox.parent, "ann@example.com") == []
        assert _files_holding(outbox.parent, "bob@example.com") != []
        # the erased recipient's old email is opened again: answered, recorded nowhere, delivered to no one
        assert hit(client, ann["pixel_url"]).status_code == 200
        hit(client, bob["pixel_url"])  # after it: once bob's second delivery is queued, hers would be too
        wait_for(lambda: outbox_rows(outbox), lambda rows: len(rows) >= 2, timeout_s=30)
        assert outbox_rows(outbox) == [(bob["message_id"], "pending", "bob@example.com")] * 2


# -- one recipient, whatever the spelling --------------------------------------------------------------------


def test_erasure_and_lookups_find_the_recipient_however_the_address_is_written(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    sent = register(client, "Victim.Person@Example.org")
    hit(client, sent["pixel_url"])
    wait_for(lambda: opens(client, sent["message_id"]), lambda n: n == 1)
    assert client.get(f"/v1/messages/{sent['message_id']}", headers=ACME).json()["recipient"] == (
        "victim.person@example.org"
    )
    looked_up = client.get("/v1/recipients/VICTIM.person@example.ORG", headers=ACME)
    assert (looked_up.status_code, looked_up.json()["recipient"]) == (200, "victim.person@example.org")
    listed = client.get("/v1/messages", params={"recipient": "Victim.Person@Example.org"}, headers=ACME)
    assert [m["message_id"] for m in listed.json()["items"]] == [sent["message_id"]]
    # A send stored before the rule, in the spelling it was registered with, is the same recipient too.
    store = components.store
    assert store is not None
    store.insert(
        "sends",
        ("account", "campaign_id", "message_id", "recipient", "sent_at", "registered_at", "links"),
        [["acme", "c", "legacy-1", " Victim.PERSON@example.org", datetime.now(UTC), datetime.now(UTC), []]],
    )

    r = client.delete("/v1/recipients/victim.person@example.org", headers=ACME)
    assert r.status_code == 200, r.text
    assert (r.json()["recipient"], r.json()["erased"]["messages"], r.json()["erased"]["events"]) == (
        "victim.person@example.org", 2, 1,
    )  # fmt: skip
    for message_id in (sent["message_id"], "legacy-1"):
        assert client.get(f"/v1/messages/{message_id}", headers=ACME).status_code == 404
    assert client.delete("/v1/recipients/Victim.Person@Example.org", headers=ACME).status_code == 404
    stats = campaign(client)
    assert (stats["sent"], stats["opens"]) == (0, 0)


def test_opt_out_is_by_the_same_rule(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    sent = register(client, "dora@example.com")
    r = client.put("/v1/recipients/%20DORA@Example.COM/do-not-track", headers=ACME)
    assert r.json() == {"recipient": "dora@example.com", "tracking": False}
    hit(client, sent["pixel_url"])
    time.sleep(2.5)  # past a flush: had it been recorded, it would show
    assert opens(client, sent["message_id"]) == 0


@pytest.mark.parametrize(
    "recipient",
    ["", "   ", "ann\u0000@example.com", "ann@example.com\r\nBcc: eve@example.com", "ann\n@example.com"],
)
def test_a_recipient_that_is_no_address_is_refused(
    running: tuple[httpx.Client, Components], recipient: str
) -> None:
    client, components = running
    r = client.post(
        "/v1/messages", json={"campaign_id": "c", "recipient": recipient, "links": []}, headers=ACME
    )
    assert r.status_code == 400, r.text
    store = components.store
    assert store is not None
    assert store.query(f"SELECT count() FROM {store.database}.sends") == [(0,)]


@pytest.mark.parametrize("path", ["%0A", "%20%20", "ann%00@example.com"])
def test_privacy_routes_refuse_a_recipient_that_is_no_address(
    running: tuple[httpx.Client, Components], path: str
) -> None:
    client, _ = running
    assert client.put(f"/v1/recipients/{path}/do-not-track", headers=ACME).status_code == 400
    assert client.delete(f"/v1/recipients/{path}", headers=ACME).status_code == 400


# -- erased means gone from the disk -------------------------------------------------------------------------


def _files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose raw bytes contain ``needle`` (any case), as `grep -ril` finds them."""
    found = subprocess.run(
        ["grep", "-rlia", "--fixed-strings", needle, str(root)], capture_output=True, check=False
    )
    return sorted(found.stdout.decode().split())


def _marker() -> str:
    """A distinctive string to grep the data files for, with no run of 4 characters twice in it: LZ4
    (ClickHouse's default codec) writes a repeated run as a back-reference, and a grep of the raw bytes would
    then miss a value that is there (``zq1796323859279630758`` repeats ``7963``)."""
    while True:
        marker = f"zq{secrets.token_hex(8)}"
        if len({marker[i : i + 4] for i in range(len(marker) - 3)}) == len(marker) - 3:
            return marker


def test_an_erased_recipient_leaves_the_data_files_by_the_deadline_given(
    running: tuple[httpx.Client, Components], chdb_path: Path, tmp_path: Path
) -> None:
    client, components = running
    marker = _marker()
    address = f"Erase.Me.{marker}@Example.org"
    link = f"https://example.com/profile?who={marker}link"  # not an unsubscribe link: those are never tracked
    agent = f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/125.0 {marker}ua"
    sent = register(client, address, links=[link])
    kept = register(client, "stays@example.com")
    hit(client, sent["pixel_url"], ua=agent)
    hit(client, sent["links"][link], ua=agent)
    hit(client, sent["pixel_url"], ua=f"curl/8.4.0 {marker}bot")  # a filtered hit keeps its agent too
    hit(client, kept["pixel_url"])
    wait_for(
        lambda: campaign(client),
        lambda c: (c["opens"], c["clicks"], c["filtered"]) == (2, 1, {"ua:http_library": 1}),
    )
    # Their mail service's events, as the delivery loader stores them: one matched to the message, one about
    # the address that matched no message; both keep the address and the server's diagnostic text.
    store = components.store
    assert store is not None
    now = datetime.now(UTC)
    for message_id, campaign_id, who, event, event_id in (
        (sent["message_id"], "c", address, "bounce", "ev-1"),
        ("", "", address.lower(), "complaint", "ev-2"),
    ):
        row = {
            "delivery_id": f"d-{event_id}", "account": "acme", "campaign_id": campaign_id,
            "message_id": message_id, "recipient": who, "provider": "sendgrid", "provider_event_id": event_id,
            "event": event, "bounce_type": "hard" if event == "bounce" else "",
            "diagnostic": f"550 5.1.1 {marker}diag user unknown", "occurred_at": now, "received_at": now,
        }  # fmt: skip
        store.insert("deliveries", tuple(row), [list(row.values())])
    needles = (f"{marker}@", f"{marker}ua", f"{marker}bot", "erase.me.", f"{marker}diag")  # address, agents
    assert all(_files_holding(chdb_path, n) for n in (*needles, link))  # found while they are there

    r = client.delete(f"/v1/recipients/{address}", headers=ACME)
    assert r.status_code == 200, r.text
    erased = r.json()["erased"]
    assert (erased["messages"], erased["events"], erased["filtered_hits"]) == (1, 2, 1)
    assert erased["deliveries"] == 2
    deadline = datetime.fromisoformat(r.json()["on_disk_by"])
    db = store.database

    def unmasked() -> list[int]:  # rows a lightweight DELETE only hides are still read with the mask off
        where = "WHERE message_id = {m:String} SETTINGS apply_deleted_mask = 0"
        return [
            store.query(f"SELECT count() FROM {db}.{table} {where}", {"m": sent["message_id"]})[0][0]
            for table in ("sends", "events", "filtered_hits")
        ] + [store.query(f"SELECT count() FROM {db}.deliveries SETTINGS apply_deleted_mask = 0")[0][0]]

    wait_for(unmasked, lambda counts: counts == [0, 0, 0, 0], timeout_s=60)
    left = (deadline - datetime.now(UTC)).total_seconds()
    # A click's destination is also a rollup label (`/links`): only this recipient clicked it, so it goes
    # from the rollups too (`api.erasure_residue`).
    assert erased["link_labels"] == 1

    def holding() -> dict[str, list[str]]:
        return {n: _files_holding(chdb_path, n) + _files_holding(tmp_path, n) for n in (*needles, link)}

    # The parts that held the rows, and every other file (mutation texts, logs, the suppression list).
    wait_for(holding, lambda found: not any(found.values()), timeout_s=max(left, 1.0), every_s=2.0)
    assert datetime.now(UTC) <= deadline
    # the rest is untouched
    assert (campaign(client)["sent"], campaign(client)["opens"]) == (1, 1)
    assert store.query(f"SELECT count() FROM {db}.suppression_tags WHERE NOT tracking") == [(1,)]


# -- the suppression list keeps keyed tags, not addresses ----------------------------------------------------


def test_a_suppression_list_of_addresses_becomes_tags_and_survives_a_key_rotation(
    env: dict[str, str], chdb_path: Path
) -> None:
    marker = _marker()
    opted_out, resumed = f"Legacy.{marker}@Example.com", f"resumed.{marker}@example.com"
    store = Store.connect(parse_store_url(env["PIXELPIPE_CLICKHOUSE_URL"]))
    db = store.database
    # What 0004 kept: the address itself (a store written before 0005 is converted at the next start).
    now = datetime.now(UTC)
    store.insert(
        "suppressions",
        ("account", "recipient", "tracking", "reason", "updated_at"),
        [["acme", opted_out.lower(), False, "opt_out", now], ["acme", resumed, True, "opt_in", now]],
    )
    assert _files_holding(chdb_path, marker)

    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    dnt = components.do_not_track
    assert dnt is not None
    assert dnt.suppressed("acme", opted_out)
    assert not dnt.suppressed("acme", resumed)
    assert store.query(f"EXISTS TABLE {db}.suppressions") == [(0,)]
    assert _files_holding(chdb_path, marker) == []  # dropped with SYNC: the files went with the table
    old_tag = recipient_tag(SECRET.encode(), "acme", opted_out)
    assert store.query(f"SELECT tag, recipient_tags, tracking, reason FROM {db}.suppression_tags FINAL") == [
        (old_tag.hex(), [old_tag.hex()], False, "opt_out")
    ]

    # A new signing key: the recipient is still recognised by the old key's tag, and an opt-in under the new
    # keyring lifts the suppression under both keys.
    new_secret = "a-newer-secret-0123456789abcdef"
    rotated = settings_mod.load({**env, "PIXELPIPE_SECRET": f"2:{new_secret},1:{SECRET}"})
    again = build_components(rotated, frozenset({"edge", "process", "api"}))
    assert again.do_not_track is not None
    assert again.do_not_track.suppressed("acme", opted_out.upper())
    app, _ = build_app(again)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.delete(f"/v1/recipients/{opted_out}/do-not-track", headers=ACME)
        assert r.json() == {"recipient": opted_out.lower(), "tracking": True}
    assert load_suppressed(store) == []
    new_tag = recipient_tag(new_secret.encode(), "acme", opted_out)
    assert sorted(store.query(f"SELECT tag, tracking FROM {db}.suppression_tags FINAL")) == sorted(
        [(old_tag.hex(), True), (new_tag.hex(), True)]
    )


def test_sends_stored_before_the_rule_take_the_canonical_form(store: Store) -> None:
    at = datetime.now(UTC)
    store.insert(
        "sends",
        ("account", "campaign_id", "message_id", "recipient", "sent_at", "registered_at", "links"),
        [
            ["acme", "c", "m1", " Old.Spelling@Example.ORG ", at, at, []],
            ["acme", "c", "m2", "kept@example.org", at, at, []],
        ],
    )
    (migration,) = [m for m in migrations(store.database) if m.version == 5]
    for statement in migration.statements:  # idempotent: applied again over rows from before it
        store.command(statement)
    wait_for(
        lambda: store.query(f"SELECT message_id, recipient FROM {store.database}.sends ORDER BY message_id"),
        lambda rows: rows == [("m1", "old.spelling@example.org"), ("m2", "kept@example.org")],
        timeout_s=30,
    )
