"""A processed hit to its ClickHouse row, and the processor that parses the address once for all of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from processors.classify import classify
from processors.geo import Geo, GeoLookup
from processors.pipeline import HitProcessor, ProcessedHit
from processors.ranges import load_ranges
from processors.rows import (
    EVENT_COLUMNS,
    STORED_EVENT_COLUMNS,
    STORED_FILTERED_COLUMNS,
    row,
    stored_token_shape,
)
from processors.useragent import parse_agent
from schemas.events import RawHit
from schemas.tokens import token_shape
from schemas.verdicts import Classification, Verdict
from tests.unit.test_corpus import CORPUS, EXTRA, hits_of

DATA = Path(__file__).parents[1] / "data"
MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
HIT = RawHit(
    "h1", "open", 1_767_225_612_345, "81.2.69.160", MAIL, True, "acme", "c1", "m1", 1_767_225_600,
    token_head="AAAA",
)  # fmt: skip


@pytest.fixture(scope="module")
def processor() -> Iterator[HitProcessor]:
    geo = GeoLookup(DATA / "GeoIP2-City-Test.mmdb", DATA / "GeoLite2-ASN-Test.mmdb")
    yield HitProcessor(geo, load_ranges())
    geo.close()


def test_a_counted_hit_is_an_events_row(processor: HitProcessor) -> None:
    p = processor.process(HIT, "memory:0:7")
    table, values = row(p, p.classification, "truncate")
    assert table == "events"
    assert dict(zip(STORED_EVENT_COLUMNS, values, strict=True)) == {
        "hit_id": "h1", "kind": "open", "account": "acme", "campaign_id": "c1", "message_id": "m1",
        # DateTime64(3) columns as integer milliseconds (clickhouse-connect writes them as they are).
        "sent_at": 1_767_225_600_000, "received_at": 1_767_225_612_345, "link_index": -1, "url": "",
        "verdict": "human", "reason": "ua:client", "via_proxy": False, "country": "GB", "city": "London",
        "time_zone": "Europe/London", "asn": 0, "as_org": "", "ip": "81.2.69.0", "device": "desktop",
        "os": "Mac OS X", "client": "Apple Mail", "user_agent": MAIL, "source": "memory:0:7",
        "recipient_tag": "",
    }  # fmt: skip


def test_a_filtered_hit_keeps_only_its_token_shape(processor: HitProcessor) -> None:
    p = processor.process(replace(HIT, user_agent="curl/8.4.0"), "s")
    table, values = row(p, p.classification, "truncate")
    assert table == "filtered_hits"
    assert len(values) == len(STORED_FILTERED_COLUMNS)
    assert (values[9], values[10], values[-2]) == ("bot", "ua:http_library", "not a v1 token, 4 chars")
    p = processor.process(replace(HIT, user_agent="curl/8.4.0", token_head=""), "s")
    assert row(p, p.classification, "truncate")[1][-2] == ""  # a valid token's hit has no head


# A real token's first 64 characters (v1, open, key 1): account "acme", campaign "c", message "m1" readable.
HEAD = "AQEBaxGCzq6d9xcCovKtBGFjbWUBYwJtMSsDFTin4Vm4SsQ4OL_0mbQAQEBaxGCzq6d"


@pytest.mark.parametrize(
    ("head", "shape"),
    [
        (HEAD, "v1 open key 1, 64+ chars"),
        (HEAD[:55], "v1 open key 1, 55 chars"),
        ("AQIC" + "A" * 60, "v1 click key 2, 64+ chars"),
        ("AQkB" + "A" * 20, "not a v1 token, 24 chars"),  # kind 9: none
        ("AgEB" + "A" * 20, "not a v1 token, 24 chars"),  # version 2
        ("x" * 30, "not a v1 token, 30 chars"),
        ("!!!!", "not a v1 token, 4 chars"),
        ("AQ", "not a v1 token, 2 chars"),
    ],
)
def test_a_head_from_an_older_edge_is_stored_as_its_shape(head: str, shape: str) -> None:
    assert stored_token_shape(head) == shape


def test_the_edge_publishes_a_token_shape_with_its_whole_length() -> None:
    assert token_shape(HEAD[:64] + "A" * 23) == "v1 open key 1, 87 chars"
    assert token_shape("AQIC" + "A" * 60) == "v1 click key 2, 64 chars"
    assert token_shape("") == "not a v1 token, 0 chars"
    assert stored_token_shape("v1 open key 1, 87 chars") == "v1 open key 1, 87 chars"  # kept as published
    assert stored_token_shape("") == ""  # a valid token's hit has no head


@pytest.mark.parametrize(
    ("ip", "policy", "stored"),
    [
        ("81.2.69.160", "drop", ""),
        ("81.2.69.160", "full", "81.2.69.160"),
        ("2001:db8:1234:5678::1", "truncate", "2001:db8:1234::"),
        ("::ffff:81.2.69.160", "truncate", "::"),
        ("garbage", "truncate", ""),
        ("", "truncate", ""),
    ],
)
def test_the_address_is_cut_by_the_policy(processor: HitProcessor, ip: str, policy: str, stored: str) -> None:
    p = processor.process(replace(HIT, ip=ip), "s")
    assert row(p, p.classification, policy)[1][EVENT_COLUMNS.index("ip")] == stored  # type: ignore[arg-type]
    # Built elsewhere without the parsed address (the notices' tests do): the same cut.
    unparsed = ProcessedHit(p.hit, p.source, p.geo, p.agent, p.classification)
    assert row(unparsed, p.classification, policy)[1][EVENT_COLUMNS.index("ip")] == stored  # type: ignore[arg-type]


def test_the_processor_agrees_with_the_public_steps(processor: HitProcessor) -> None:
    """Parsing once must not change a verdict or a place: every labelled hit, both ways."""
    ranges = load_ranges()
    for case in CORPUS + EXTRA:
        for hit in hits_of(case):
            for ip in (hit.ip, f"::ffff:{hit.ip}" if ":" not in hit.ip else hit.ip):
                h = replace(hit, ip=ip)
                p = processor.process(h, "s")
                agent = parse_agent(h.user_agent)
                geo = processor.geo.lookup(h.ip)
                expected = classify(h, agent, geo, ranges)
                assert p.classification == expected, case["id"]
                if expected.via_proxy or expected.verdict is Verdict.MACHINE:
                    geo = Geo(asn=geo.asn, as_org=geo.as_org)
                assert p.geo == geo, case["id"]


def test_a_row_for_a_later_classification(processor: HitProcessor) -> None:
    # The click window may relabel a held click: the row takes the final classification, not the first.
    p = processor.process(replace(HIT, kind="click", link_index=2), "s")
    table, values = row(p, Classification(Verdict.BOT, "click_burst"), "truncate")
    assert (table, values[9], values[10]) == ("filtered_hits", "bot", "click_burst")
