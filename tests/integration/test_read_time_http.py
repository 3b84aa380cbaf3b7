"""Read time (issue 18) from registration to the API, over real HTTP and chDB, in one process.

A message registered with ``"read_time": true`` gets a timed open token (kind 3). Its open and its read
record are published through the in-process bus as the edge publishes them (the test builds them, so it
names the exact milliseconds), and the API answers: campaign stats and summary gain ``read_time`` (read 1,
skimmed 1, glanced 1, unknown 2 for a machine open and a busy end, the median of the measured), the
breakdown by client the same per client, the message timeline each open's ``read_seconds`` and
``read_category``. A record published again counts once; a do-not-track recipient's is never stored; an
erasure takes the rows off the disk.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.events import RawHit, encode_hit
from schemas.reads import ReadEnd, ReadRecord, encode_read
from schemas.tokens import TokenKind, recipient_tag, verify
from tests.integration.helpers import BROWSER, RESIDENTIAL, path_of, read_record, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
MPP = ("Mozilla/5.0", "17.58.63.200")  # a bare Mozilla from Apple's space: the MPP prefetch, a machine open
_ids = itertools.count(1)


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def register(client: httpx.Client, recipient: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/messages", json={"campaign_id": "c", "recipient": recipient, **body}, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def token_kind(components: Components, pixel_url: str) -> TokenKind:
    token = path_of(pixel_url).removeprefix("/o/").removesuffix(".gif")
    return verify(token, components.settings.keyring, expect=TokenKind.OPEN).kind


class Opens:
    """Publishes opens and read records of acme's campaign ``c`` as the edge does."""

    def __init__(self, components: Components) -> None:
        assert components.publisher is not None
        self.publisher = components.publisher
        self.secret = components.settings.keyring.signing_key[1]

    def open(
        self, message_id: str, recipient: str, *, agent: tuple[str, str] = (BROWSER, RESIDENTIAL)
    ) -> RawHit:
        now_ms = int(time.time() * 1000)
        hit = RawHit(
            hit_id=f"{now_ms:012x}{next(_ids):016x}",
            kind="open",
            received_at_ms=now_ms,
            ip=agent[1],
            user_agent=agent[0],
            token_ok=True,
            account="acme",
            campaign_id="c",
            message_id=message_id,
            sent_at=now_ms // 1000 - 600,
            recipient_tag=recipient_tag(self.secret, "acme", recipient).hex(),
        )
        self.publisher.publish_encoded(hit.partition_key, encode_hit(hit))
        return hit

    def read(self, hit: RawHit, read_ms: int, end: ReadEnd = ReadEnd.CLOSED) -> ReadRecord:
        record = read_record(hit, read_ms, end)
        self.publisher.publish_encoded(record.partition_key, encode_read(record))
        return record


def read_time(client: httpx.Client, route: str = "stats") -> dict[str, Any]:
    r = client.get(f"/v1/campaigns/c/{route}", headers=ACME)
    assert r.status_code == 200, r.text
    return dict(r.json()["read_time"])


def rt(read: int, skimmed: int, glanced: int, unknown: int, median: float | None) -> dict[str, Any]:
    measured = read + skimmed + glanced
    return {
        "read": read, "skimmed": skimmed, "glanced": glanced, "unknown": unknown, "measured": measured,
        "median_seconds": median,
    }  # fmt: skip


