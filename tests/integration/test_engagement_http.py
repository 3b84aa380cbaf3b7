"""Engagement per recipient and segments over real HTTP and chDB (issue 20): exact numbers, status and score
from the engagement rollup (0012), consent through main's own routes (a recipient who refused, is on
do-not-track or was never allowed individual tracking is never scored and appears only in segments that rest
on no tracking), implied opens, cursor pages, and erasure of the rollup's rows.

The dataset (campaign ``spring`` unless said):
- ann: 3 messages; a1 opened twice and its link 0 clicked, a2 opened, a3 nothing -> engaged, 3 stars;
- bob: 2 messages; b1 opened only by Apple's prefetch -> unknown (MPP hides his opens), 3 stars;
- cy: 1 message never opened -> unengaged, 1 star;
- dan: 1 message, delivered, hard-bounced (through the delivery matcher: the send's tag) -> bounced, 1 star;
- eve: 1 message opened by her, then she refused tracking (``PUT .../consent``) -> not_tracked, no score;
  her open after the refusal is not recorded;
- fay: 1 message of campaign ``autumn``, opened, link 1 clicked -> engaged, 5 stars;
- gus: 1 message opened by him, then put on do-not-track (``PUT .../do-not-track``) -> not_tracked;
- hal: 1 message registered while the account was ``opt_in`` and hal had not granted -> tracked by the
  aggregate pixel only, never individually -> not_tracked;
- ivy: 1 message whose link 0 she clicked, its pixel never loaded (images blocked) -> an implied open,
  engaged, 5 stars;
- jay: 1 message opened by Apple's prefetch, then its link 1 clicked by him -> not implied (its pixel
  loaded), engaged, 5 stars.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.store import Store
from tests.integration.engagement_serving import delivered_then_bounced, engagement_app
from tests.integration.helpers import hit, wait_for

ACME = {"Authorization": "Bearer acme-key-123"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")
LINKS = ["https://shop.example.com/a", "https://shop.example.com/b"]


def register(client: httpx.Client, campaign: str, message: str, recipient: str) -> dict[str, Any]:
    sent_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body = {"campaign_id": campaign, "message_id": message, "recipient": recipient, "links": LINKS}
    r = client.post("/v1/messages", json={**body, "sent_at": sent_at}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def settings(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.patch("/v1/account/settings", json=changes, headers=ACME)


def engagement(client: httpx.Client, recipient: str) -> dict[str, Any]:
    r = client.get(f"/v1/recipients/{recipient}/engagement", headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json())


def segment(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/segments/query", json=body, headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json())


def members(client: httpx.Client, **body: Any) -> list[str]:
    return sorted(r["recipient"] for r in segment(client, **body)["recipients"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[tuple[httpx.Client, Store]]:
    with engagement_app(tmp_path_factory.mktemp("data"), chdb_path) as (client, _, store):
        sent = {
            "a1": register(client, "spring", "a1", "ann@example.com"),
            "a2": register(client, "spring", "a2", "Ann@Example.com "),  # one recipient however written
            "a3": register(client, "spring", "a3", "ann@example.com"),
            "b1": register(client, "spring", "b1", "bob@example.com"),
            "b2": register(client, "spring", "b2", "bob@example.com"),
            "c1": register(client, "spring", "c1", "cy@example.com"),
            "d1": register(client, "spring", "d1", "dan@example.com"),
            "e1": register(client, "spring", "e1", "eve@example.com"),
            "f1": register(client, "autumn", "f1", "fay@example.com"),
            "g1": register(client, "spring", "g1", "gus@example.com"),
            "i1": register(client, "spring", "i1", "ivy@example.com"),
            "j1": register(client, "spring", "j1", "jay@example.com"),
        }
        # hal: registered under opt_in without his consent (issue 19): the aggregate pixel, no individual one
        assert settings(client, consent_mode="opt_in").status_code == 200
        sent["h1"] = register(client, "spring", "h1", "hal@example.com")
        assert (sent["h1"]["tracking"], sent["h1"]["links"][LINKS[0]]) == ("aggregate", LINKS[0])
        assert settings(client, consent_mode="off").status_code == 200
        opens = (("a1", "81.2.69.160"), ("a2", "81.2.69.161"), ("e1", "81.2.69.162"), ("g1", "81.2.69.164"))
        for message, ip in opens:
            assert hit(client, sent[message]["pixel_url"], ua=OUTLOOK, ip=ip).status_code == 200
        assert hit(client, sent["f1"]["pixel_url"], ua=OUTLOOK, ip="81.2.69.163").status_code == 200
        for message in ("b1", "j1"):
            assert (
                hit(client, sent[message]["pixel_url"], ua=APPLE_MPP[0], ip=APPLE_MPP[1]).status_code == 200
            )
        time.sleep(0.5)  # past the click window: a person's later click, not a scanner's burst
        assert hit(client, sent["a1"]["pixel_url"], ua=OUTLOOK, ip="81.2.69.160").status_code == 200
        assert hit(client, sent["a1"]["links"][LINKS[0]], ip="81.2.69.160").status_code in (302, 303)
        assert hit(client, sent["f1"]["links"][LINKS[1]], ip="81.2.69.163").status_code in (302, 303)
        assert hit(client, sent["i1"]["links"][LINKS[0]], ip="81.2.69.165").status_code in (302, 303)
        assert hit(client, sent["j1"]["links"][LINKS[1]], ip="81.2.69.166").status_code in (302, 303)
        wait_for(
            lambda: client.get("/v1/campaigns/spring/stats", headers=ACME).json(),
            lambda s: s.get("opens") == 5 and s.get("clicks") == 3 and s.get("machine_opens") == 2,
        )
        wait_for(
            lambda: client.get("/v1/campaigns/autumn/stats", headers=ACME).json(),
            lambda s: s.get("clicks") == 1,
        )
        # dan's mail service: delivered, then a hard bounce (the loader's path)
        delivered_then_bounced(store, "d1")
        # eve refuses tracking after her open, through the consent route (issue 19: history, then the edge
        # stops recording her); gus is put on do-not-track after his
        r = client.put("/v1/recipients/eve@example.com/consent", json={"state": "refused"}, headers=ACME)
        assert r.status_code == 200, r.text
        assert r.json()["refusal_enforced"] is True
        r = client.put("/v1/recipients/gus@example.com/do-not-track", headers=ACME)
        assert r.status_code == 200, r.text
        # eve opens again after her refusal: not recorded (fay's later open is, and comes after it)
        assert hit(client, sent["e1"]["pixel_url"], ua=OUTLOOK, ip="81.2.69.162").status_code == 200
        assert hit(client, sent["f1"]["pixel_url"], ua=OUTLOOK, ip="81.2.69.163").status_code == 200
        wait_for(
            lambda: client.get("/v1/campaigns/autumn/stats", headers=ACME).json(),
            lambda s: s.get("opens") == 2,
        )
        yield client, store


def test_a_recipients_engagement_is_exact(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    ann = engagement(client, "ANN@example.com")
    assert {k: v for k, v in ann.items() if not k.startswith("last_")} == {
        "recipient": "ann@example.com", "sends": 3, "delivered": 0, "opened": 2, "human_opens": 3,
        "implied_opens": 0, "clicked": 1, "clicks": 1, "machine_only": 0, "mpp_only": 0, "bounces": 0,
        "complaints": 0, "tracked": 3, "engaged": 2, "not_tracked": False, "status": "engaged",
        # e = 2/3, c = 1/3: 1 + floor(4 * (0.75 * 2/3 + 0.25 * 1/3) + 0.5) = 1 + floor(2.83) = 3
        "score": 3,
    }  # fmt: skip
    assert None not in (ann["last_open"], ann["last_click"], ann["last_sent"])
    assert ann["last_click"] >= ann["last_open"]
    # the recipient view carries the same numbers (issue 20: engagement in the recipient view)
    view = client.get("/v1/recipients/ann@example.com", headers=ACME).json()
    assert view["engagement"] == {k: v for k, v in ann.items() if k != "recipient"}


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("bob@example.com", {"sends": 2, "opened": 0, "machine_only": 1, "mpp_only": 1, "status": "unknown",
                             "score": 3, "last_open": None}),
        ("cy@example.com", {"sends": 1, "opened": 0, "machine_only": 0, "status": "unengaged", "score": 1}),
        ("dan@example.com", {"sends": 1, "delivered": 1, "bounces": 1, "status": "bounced", "score": 1}),
        # her open after the refusal is not recorded: one open
        ("eve@example.com", {"sends": 1, "opened": 1, "human_opens": 1, "not_tracked": True,
                             "status": "not_tracked", "score": None}),
        # e = 1, c = 1: 1 + floor(4 + 0.5) = 5
        ("fay@example.com", {"sends": 1, "opened": 1, "human_opens": 2, "clicked": 1, "status": "engaged",
                             "score": 5}),
        ("gus@example.com", {"sends": 1, "opened": 1, "tracked": 1, "not_tracked": True,
                             "status": "not_tracked", "score": None}),
        ("hal@example.com", {"sends": 1, "tracked": 0, "not_tracked": True, "status": "not_tracked",
                             "score": None}),
        # only a click: an implied open, apart from the pixel's; engaged, not unknown
        ("ivy@example.com", {"sends": 1, "opened": 0, "human_opens": 0, "implied_opens": 1, "clicked": 1,
                             "machine_only": 0, "engaged": 1, "status": "engaged", "score": 5,
                             "last_open": None}),
        # Apple's prefetch loaded the pixel, then he clicked: not implied, not machine-only, engaged
        ("jay@example.com", {"sends": 1, "opened": 0, "implied_opens": 0, "clicked": 1, "machine_only": 0,
                             "mpp_only": 0, "engaged": 1, "status": "engaged", "score": 5}),
    ],
)  # fmt: skip
def test_status_and_score(
    served: tuple[httpx.Client, Store], recipient: str, expected: dict[str, Any]
) -> None:
    client, _ = served
    got = engagement(client, recipient)
    assert {k: got[k] for k in expected} == expected


def test_an_unknown_recipient_is_404(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    assert client.get("/v1/recipients/nobody@example.com/engagement", headers=ACME).status_code == 404
    other = {"Authorization": "Bearer nope"}
    assert client.get("/v1/recipients/ann@example.com/engagement", headers=other).status_code == 401


EVERYONE = [
    "ann@example.com", "bob@example.com", "cy@example.com", "dan@example.com", "eve@example.com",
    "fay@example.com", "gus@example.com", "hal@example.com", "ivy@example.com", "jay@example.com",
]  # fmt: skip


def test_segments_combine_and_respect_consent(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    assert members(client) == EVERYONE
    scored = ["ann@example.com", "bob@example.com", "fay@example.com", "ivy@example.com", "jay@example.com"]
    assert members(client, min_score=3) == scored
    assert members(client, min_score=4) == ["fay@example.com", "ivy@example.com", "jay@example.com"]
    assert members(client, clicked={"campaign": "spring", "link_index": 0}) == [
        "ann@example.com",
        "ivy@example.com",
    ]
    assert members(client, clicked={"campaign": "spring", "url": LINKS[1]}) == ["jay@example.com"]
    assert members(client, clicked={"campaign": "autumn"}) == ["fay@example.com"]
    # eve and gus opened spring and did not click, but refused tracking (a consent refusal, do-not-track):
    # not in a segment that rests on tracking
    assert members(client, opened_not_clicked={"campaign": "spring"}) == []
    # opened spring: a person's pixel open (ann) or an implied one (ivy); jay's pixel loaded by a machine
    assert members(client, opened={"campaign": "spring"}) == ["ann@example.com", "ivy@example.com"]
    assert members(client, opened={"campaign": "autumn"}, clicked={"campaign": "spring"}) == []
    assert members(client, machine_only=True) == ["bob@example.com"]
    assert members(client, bounced=True) == ["dan@example.com"]
    assert members(client, complained=True) == []
    not_tracked = ["eve@example.com", "gus@example.com", "hal@example.com"]
    assert members(client, refused_tracking=True) == not_tracked
    assert members(client, refused_tracking=True, bounced=True) == []
    # inactive for a day: no person's open or click within it (never counts as inactive since ever)
    assert members(client, inactive_days=1) == ["bob@example.com", "cy@example.com", "dan@example.com"]
    assert members(client, inactive_days=1, machine_only=True) == ["bob@example.com"]
    # the largest N (100 years, past where a DateTime minus N days wraps): the never active, not the active
    assert members(client, inactive_days=36500) == ["bob@example.com", "cy@example.com", "dan@example.com"]
    assert segment(client, min_score=1, count=True)["count"] == 7  # eve, gus, hal: never scored
    for r in segment(client, refused_tracking=True)["recipients"]:
        assert (r["status"], r["score"]) == ("not_tracked", None)


def test_a_refusal_lifted_is_scored_again(served: tuple[httpx.Client, Store]) -> None:
    """gus off do-not-track: his tracked send's engagement counts again (he refused nothing else)."""
    client, _ = served
    assert client.delete("/v1/recipients/gus@example.com/do-not-track", headers=ACME).status_code == 200
    try:
        gus = engagement(client, "gus@example.com")
        assert (gus["status"], gus["score"], gus["not_tracked"]) == ("engaged", 4, False)
        assert members(client, opened_not_clicked={"campaign": "spring"}) == ["gus@example.com"]
    finally:
        assert client.put("/v1/recipients/gus@example.com/do-not-track", headers=ACME).status_code == 200
    assert members(client, refused_tracking=True) == ["eve@example.com", "gus@example.com", "hal@example.com"]


