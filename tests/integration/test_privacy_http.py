"""Privacy over real HTTP: do-not-track, erasure, retention and what of an address is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
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

    r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
    assert r.status_code == 200
    assert r.json() == {
        "recipient": "ann@example.com",
        "erased": {
            "messages": 2,
            "events": 2,
            "filtered_hits": 2,
            "webhook_deliveries": {"pending": 0, "finished": 0},  # no webhooks
            "cached_messages": 2,
            "live_notices": 2,  # her two opens, in this process's ring for Last-Event-ID resumes
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
        # the erased recipient's old email is opened again: answered, recorded nowhere, delivered to no one
        assert hit(client, ann["pixel_url"]).status_code == 200
        hit(client, bob["pixel_url"])  # after it: once bob's second delivery is queued, hers would be too
        wait_for(lambda: outbox_rows(outbox), lambda rows: len(rows) >= 2, timeout_s=30)
        assert outbox_rows(outbox) == [(bob["message_id"], "pending", "bob@example.com")] * 2
