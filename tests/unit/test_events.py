from __future__ import annotations

import dataclasses
import json

import orjson
import pytest

from schemas.events import MalformedHit, RawHit, decode_hit, encode_hit, join_hits, split_hits
from schemas.wire import fast_constructor, fast_replace
from tests.differential import same_outcome

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


def _record(**changes: object) -> bytes:
    """HIT as the edge writes it, with fields changed (``...``: removed); json, for integers past 64 bits."""
    obj = orjson.loads(encode_hit(HIT))
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON: "),
        (b"[]", "not a JSON object"),
        (b'{"v": 2}', "unknown schema version 2"),
        (_record(v=...), "unknown schema version None"),
        (_record(v=2), "unknown schema version 2"),
        (_record(v="1"), "unknown schema version '1'"),
        (_record(hit_id=..., ip=...), "missing fields: hit_id, ip"),
        (_record(kind="view"), "unknown kind 'view'"),
        (_record(token_ok=1), "field token_ok has the wrong type"),
        (_record(sent_at=True), "field sent_at has the wrong type"),
        (_record(received_at_ms=1.0), "field received_at_ms has the wrong type"),
        (_record(received_at_ms=2**64), "field received_at_ms has the wrong type"),  # a float to orjson
        (_record(link_index=None), "field link_index has the wrong type"),
        (_record(url=["x"]), "field url has the wrong type"),
    ],
)  # fmt: skip
def test_the_reason_says_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedHit) as caught:
        decode_hit(raw)
    assert str(caught.value).startswith(reason)


def test_a_record_must_say_its_version() -> None:
    # The last member is an object that ends like a version-1 record does: it is not the record's version.
    raw = orjson.dumps({**orjson.loads(_record(v=...)), "extra": {"v": 1}})
    assert raw.endswith(b',"extra":{"v":1}}')
    with pytest.raises(MalformedHit, match="unknown schema version None"):
        decode_hit(raw)


def test_another_writer_spelling_the_record_differently_is_read() -> None:
    obj = orjson.loads(encode_hit(HIT))
    spelled = b'{ "v" : 1, ' + orjson.dumps(dict(reversed(obj.items())), option=orjson.OPT_INDENT_2)[1:]
    assert decode_hit(spelled) == HIT


def test_of_a_repeated_key_the_last_counts() -> None:
    assert decode_hit(_record(v=2)[:-1] + b',"v":1}') == HIT
    with pytest.raises(MalformedHit, match="unknown schema version 2"):
        decode_hit(encode_hit(HIT)[:-1] + b',"v":2}')


def test_values_the_tables_cannot_hold_are_refused_not_left_to_fail_the_insert() -> None:
    # msgspec bounds integers within int64; past that (up to 2**64 - 1) the field-by-field path reads them.
    for field, value in (
        ("sent_at", 2**64 - 1),
        ("sent_at", -(2**63)),
        ("sent_at", -1),
        ("sent_at", 10_413_792_000),  # 2300: past DateTime64(3)
        ("received_at_ms", 10_413_792_000_000),
        ("received_at_ms", -5),
        ("link_index", 2**15),
        ("link_index", -2),
    ):
        with pytest.raises(MalformedHit, match=f"{field} .* is out of range"):
            decode_hit(_record(**{field: value}))
    edge = decode_hit(_record(sent_at=0, link_index=2**15 - 1, received_at_ms=10_413_791_999_000))
    assert (edge.sent_at, edge.link_index) == (0, 2**15 - 1)


def test_decoding_is_as_strict_as_the_field_by_field_check() -> None:
    """Random damage to real records: the fast decoder accepts exactly what the slow one accepts, and reads
    the same hit (the one exception: an unknown field is skipped unread, see the next test)."""
    import random

    from schemas.events import _decode_checked, _in_range

    rng = random.Random(11)
    values: list[object] = [
        None,
        True,
        False,
        0,
        1,
        -1,
        2,
        1.5,
        "",
        "open",
        "click",
        "x",
        [],
        {},
        2**63,
        2**64,
    ]
    names = [*orjson.loads(encode_hit(HIT)), "future"]
    bytes_ = b'{}[]":,0123456789.-+eE \\tfnrulsa'
    agree = 0
    for i in range(20_000):
        if i % 2:
            raw = _record(**{rng.choice(names): rng.choice([*values, ...]) for _ in range(rng.randint(1, 2))})
        else:
            damaged = bytearray(encode_hit(HIT))
            for _ in range(rng.randint(1, 2)):
                damaged[rng.randrange(len(damaged))] = rng.choice(bytes_)
            raw = bytes(damaged)
        agree += same_outcome(raw, lambda data: _in_range(_decode_checked(data)), decode_hit, MalformedHit)
    assert 1000 < agree < 19_000  # both outcomes were exercised


def test_an_unknown_field_is_skipped_unread() -> None:
    # orjson parsed every value (a number past a double's range failed the record); msgspec skips the
    # fields it does not know without converting them: a newer edge's field never fails an older reader.
    raw = encode_hit(HIT)[:-1] + b',"future":1e999}'
    assert decode_hit(raw) == HIT


def test_the_edges_records_are_decoded_once() -> None:
    """`encode_hit` writes ``v`` last, so `decode_hit` knows the version from the record's last bytes and
    decodes it once (a field added after ``v`` would still be read, with a second pass for the version)."""
    from schemas.events import _V1_TAIL

    assert encode_hit(HIT).endswith(_V1_TAIL)
    assert encode_hit(RawHit("h2", "click", 1, "", "", False)).endswith(_V1_TAIL)


def test_fast_constructor_builds_the_same_frozen_record() -> None:
    """`schemas.wire.fast_constructor` (the edge's way to build a RawHit) makes an equal, still frozen
    record from every field by keyword, and refuses a missing or unknown field."""
    build = fast_constructor(RawHit)
    fields = {f.name: getattr(HIT, f.name) for f in dataclasses.fields(RawHit)}
    built = build(**fields)
    assert built == HIT
    assert type(built) is RawHit
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.ip = "10.0.0.1"  # type: ignore[misc]
    with pytest.raises(TypeError):
        build(**{k: v for k, v in fields.items() if k != "ip"})
    with pytest.raises(TypeError):
        build(**fields, extra=1)


def test_many_hits_in_one_record_split_back_into_each_hit() -> None:
    """The edge's records of many hits: newline-delimited, each hit decodable alone, one hit unchanged."""
    other = dataclasses.replace(HIT, hit_id="h2", user_agent='line\nbreak "quoted"')
    record = join_hits([encode_hit(HIT), encode_hit(other)])
    assert [decode_hit(raw) for raw in split_hits(record)] == [HIT, other]
    assert split_hits(encode_hit(HIT)) == [encode_hit(HIT)]
    assert join_hits([encode_hit(HIT)]) == encode_hit(HIT)


def test_fast_replace_changes_only_the_named_fields() -> None:
    replace = fast_replace(RawHit, "ip", "user_agent")
    out = replace(HIT, ip="10.0.0.1", user_agent="x")
    assert out == dataclasses.replace(HIT, ip="10.0.0.1", user_agent="x")
    assert (HIT.ip, HIT.user_agent) == ("1.2.3.4", "UA")  # the original is untouched
    with pytest.raises(TypeError):
        replace(HIT, ip="10.0.0.1")  # every named field, by keyword
    with pytest.raises(ValueError, match="no fields"):
        fast_replace(RawHit, "nope")
