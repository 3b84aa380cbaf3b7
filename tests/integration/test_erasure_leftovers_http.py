"""What an erasure must not leave behind, and recipients that must be reachable, over real HTTP.

- a link label that only the erased recipient had (or that names them) is gone from the rollups and `/links`;
- their webhook attempts are gone from `webhook_deliveries` (on disk: a mutation, not a masking DELETE) and
  from `/deliveries`;
- their read times (issue 18: `reads`, the held pixels of their timed opens) are gone from the table, its
  parts on disk, the campaign's `read_time` and their timeline, and the other recipients' stay;
- an invalid token's row keeps only the token's shape, never its head (which decodes to the message);
- an address with `/` (or `%`, `+`, unicode) can be opted out and erased;
- a suppressed recipient's registration gets no pixel and no tracked links.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from litestar import Litestar, Request, Response, post

from ingest.http_protocol import EdgeHttpProtocol
from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.events import RawHit, encode_hit
from schemas.reads import encode_read
from schemas.store import Store
from schemas.tokens import recipient_tag
from tests.integration.helpers import BROWSER, RESIDENTIAL, hit, path_of, read_record, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
SHARED = "https://shop.example.com/sale"
# ann's own link (not an unsubscribe link: those are never tracked, issue 19, so never a click's label)
OWN = "https://shop.example.com/wishlist?email=ann%40example.com"
REFER = "https://shop.example.com/refer?friend=Ann@Example.com"  # in bob's email, names ann


@pytest.fixture
def received() -> Iterator[tuple[list[bytes], str]]:
    """A webhook endpoint that accepts everything."""
    bodies: list[bytes] = []
    lock = threading.Lock()

    @post("/hook", status_code=204)
    async def hook(request: Request[Any, Any, Any]) -> Response[None]:
        body = await request.body()
        with lock:
            bodies.append(body)
        return Response(None, status_code=204)

    with serving(Litestar(route_handlers=[hook])) as base:
        yield bodies, f"{base}/hook"


@contextlib.contextmanager
def pixelpipe(env: dict[str, str], http: Any = "h11") -> Iterator[tuple[httpx.Client, Components]]:
    env = {**env, "PIXELPIPE_CLICK_WINDOW_MS": "200", "PIXELPIPE_WEBHOOK_ALLOW_PRIVATE": "true"}
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app, http=http) as base, httpx.Client(base_url=base, timeout=20) as client:
        yield client, components


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    with pixelpipe(env) as running:
        yield running


def register(client: httpx.Client, recipient: str, links: list[str], **body: Any) -> dict[str, Any]:
    payload = {"campaign_id": "c", "recipient": recipient, "links": links, **body}
    r = client.post("/v1/messages", json=payload, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def store_of(components: Components) -> Store:
    assert components.store is not None
    return components.store


def links(client: httpx.Client) -> list[dict[str, Any]]:
    return list(client.get("/v1/campaigns/c/links", headers=ACME).json()["links"])


def test_erasure_drops_the_link_labels_that_were_the_recipients(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    ann = register(client, "ann@example.com", [SHARED, OWN])
    bob = register(client, "bob@example.com", [SHARED, REFER, OWN])  # OWN listed, never clicked by bob
    cy = register(client, "cy@example.com", [SHARED])
    # one link per message (two distinct links of a message within the window would be a scanner's burst)
    hit(client, ann["links"][OWN])
    hit(client, bob["links"][REFER])
    hit(client, cy["links"][SHARED])
    wait_for(lambda: len(links(client)), lambda n: n == 3, timeout_s=10)
    assert [(row["url"], row["clicks"]) for row in links(client)] == [
        (SHARED, 1), (REFER, 1), (OWN, 1),
    ]  # fmt: skip

    r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
    assert r.status_code == 200, r.text
    # OWN: only ann clicked it (bob's email lists it, but the label is ann's address); REFER names ann
    assert r.json()["erased"]["link_labels"] == 2
    assert [(row["url"], row["clicks"], row["unique_clicks"]) for row in links(client)] == [(SHARED, 1, 1)]
    store = store_of(components)
    labels = store.query(
        f"SELECT label FROM {store.database}.rollups WHERE rollup = 'url' SETTINGS apply_deleted_mask = 0"
    )
    assert sorted({label for (label,) in labels}) == [SHARED]
    # the campaign still counts bob's click on REFER: only the label went, not his hit
    stats = client.get("/v1/campaigns/c/stats", headers=ACME).json()
    assert (stats["sent"], stats["clicks"], stats["unique_clicks"]) == (2, 2, 2)


def test_erasure_removes_the_webhook_attempts_from_disk(
    running: tuple[httpx.Client, Components], received: tuple[list[bytes], str]
) -> None:
    client, components = running
    bodies, url = received
    r = client.post("/v1/webhooks", json={"url": url, "events": ["open"]}, headers=ACME)
    assert r.status_code == 201, r.text
    webhook = r.json()["id"]
    time.sleep(1.5)  # the dispatcher reads its webhooks every second: know this one before the hits
    ann = register(client, "ann@example.com", [], message_id="m-ann")
    bob = register(client, "bob@example.com", [], message_id="m-bob")
    hit(client, ann["pixel_url"])
    hit(client, bob["pixel_url"])

    def logged() -> list[str]:
        rows = client.get(f"/v1/webhooks/{webhook}/deliveries", headers=ACME).json()["deliveries"]
        return sorted(row["message_id"] for row in rows)

    wait_for(logged, lambda ids: ids == ["m-ann", "m-bob"], timeout_s=15)
    assert len(bodies) == 2

    r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["webhook_attempts"] == 1
    assert logged() == ["m-bob"]
    store = store_of(components)
    on_disk = store.query(
        f"SELECT message_id FROM {store.database}.webhook_deliveries SETTINGS apply_deleted_mask = 0"
    )
    assert on_disk == [("m-bob",)]
    # and the parts that held her rows leave the disk as soon as the other erased tables' (0006)
    settings = store.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'webhook_deliveries'",
        {"db": store.database},
    )[0][0]
    assert "old_parts_lifetime = 60" in settings
    time.sleep(1.5)  # past the next attempt-log flush: nothing of ann's comes back
    assert logged() == ["m-bob"]


def test_an_invalid_token_keeps_only_its_shape(running: tuple[httpx.Client, Components]) -> None:
    client, components = running
    sent = register(client, "ann@example.com", [SHARED], message_id="m-secret-message")
    token = path_of(sent["pixel_url"]).removeprefix("/o/").removesuffix(".gif")
    i = len(token) - 8  # in the tag, not its last character (whose spare bits must stay zero)
    forged = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]  # the body intact
    assert hit(client, f"/o/{forged}.gif").status_code == 200
    hit(client, f"/o/{'x' * 30}.gif")
    store = store_of(components)
    db = store.database
    rows, _ = wait_for(
        lambda: store.query(f"SELECT reason, token_head FROM {db}.filtered_hits ORDER BY reason DESC"),
        lambda rows: len(rows) == 2,
        timeout_s=10,
    )
    assert rows == [
        ("token:not canonical base64url", "not a v1 token, 30 chars"),
        ("token:bad signature", f"v1 open key 1, {len(forged)} chars"),
    ]
    assert len(forged) == 74  # the whole token's length: the edge publishes its shape, not its first 64
    # nothing left that decodes to the account, campaign or message
    raw = store.query(f"SELECT * FROM {db}.filtered_hits")
    assert "m-secret-message" not in repr(raw)
    assert base64.urlsafe_b64encode(b"m-secret-message").decode()[:12] not in repr(raw)
    assert token[:40] not in repr(raw)


SLASHED = [
    "a/b@example.com",  # a '/' is legal in the local part
    "a%2Fb@example.com",  # a literal '%2F' in it
    "c+tag/x@example.com",
    "dörte/ü@例え.jp",
]


@pytest.mark.parametrize("safe", ["@", "@+"])  # '+' in a path is a plus, encoded or not
@pytest.mark.parametrize("recipient", SLASHED)
def test_a_recipient_with_a_slash_can_be_opted_out_and_erased(
    running: tuple[httpx.Client, Components], recipient: str, safe: str
) -> None:
    client, _ = running
    other = register(client, "a@example.com", [])  # a neighbour whose address is a prefix of the path
    sent = register(client, recipient, [SHARED])
    path = f"/v1/recipients/{quote(recipient, safe=safe)}"
    r = client.put(f"{path}/do-not-track", headers=ACME)
    expected = {"recipient": recipient.lower(), "tracking": False}  # the canonical form: lower case
    assert (r.status_code, r.json()) == (200, expected)
    again = register(client, recipient, [SHARED])  # suppressed: registered, but not tracked
    assert (again["tracked"], again["pixel_url"]) == (False, None)
    r = client.delete(f"{path}/do-not-track", headers=ACME)
    assert (r.status_code, r.json()["tracking"]) == (200, True)
    assert register(client, recipient, [])["tracked"] is True

    seen = client.get(path, headers=ACME)
    assert (seen.status_code, len(seen.json()["messages"])) == (200, 3)
    r = client.delete(path, headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["messages"] == 3
    assert client.get(f"/v1/messages/{sent['message_id']}", headers=ACME).status_code == 404
    assert client.get(f"/v1/messages/{other['message_id']}", headers=ACME).status_code == 200
    assert client.delete(path, headers=ACME).status_code == 404


def test_a_recipient_with_a_slash_through_the_edges_own_http_protocol(env: dict[str, str]) -> None:
    """`pixelpipe serve` answers the API through `EdgeHttpProtocol` (httptools): the same raw path."""
    with pixelpipe(env, http=EdgeHttpProtocol) as (client, _):
        sent = register(client, "a/b@example.com", [])
        path = "/v1/recipients/a%2Fb@example.com"
        assert client.put(f"{path}/do-not-track", headers=ACME).json()["tracking"] is False
        assert client.get(path, headers=ACME).json()["messages"][0]["message_id"] == sent["message_id"]
        assert client.delete(path, headers=ACME).json()["erased"]["messages"] == 1
        assert client.get(f"/v1/messages/{sent['message_id']}", headers=ACME).status_code == 404


def test_recipient_paths_that_are_not_a_recipient(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    register(client, "a@example.com", [])
    assert client.delete("/v1/recipients/a@example.com/b@example.com", headers=ACME).status_code == 404
    assert client.put("/v1/recipients/a@example.com", headers=ACME).status_code == 405
    assert client.put("/v1/recipients/a@example.com/do-not-track/x", headers=ACME).status_code == 404
    assert client.delete("/v1/recipients/a@example.com", headers={}).status_code == 401
    bad = client.delete("/v1/recipients/%FF%FE@example.com", headers=ACME)  # not UTF-8 once decoded
    assert (bad.status_code, bad.json()["detail"]) == (400, "recipient: not UTF-8 once percent-decoded")
    bad = client.put("/v1/recipients/a%2F%FF@example.com/do-not-track", headers=ACME)
    assert bad.status_code == 400
    # a recipient whose address is "do-not-track" is a path of its own
    register(client, "do-not-track", [])
    assert client.delete("/v1/recipients/do-not-track", headers=ACME).status_code == 200


def test_a_suppressed_recipient_is_registered_untracked(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    assert client.put("/v1/recipients/Ann@Example.com/do-not-track", headers=ACME).status_code == 200

    one = register(client, " ann@example.com", [SHARED], message_id="m1")
    assert one == {
        "message_id": "m1", "tracked": False, "pixel_url": None, "links": {SHARED: SHARED},
        "tracking": "none", "tracking_reason": "do_not_track", "tracking_preferences_url": None,  # issue 19
        "untracked_links": [{"url": SHARED, "reason": "do_not_track"}],
    }  # fmt: skip
    r = client.post(
        "/v1/messages/batch",
        json={"messages": [
            {"campaign_id": "c", "recipient": "ANN@example.com", "message_id": "m2", "links": [SHARED]},
            {"campaign_id": "c", "recipient": "bob@example.com", "message_id": "m3", "links": [SHARED]},
        ]},
        headers=ACME,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    ann, bob = r.json()["messages"]
    assert (ann["tracked"], ann["pixel_url"], ann["links"]) == (False, None, {SHARED: SHARED})
    assert (bob["tracked"], "/o/" in bob["pixel_url"], "/c/" in bob["links"][SHARED]) == (True, True, True)

    html = f'<html><body><a href="{SHARED}">Sale</a><img src="https://x.example/i.png"></body></html>'
    r = client.post(
        "/v1/instrument",
        json={"campaign_id": "c", "recipient": "ann@example.com", "message_id": "m4", "html": html},
        headers=ACME,
    )
    assert r.status_code == 201, r.text
    assert r.json() == {
        "message_id": "m4", "tracked": False, "pixel_url": None, "links": {SHARED: SHARED}, "html": html,
        "tracking": "none", "tracking_reason": "do_not_track", "tracking_preferences_url": None,  # issue 19
        "untracked_links": [{"url": SHARED, "reason": "do_not_track"}],
    }  # fmt: skip
    # the sends are registered (counted as sent) all the same
    assert client.get("/v1/campaigns/c/stats", headers=ACME).json()["sent"] == 4

    # tracking again: the same message ids get their tracked URLs
    assert client.delete("/v1/recipients/ann@example.com/do-not-track", headers=ACME).status_code == 200
    again = register(client, " ann@example.com", [SHARED], message_id="m1")
    assert again["tracked"] is True
    assert "/o/" in again["pixel_url"]
    assert "/c/" in again["links"][SHARED]


def test_a_campaign_whose_only_recipient_was_erased_still_answers_with_zeros(
    running: tuple[httpx.Client, Components],
) -> None:
    """Listed by `/v1/campaigns` (the catalog names no one), so its stats answer too: zeros, not a 404 (as
    `breakdown` and the others answer). Unopened: a hit's hour rollups would keep it known."""
    client, _ = running
    register(client, "zed@example.org", [SHARED], campaign_id="solo")
    assert client.get("/v1/campaigns/solo/stats", headers=ACME).json()["sent"] == 1
    assert client.delete("/v1/recipients/zed@example.org", headers=ACME).status_code == 200
    listed = client.get("/v1/campaigns", headers=ACME).json()["items"]
    assert [(c["campaign_id"], c["sent"], c["opens"]) for c in listed] == [("solo", 0, 0)]
    for path in ("/v1/campaigns/solo/stats", "/v1/campaigns/solo/summary"):
        r = client.get(path, headers=ACME)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert (body["sent"], body["opens"], body["unique_opens"], body["open_rate"]) == (0, 0, 0, 0.0)


