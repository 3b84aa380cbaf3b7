"""The labelled corpus, end to end over HTTP: register each case's message with ``sent_at`` in the past,
send its hits through a trusted proxy (``X-Forwarded-For``), and check the counters the API reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import embedded_env, hit, wait_for
from tests.serving import serving

DATA = Path(__file__).parent.parent / "data"
ACME = {"Authorization": "Bearer acme-key-123"}
# Gaps longer than the burst window are all the same to the classifier; cap them so the test stays short.
MAX_GAP_MS = 2500


def _cases() -> list[dict[str, Any]]:
    shared = [orjson.loads(line) for line in (DATA / "corpus_hits.jsonl").read_text().splitlines() if line]
    # Extra cases that depend on an ASN we cannot map with MaxMind's test ASN DB are unit-tested only.
    extra = [
        case
        for line in (DATA / "extra_hits.jsonl").read_text().splitlines()
        if line and "asn" not in (case := orjson.loads(line))
    ]
    return shared + extra


CASES = _cases()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    database = "corpus_http"
    env = embedded_env(
        tmp_path_factory.mktemp("corpus"),
        chdb_path,
        PIXELPIPE_SECRET="corpus-secret-0123456789",
        PIXELPIPE_CLICKHOUSE_URL=f"chdb://{chdb_path}?database={database}",
        PIXELPIPE_GEOIP_ASN_DB=str(DATA / "GeoLite2-ASN-Test.mmdb"),
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8",
    )
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        registered = {}
        for case in CASES:
            sent_at = datetime.now(UTC) - timedelta(seconds=case["after_s"])
            links = [f"https://shop.example.com/item/{i}?ref=mail" for i in range(5)]
            r = client.post(
                "/v1/messages",
                json={
                    "campaign_id": "corpus",
                    "recipient": f"{case['id']}@example.com",
                    "message_id": case["id"],
                    "sent_at": sent_at.isoformat(),
                    "links": links,
                },
                headers=ACME,
            )
            assert r.status_code == 201, r.text
            registered[case["id"]] = r.json()

        def send(case: dict[str, Any]) -> None:
            sent = registered[case["id"]]
            if case["kind"] == "open":
                assert hit(client, sent["pixel_url"], ua=case["ua"], ip=case["ip"]).status_code == 200
                return
            links = list(sent["links"].values())
            previous = 0
            for link_index, after_ms in case["clicks"]:
                time.sleep(min(after_ms - previous, MAX_GAP_MS) / 1000)
                previous = after_ms
                r = hit(client, links[link_index], ua=case["ua"], ip=case["ip"])
                assert r.status_code == 302

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, CASES))

        def stats() -> dict[str, dict[str, Any]]:
            return {
                case["id"]: client.get(f"/v1/messages/{case['id']}", headers=ACME).json() for case in CASES
            }

        def settled(s: dict[str, dict[str, Any]]) -> bool:
            stored = [
                m["opens"] + m["machine_opens"] + m["clicks"] + sum(m["filtered"].values())
                for m in s.values()
            ]
            expected = [1 if c["kind"] == "open" else len(c["clicks"]) for c in CASES]
            return stored == expected

        final, _ = wait_for(stats, settled, timeout_s=60)
        assert components.store is not None
        places = components.store.query(
            f"SELECT message_id, country, city, ip FROM {database}.events WHERE kind = 'open'"
        )
        final["_places"] = {message_id: (country, city, ip) for message_id, country, city, ip in places}
        yield final


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(results: dict[str, dict[str, Any]], case: dict[str, Any]) -> None:
    m = results[case["id"]]
    hits = 1 if case["kind"] == "open" else len(case["clicks"])
    if case["kind"] == "open":
        expected_opens = hits if case["expect"] == "human" else 0
        assert m["opens"] == expected_opens, m
        if case["expect"] == "machine":
            assert m["machine_opens"] == hits, m
        assert m["clicks"] == 0
    else:
        assert m["opens"] == 0
        assert m["machine_opens"] == 0
        if case["expect"] == "human":
            assert (m["clicks"], m["bot_clicks"]) == (hits, 0), m
        else:
            assert (m["clicks"], m["bot_clicks"]) == (0, hits), m


def test_campaign_totals_match_the_labels(results: dict[str, dict[str, Any]]) -> None:
    human_opens = sum(1 for c in CASES if c["kind"] == "open" and c["expect"] == "human")
    machine_opens = sum(1 for c in CASES if c["kind"] == "open" and c["expect"] == "machine")
    human_clicks = sum(len(c["clicks"]) for c in CASES if c["kind"] == "click" and c["expect"] == "human")
    counted = [m for key, m in results.items() if not key.startswith("_")]
    assert sum(m["opens"] for m in counted) == human_opens
    assert sum(m["machine_opens"] for m in counted) >= machine_opens
    assert sum(m["clicks"] for m in counted) == human_clicks


def test_proxy_opens_have_no_location(results: dict[str, dict[str, Any]]) -> None:
    # gmail-proxy and yahoo-proxy are people, counted, but the address is the proxy's: no place is stored.
    assert results["gmail-proxy"]["opens"] == 1
    assert results["yahoo-proxy"]["opens"] == 1
    places = results["_places"]
    assert places["gmail-proxy"][:2] == ("", "")
    assert places["yahoo-proxy"][:2] == ("", "")
    # a reader's own address is located, then stored cut to its /24
    assert places["apple-mail-mac"] == ("GB", "London", "81.2.69.0")
    assert places["thunderbird"][0] == "GB"
