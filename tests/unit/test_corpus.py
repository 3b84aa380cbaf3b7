"""The labelled hits, through the real enrichment and the per-hit classifier.

`corpus_hits.jsonl` is the shared sample (see tests/data/README.md); `extra_hits.jsonl` adds cases of our own,
each with the public fact behind it in ``source``. Expectations: ``human`` → HUMAN; ``machine`` → MACHINE;
``not_human`` → anything but HUMAN (a gateway's image load is a MACHINE open, which counts in neither opens
nor clicks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from processors.classify import classify
from processors.cloud_ranges import load_classification_ranges
from processors.geo import GeoLookup
from processors.ranges import RangeTable
from processors.useragent import parse_agent
from schemas.events import RawHit
from schemas.verdicts import Verdict

DATA = Path(__file__).parents[1] / "data"
SENT_AT = 1_767_225_600  # 2026-01-01T00:00:00Z
BURST_WINDOW_MS = 2000

# Click cases whose label rests on a burst (several distinct links of one message within a second or two)
# from an otherwise human-looking UA on a residential address. One hit at a time cannot see a burst: the
# stateful click window after the classifier (processors.window) relabels them. Here each click must be
# HUMAN per hit, so that the window, not an accident of this classifier, is what catches the burst.
BURST_CASES = frozenset({"click-burst-residential"})


def _cases(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CORPUS = _cases("corpus_hits.jsonl")
EXTRA = _cases("extra_hits.jsonl")


@pytest.fixture(scope="module")
def geo() -> Iterator[GeoLookup]:
    lookup = GeoLookup(DATA / "GeoIP2-City-Test.mmdb", DATA / "GeoLite2-ASN-Test.mmdb")
    yield lookup
    lookup.close()


@pytest.fixture(scope="module")
def ranges() -> RangeTable:
    """The table the processors classify with: the curated ranges and the bundled cloud lists."""
    return load_classification_ranges()[0]


def hits_of(case: dict[str, Any]) -> list[RawHit]:
    """One raw hit per request: an open, or each click of ``clicks`` ([link_index, ms after the first])."""
    first_ms = int((SENT_AT + case["after_s"]) * 1000)
    base = RawHit(
        hit_id=case["id"],
        kind=case["kind"],
        received_at_ms=first_ms,
        ip=case["ip"],
        user_agent=case["ua"],
        token_ok=True,
        account="acme",
        campaign_id="corpus",
        message_id=case["id"],
        sent_at=SENT_AT,
    )
    if case["kind"] == "open":
        return [base]
    return [
        replace(base, hit_id=f"{case['id']}-{n}", received_at_ms=first_ms + ms, link_index=link)
        for n, (link, ms) in enumerate(case["clicks"])
    ]


def verdicts(case: dict[str, Any], geo: GeoLookup, ranges: RangeTable) -> list[Verdict]:
    out = []
    for hit in hits_of(case):
        place = geo.lookup(hit.ip)
        if "asn" in case:  # extra cases stand in for an ASN database the test data does not cover
            place = replace(place, asn=case["asn"])
        out.append(classify(hit, parse_agent(hit.user_agent), place, ranges).verdict)
    return out


def _check(case: dict[str, Any], got: list[Verdict]) -> None:
    if case["id"] in BURST_CASES:
        assert got == [Verdict.HUMAN] * len(case["clicks"]), case["why"]
    elif case["expect"] == "human":
        assert set(got) == {Verdict.HUMAN}, case["why"]
    elif case["expect"] == "machine":
        assert set(got) == {Verdict.MACHINE}, case["why"]
    else:
        assert case["expect"] == "not_human"
        assert Verdict.HUMAN not in got, case["why"]


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_shared_corpus(case: dict[str, Any], geo: GeoLookup, ranges: RangeTable) -> None:
    _check(case, verdicts(case, geo, ranges))


@pytest.mark.parametrize("case", EXTRA, ids=[c["id"] for c in EXTRA])
def test_extra_cases(case: dict[str, Any], geo: GeoLookup, ranges: RangeTable) -> None:
    assert case["source"], "every extra case names the public fact behind its label"
    _check(case, verdicts(case, geo, ranges))


def test_burst_cases_are_bursts_and_every_other_multi_click_case_is_labelled_on_its_own() -> None:
    by_id = {c["id"]: c for c in CORPUS + EXTRA}
    assert by_id.keys() >= BURST_CASES
    for case_id in BURST_CASES:
        case = by_id[case_id]
        links = {link for link, _ in case["clicks"]}
        span = max(ms for _, ms in case["clicks"]) - min(ms for _, ms in case["clicks"])
        assert case["kind"] == "click"
        assert case["expect"] == "not_human"
        assert len(links) >= 2
        assert span <= BURST_WINDOW_MS


def test_the_samples_cover_every_expectation_and_both_address_families() -> None:
    cases = CORPUS + EXTRA
    assert {c["expect"] for c in cases} == {"human", "machine", "not_human"}
    assert any(":" in c["ip"] for c in cases)
    assert len({c["id"] for c in cases}) == len(cases) == 21 + 29