def test_segment_pages_follow_the_cursor(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    seen: list[str] = []
    page = segment(client, limit=4, count=True)
    assert (page["count"], len(page["recipients"])) == (10, 4)
    seen += [r["recipient"] for r in page["recipients"]]
    page = segment(client, limit=4, cursor=page["next_cursor"])
    assert len(page["recipients"]) == 4
    seen += [r["recipient"] for r in page["recipients"]]
    page = segment(client, limit=4, cursor=page["next_cursor"])
    assert (len(page["recipients"]), page["next_cursor"]) == (2, None)
    seen += [r["recipient"] for r in page["recipients"]]
    assert sorted(seen) == EVERYONE
    tags = [r["recipient_tag"] for r in segment(client)["recipients"]]
    assert tags == sorted(tags)
    r = client.post("/v1/segments/query", json={"cursor": "not-ours"}, headers=ACME)
    assert r.status_code == 400
    r = client.post("/v1/segments/query", json={"min_score": 9}, headers=ACME)
    assert r.status_code == 400
    r = client.post("/v1/segments/query", json={"stars": 3}, headers=ACME)
    assert r.status_code == 400
    both = {"campaign": "spring", "link_index": 0, "url": LINKS[0]}
    assert client.post("/v1/segments/query", json={"clicked": both}, headers=ACME).status_code == 400


def test_erasure_takes_the_recipients_engagement(served: tuple[httpx.Client, Store]) -> None:
    client, store = served
    # a row under a key since retired from the keyring: its tag is no longer computed, its address is kept
    store.command(
        f"INSERT INTO {store.database}.engagement (account, recipient_tag, recipient, last_at) "
        "VALUES ('acme', 'retired-key-tag', 'cy@example.com', now())"
    )
    assert client.delete("/v1/recipients/cy@example.com", headers=ACME).status_code == 200
    assert client.get("/v1/recipients/cy@example.com/engagement", headers=ACME).status_code == 404
    left = store.query(
        f"SELECT count() FROM {store.database}.engagement WHERE recipient = 'cy@example.com' "
        "SETTINGS apply_deleted_mask = 0"
    )
    assert left == [(0,)]
    assert "cy@example.com" not in members(client)