def test_erasure_takes_the_recipients_read_times_off_the_disk(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    store = store_of(components)
    db = store.database
    publisher = components.publisher
    assert publisher is not None
    secret = components.settings.keyring.signing_key[1]
    sent = {
        who: register(client, who, [], read_time=True)["message_id"] for who in ("ann@x.org", "bob@x.org")
    }
    now_ms = int(time.time() * 1000)
    for i, (who, read_ms) in enumerate((("ann@x.org", 9_000), ("ann@x.org", 3_000), ("bob@x.org", 1_000))):
        # the open and its read record, as the edge publishes a timed open's
        open_ = RawHit(
            hit_id=f"{now_ms:012x}{i:016x}", kind="open", received_at_ms=now_ms, ip=RESIDENTIAL,
            user_agent=BROWSER, token_ok=True, account="acme", campaign_id="c", message_id=sent[who],
            sent_at=now_ms // 1000 - 60, recipient_tag=recipient_tag(secret, "acme", who).hex(),
        )  # fmt: skip
        read = read_record(open_, read_ms)
        publisher.publish_encoded(open_.partition_key, encode_hit(open_))
        publisher.publish_encoded(read.partition_key, encode_read(read))

    def read_time() -> dict[str, Any]:
        return dict(client.get("/v1/campaigns/c/stats", headers=ACME).json()["read_time"])

    wait_for(read_time, lambda rt: rt["measured"] == 3)
    r = client.delete("/v1/recipients/ann@x.org", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["reads"] == 2
    assert read_time() == {
        "read": 0, "skimmed": 0, "glanced": 1, "unknown": 0, "measured": 1, "median_seconds": 1.0,
    }  # fmt: skip

    def on_disk() -> list[tuple[Any, ...]]:  # a lightweight DELETE only hides rows: read with the mask off
        return store.query(f"SELECT message_id FROM {db}.reads SETTINGS apply_deleted_mask = 0")

    wait_for(on_disk, lambda rows: rows == [(sent["bob@x.org"],)], timeout_s=60)
    assert client.get(f"/v1/messages/{sent['ann@x.org']}/timeline", headers=ACME).status_code == 404
