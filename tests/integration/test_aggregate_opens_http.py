"""The campaign pixel end to end over real HTTP (issue 19): an `AGGREGATE_OPEN` token's GIF, its opens counted
per campaign by who opened, exactly, and nothing per person stored anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import Components, build_app, build_components
from schemas.tokens import RECIPIENT_TAG_BYTES, Claim, TokenKind, sign
from tests.integration.helpers import BROWSER, RESIDENTIAL, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")
CURL = "curl/8.4.0"


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[httpx.Client, Components]]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, components


def campaign_pixel(components: Components, campaign_id: str) -> str:
    claim = Claim(
        TokenKind.AGGREGATE_OPEN, "acme", campaign_id, "", 0, recipient_tag=bytes(RECIPIENT_TAG_BYTES)
    )
    return f"/o/{sign(claim, components.settings.keyring)}.gif"


def stats(client: httpx.Client, campaign_id: str = "c") -> dict[str, Any]:
    return dict(client.get(f"/v1/campaigns/{campaign_id}/stats", headers=ACME).json())


def table_counts(components: Components) -> dict[str, int]:
    store = components.store
    assert store is not None
    db = store.database
    tables = [
        name
        for (name,) in store.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT LIKE '%View'",
            {"db": db},
        )
    ]
    return {t: int(store.query(f"SELECT count() FROM {db}.`{t}`")[0][0]) for t in tables}


def test_campaign_pixel_counts_opens_by_who_and_stores_nothing_per_person(
    running: tuple[httpx.Client, Components],
) -> None:
    client, components = running
    r = client.post("/v1/messages", json={"campaign_id": "c", "recipient": "ann@example.com"}, headers=ACME)
    sent = r.json()
    hit(client, sent["pixel_url"])  # an individually tracked open beside them, counted as before
    wait_for(lambda: stats(client), lambda s: s["opens"] == 1)
    assert "aggregate_opens" not in stats(client)  # a campaign without the pixel answers as before
    before = table_counts(components)

    pixel = campaign_pixel(components, "c")
    for ua, ip in [(BROWSER, RESIDENTIAL)] * 3 + [APPLE_MPP, (CURL, RESIDENTIAL)]:
        r = hit(client, pixel, ua=ua, ip=ip)
        assert (r.status_code, r.headers["content-type"], len(r.content)) == (200, "image/gif", 43)
    assert client.head(pixel).status_code == 200  # a HEAD is not an open
    forged = pixel[:12] + ("A" if pixel[12] != "A" else "B") + pixel[13:]
    assert hit(client, forged).status_code == 200  # still the GIF; an invalid hit, kept by its shape only

    expected = {"aggregate_opens": 3, "aggregate_machine_opens": 1, "aggregate_filtered": 1}
    got, _ = wait_for(lambda: stats(client), lambda s: {k: s.get(k) for k in expected} == expected)
    wait_for(lambda: table_counts(components)["filtered_hits"], lambda n: n == before["filtered_hits"] + 1)
    assert (got["opens"], got["unique_opens"], got["machine_opens"]) == (1, 1, 0)  # unchanged
    summary = client.get("/v1/campaigns/c/summary?include_machine=true", headers=ACME).json()
    assert summary["aggregate_opens"] == 4  # people and machines, as `opens` with include_machine
    assert client.get("/v1/campaigns/other/stats", headers=ACME).status_code == 404

    after = table_counts(components)
    grew = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
    # The forged token is one filtered hit (and its rollup rows); the campaign pixel's opens are 5 rows of
    # aggregate_opens and nothing else.
    assert grew.pop("aggregate_opens") == 5
    assert grew.pop("filtered_hits") == 1
    assert set(grew) <= {"rollups"}
    store = components.store
    assert store is not None
    db = store.database
    invalid = store.query(f"SELECT account, campaign_id, message_id FROM {db}.filtered_hits")
    assert invalid == [("", "", "")]  # the forged pixel: no claim, so nobody named
    rows = store.query(f"SELECT * FROM {db}.aggregate_opens ORDER BY who, reason")
    assert [r[:2] + r[3:5] for r in rows] == [
        ("acme", "c", "bot", "ua:http_library"),
        ("acme", "c", "machine", "apple_mpp"),
        ("acme", "c", "person", "ua:client"),
        ("acme", "c", "person", "ua:client"),
        ("acme", "c", "person", "ua:client"),
    ]
    text = repr(rows)
    for personal in (RESIDENTIAL, "17.58.63.200", "Mozilla", "curl", "ann@example.com", sent["message_id"]):
        assert personal not in text
    assert len({r[5] for r in rows}) == 5  # each open once, by the hash of its random id
    assert all(r[2].minute == 0 and r[2].second == 0 for r in rows)  # the hour only
