"""The campaign pixel's open (issue 19): told from other tokens by its first characters, on the wire, and its
row, which names nobody (`schemas.aggregate_opens`, `processors.aggregate`)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from processors.aggregate import (
    AGGREGATE_COLUMNS,
    aggregate_row,
    hit_hash,
    judge,
    plan_aggregate_insert,
    who_of,
)
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from schemas.aggregate_opens import (
    AggregateOpen,
    MalformedAggregateOpen,
    decode_aggregate,
    encode_aggregate,
    is_aggregate_line,
    looks_aggregate,
)
from schemas.events import RawHit, encode_hit
from schemas.reads import is_read_line
from schemas.tokens import RECIPIENT_TAG_BYTES, Claim, Keyring, TokenKind, sign
from schemas.verdicts import Classification, Verdict
from tests.conftest import DATA

OPEN = AggregateOpen(
    aggregate_of="018b0f2a1c00" + "ab" * 8,
    account="acme",
    campaign_id="spring",
    received_at_ms=1_700_003_723_456,
    ip="81.2.69.160",
    user_agent="Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15",
)


@pytest.mark.parametrize("key_id", [0, 1, 63, 64, 127, 128, 200, 255])
def test_a_campaign_pixel_is_told_from_every_other_kind_by_its_start(key_id: int) -> None:
    keys = Keyring(((key_id, b"k" * 32),))
    zero = bytes(RECIPIENT_TAG_BYTES)
    for kind in TokenKind:
        claim = Claim(kind, "acme", "c", "", 0, link_index=0, url="https://x", recipient_tag=zero)
        assert looks_aggregate(sign(claim, keys)) is (kind is TokenKind.AGGREGATE_OPEN), kind
    assert not looks_aggregate("")
    assert not looks_aggregate("AQ")


def test_the_line_round_trips_and_is_told_from_hits_and_reads() -> None:
    line = encode_aggregate(OPEN)
    assert is_aggregate_line(line)
    assert not is_read_line(line)
    assert decode_aggregate(line) == OPEN
    hit = RawHit("h", "open", 1, "1.2.3.4", "ua", token_ok=True, account="acme")
    assert not is_aggregate_line(encode_hit(hit))
    assert OPEN.partition_key == b"acme\x1f\x1fspring"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aggregate_of": ""}, "names its id and account"),
        ({"account": ""}, "names its id and account"),
        ({"received_at_ms": -1}, "out of range"),
        ({"received_at_ms": 10**16}, "out of range"),
        ({"v": 2}, "version"),
        ({"ip": 5}, "wrong type"),
    ],
)
def test_a_malformed_line_says_why(change: dict[str, object], reason: str) -> None:
    fields = {**orjson.loads(encode_aggregate(OPEN)), **change}
    with pytest.raises(MalformedAggregateOpen, match=reason):
        decode_aggregate(orjson.dumps(fields))


def test_the_row_holds_the_campaign_the_hour_and_who_and_nothing_of_the_client() -> None:
    row = aggregate_row(OPEN, Classification(Verdict.MACHINE, "apple_mpp"))
    assert dict(zip(AGGREGATE_COLUMNS, row, strict=True)) == {
        "account": "acme",
        "campaign_id": "spring",
        "hour": datetime(2023, 11, 14, 23, 0, tzinfo=UTC),
        "who": "machine",
        "reason": "apple_mpp",
        "hit": hit_hash(OPEN.aggregate_of),
    }
    assert OPEN.ip not in repr(row)
    assert "Mozilla" not in repr(row)
    assert hit_hash(OPEN.aggregate_of) != hit_hash(OPEN.aggregate_of[:-1] + "c")
    assert 0 <= hit_hash("x") < 2**64


def test_who_opened() -> None:
    assert who_of(Classification(Verdict.HUMAN, "ua:client", via_proxy=True)) == "person"
    assert who_of(Classification(Verdict.MACHINE, "apple_mpp")) == "machine"
    assert who_of(Classification(Verdict.BOT, "ua:http_library")) == "bot"
    assert who_of(Classification(Verdict.INVALID, "invalid_token")) == "bot"


def test_judged_as_an_open_of_the_same_client() -> None:
    processor = HitProcessor(GeoLookup(DATA / "GeoIP2-City-Test.mmdb", None), load_ranges())
    assert judge(processor, OPEN, "t:0:1").verdict is Verdict.HUMAN
    apple = AggregateOpen("a" * 28, "acme", "c", OPEN.received_at_ms, "17.58.63.200", "Mozilla/5.0")
    assert judge(processor, apple, "t:0:2") == Classification(Verdict.MACHINE, "apple_mpp")
    curl = AggregateOpen("b" * 28, "acme", "c", OPEN.received_at_ms, "81.2.69.160", "curl/8.4.0")
    assert judge(processor, curl, "t:0:3").verdict is Verdict.BOT


def test_a_batch_is_inserted_once_under_a_token_of_its_opens() -> None:
    rows = [aggregate_row(OPEN, Classification(Verdict.HUMAN, "ua:client"))]
    plan = plan_aggregate_insert(rows)
    assert plan is not None
    assert plan == plan_aggregate_insert([list(r) for r in rows])  # a retry: the same token
    assert plan.table == "aggregate_opens"
    assert plan.dedup_token.startswith("aggregate_opens:")
    assert plan_aggregate_insert([]) is None