def test_a_message_registered_with_read_time_gets_a_timed_open_token(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    timed = register(client, "ann@example.com", read_time=True, links=["https://shop.example.com/a"])
    plain = register(client, "bob@example.com", links=["https://shop.example.com/a"])
    default = register(client, "cy@example.com", read_time=False)
    assert token_kind(components, timed["pixel_url"]) is TokenKind.TIMED_OPEN
    assert token_kind(components, plain["pixel_url"]) is TokenKind.OPEN
    assert token_kind(components, default["pixel_url"]) is TokenKind.OPEN
    # the links are click tokens either way
    click = path_of(timed["links"]["https://shop.example.com/a"]).removeprefix("/c/")
    assert verify(click, components.settings.keyring).kind is TokenKind.CLICK
    raw = base64.urlsafe_b64decode(click + "=" * (-len(click) % 4))
    assert raw[1] == TokenKind.CLICK
    # the batch and the instrumented HTML take it too
    batch = client.post(
        "/v1/messages/batch",
        json={"messages": [{"campaign_id": "c", "recipient": "di@example.com", "read_time": True}]},
        headers=ACME,
    )
    assert batch.status_code == 201, batch.text
    assert token_kind(components, batch.json()["messages"][0]["pixel_url"]) is TokenKind.TIMED_OPEN
    html = client.post(
        "/v1/instrument",
        json={"campaign_id": "c", "recipient": "ed@example.com", "read_time": True, "html": "<body></body>"},
        headers=ACME,
    )
    assert html.status_code == 201, html.text
    assert token_kind(components, html.json()["pixel_url"]) is TokenKind.TIMED_OPEN
    assert html.json()["pixel_url"] in html.json()["html"]
    # the stats of a campaign without read records: zeros and no median; the summary as before read time
    assert read_time(client) == rt(0, 0, 0, 0, None)
    assert "read_time" not in client.get("/v1/campaigns/c/summary", headers=ACME).json()


@pytest.mark.parametrize("value", ["yes", 2, None, [True], {}])
def test_read_time_that_is_not_a_boolean_is_refused(
    running: tuple[httpx.Client, Components], value: Any
) -> None:
    client, _ = running
    r = client.post(
        "/v1/messages",
        json={"campaign_id": "c", "recipient": "ann@example.com", "read_time": value},
        headers=ACME,
    )
    assert r.status_code == 400, r.text
    assert "read_time" in r.text


def test_read_times_are_counted_exactly_by_their_opens_classification(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    people = [f"p{i}@example.com" for i in range(7)]
    sent = {p: register(client, p, read_time=True)["message_id"] for p in people}
    bus = Opens(components)
    opens = [bus.open(sent[p], p) for p in people[:6]]
    machine = bus.open(sent[people[6]], people[6], agent=MPP)
    bus.read(opens[0], 9_500)  # read
    bus.read(opens[1], 4_000)  # skimmed
    bus.read(opens[2], 1_200)  # glanced
    bus.read(opens[3], 0, ReadEnd.BUSY)  # unknown: the GIF went whole at the edge's cap
    bus.read(opens[4], 3_000, ReadEnd.STOPPED)  # unknown: the edge stopped first, a lower bound under 8 s
    bus.read(machine, 25_000, ReadEnd.CAP)  # unknown: Apple's prefetch held it to the cap
    bot = bus.open(sent[people[5]], people[5], agent=("curl/8.4.0", RESIDENTIAL))  # a filtered hit
    bus.read(bot, 10_000)  # unknown: its open is no person's (only in filtered_hits)
    bus.read(dataclasses.replace(opens[5], hit_id="f" * 28), 10_000)  # unknown: no such open stored
    # opens[5] was not measured (no read record): it is in none of the numbers
    expected = rt(1, 1, 1, 5, 4.0)
    wait_for(lambda: read_time(client), lambda got: got == expected)
    assert read_time(client, "summary") == expected
    stats = client.get("/v1/campaigns/c/stats", headers=ACME).json()
    assert (stats["opens"], stats["machine_opens"]) == (6, 1)

    # a record published again (a replay before its offset was committed) counts once
    bus.read(opens[1], 4_000)
    bus.read(opens[2], 1_400)  # a second measurement of an open: the last stored wins, still one
    late = bus.open(sent[people[5]], people[5])
    bus.read(late, 30_000, ReadEnd.CLOSED)  # a sentinel: once it counts, the records before it are stored
    wait_for(lambda: read_time(client), lambda got: (got["read"], got["measured"]) == (2, 4))
    got = read_time(client)
    assert {k: got[k] for k in ("read", "skimmed", "glanced", "unknown", "measured")} == {
        "read": 2, "skimmed": 1, "glanced": 1, "unknown": 5, "measured": 4,
    }  # fmt: skip
    assert got["median_seconds"] == 6.75  # (4.0 + 9.5) / 2: the middle two of 1.4, 4.0, 9.5 and 30.0

    # the breakdown by client: the opens' clients, adding up to the campaign's
    rows = client.get("/v1/campaigns/c/breakdown", params={"by": "client"}, headers=ACME).json()["rows"]
    by_key = {row["key"]: row["read_time"] for row in rows}
    total = {k: sum(r[k] for r in by_key.values()) for k in ("read", "skimmed", "glanced", "unknown")}
    assert total == {"read": 2, "skimmed": 1, "glanced": 1, "unknown": 5}
    browser = next(row for row in rows if row["opens"] == 7)
    assert browser["read_time"]["read"] == 2
    assert browser["read_time"]["unknown"] == 2  # busy and stopped
    # the machine open's, the bot's and the absent open's
    assert sum(r["unknown"] for k, r in by_key.items() if k != browser["key"]) == 3
    # the dashboard's report in one request says the same (its summary and its breakdown by client)
    report = client.get("/v1/campaigns/c/report", headers=ACME).json()
    assert report["summary"] == client.get("/v1/campaigns/c/summary", headers=ACME).json()
    assert report["summary"]["read_time"]["measured"] == 4
    assert report["breakdowns"]["client"]["rows"] == rows

    # the timeline: each open's read seconds and category
    def timeline(message_id: str) -> list[dict[str, Any]]:
        r = client.get(f"/v1/messages/{message_id}/timeline", headers=ACME)
        assert r.status_code == 200, r.text
        return [e for e in r.json()["timeline"] if e["kind"] == "open"]

    assert [(e["read_seconds"], e["read_category"]) for e in timeline(sent[people[0]])] == [(9.5, "read")]
    assert [(e["read_seconds"], e["read_category"]) for e in timeline(sent[people[3]])] == [(None, "unknown")]
    assert [(e["read_seconds"], e["read_category"]) for e in timeline(sent[people[4]])] == [(3.0, "unknown")]
    assert [(e["read_seconds"], e["read_category"]) for e in timeline(sent[people[6]])] == [(25.0, "unknown")]
    # an open not measured, then one read (the bot's open is no counted hit: not in the timeline)
    assert [(e["read_seconds"], e["read_category"]) for e in timeline(sent[people[5]])] == [
        (None, None),
        (30.0, "read"),
    ]

    store = components.store
    assert store is not None
    assert store.query(f"SELECT count() FROM {store.database}.reads FINAL") == [(9,)]

    # a read record alone (its open stored long before) changes the kept stats at once: never stale
    bus.read(opens[5], 2_500)
    wait_for(lambda: read_time(client)["skimmed"], lambda n: n == 2, timeout_s=10)


def test_a_do_not_track_recipients_read_is_never_stored_and_an_erasure_takes_the_reads(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    store = components.store
    assert store is not None
    db = store.database
    sent = {
        p: register(client, p, read_time=True)["message_id"] for p in ("ann@example.com", "bob@example.com")
    }
    bus = Opens(components)
    ann = bus.open(sent["ann@example.com"], "ann@example.com")
    bus.read(ann, 5_000)
    wait_for(lambda: read_time(client), lambda got: got == rt(0, 1, 0, 0, 5.0))

    r = client.put("/v1/recipients/bob@example.com/do-not-track", headers=ACME)
    assert r.status_code == 200, r.text
    bob = bus.open(sent["bob@example.com"], "bob@example.com")
    bus.read(bob, 12_000)
    sentinel = bus.open(sent["ann@example.com"], "ann@example.com")
    bus.read(sentinel, 1_000)  # after bob's on the bus: once it counts, bob's was judged
    wait_for(lambda: read_time(client), lambda got: got == rt(0, 1, 1, 0, 3.0))
    assert store.query(
        f"SELECT count() FROM {db}.reads WHERE message_id = {{m:String}}", {"m": sent["bob@example.com"]}
    ) == [(0,)]

    r = client.delete("/v1/recipients/ann@example.com", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["reads"] == 2
    assert read_time(client) == rt(0, 0, 0, 0, None)
    assert "read_time" not in client.get("/v1/campaigns/c/summary", headers=ACME).json()

    def unmasked() -> int:  # a lightweight DELETE only hides rows: with the mask off they are still read
        return int(store.query(f"SELECT count() FROM {db}.reads SETTINGS apply_deleted_mask = 0")[0][0])

    wait_for(unmasked, lambda n: n == 0, timeout_s=60)
    timeline = client.get(f"/v1/messages/{sent['ann@example.com']}/timeline", headers=ACME)
    assert timeline.status_code == 404


def test_the_openapi_document_names_read_time(running: tuple[httpx.Client, Components]) -> None:
    client, _ = running
    doc = client.get("/schema/openapi.json").json()
    for body in ("MessageIn", "InstrumentIn"):
        field = doc["components"]["schemas"][body]["properties"]["read_time"]
        assert (field["type"], field["default"]) == ("boolean", False)
    paths = doc["paths"]
    for route in ("/v1/campaigns/{campaign_id}/stats", "/v1/campaigns/{campaign_id}/summary"):
        assert "read_time" in paths[route]["get"]["description"]
    assert "read_time" in paths["/v1/campaigns/{campaign_id}/breakdown"]["get"]["description"]
    assert "read_seconds" in paths["/v1/messages/{message_id}/timeline"]["get"]["description"]
