from __future__ import annotations

import orjson
import pytest

from schemas.events import MalformedHit, RawHit, decode_hit, encode_hit

HIT = RawHit("h1", "open", 1_700_000_000_000, "1.2.3.4", "UA", True, "acme", "c", "m", 1_700_000_000)


def test_round_trip() -> None:
    assert decode_hit(encode_hit(HIT)) == HIT


def test_unknown_fields_from_a_newer_edge_are_ignored() -> None:
    obj = orjson.loads(encode_hit(HIT))
    obj["future"] = 1
    assert decode_hit(orjson.dumps(obj)) == HIT


@pytest.mark.parametrize(
    "raw",
    [
        b"", b"nope", b"[]", b'{"v": 2}', b'{"v": 1}',
        orjson.dumps({**orjson.loads(encode_hit(HIT)), "kind": "view"}),
        orjson.dumps({**orjson.loads(encode_hit(HIT)), "received_at_ms": "soon"}),
        orjson.dumps({**orjson.loads(encode_hit(HIT)), "token_ok": 1}),
        orjson.dumps({**orjson.loads(encode_hit(HIT)), "sent_at": True}),
    ],
)  # fmt: skip
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedHit):
        decode_hit(raw)


def test_hits_of_one_message_share_a_key() -> None:
    other = RawHit("h2", "click", 1, "", "", True, "acme", "c", "m", 1, 0, "https://x")
    assert HIT.partition_key == other.partition_key
    assert RawHit("h3", "open", 1, "", "", False).partition_key is None
