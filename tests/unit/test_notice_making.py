"""Notices from stored hits, and the notice on the wire: only counted hits make one; a notice survives
encoding, alone or in batches, and garbage does not pass."""

from __future__ import annotations

import orjson
import pytest

from notices.making import notices_of
from schemas.notices import MalformedNotice, decode_notice, encode_notice, notice_data
from schemas.verdicts import Verdict
from tests.differential import same_outcome
from tests.notice_samples import notice, stored_hit


def test_only_counted_hits_make_notices() -> None:
    stored = [
        stored_hit("h1", Verdict.HUMAN),
        stored_hit("h2", Verdict.MACHINE),
        stored_hit("h3", Verdict.BOT),
        stored_hit("h4", Verdict.INVALID),
        stored_hit("h5", Verdict.HUMAN, kind="click"),
        stored_hit("h6", Verdict.BOT, kind="click"),
    ]
    notices = notices_of(stored, created_at_ms=42)
    assert [(n.id, n.type) for n in notices] == [("h1", "open"), ("h2", "machine_open"), ("h5", "click")]
    click = notice_data(notices[2])
    assert click["url"] == "https://example.com/b"
    assert click["link_index"] == 1
    assert click["country"] == "GB"
    assert click["client"] == "Apple Mail"
    assert click["sent_at"] == "2023-11-14T21:56:40.000Z"
    assert "url" not in notice_data(notices[0])


def test_a_notice_survives_the_wire_and_garbage_does_not_pass() -> None:
    n = notice("m1", 7, kind="click", first=False)
    assert decode_notice(encode_notice(n)) == n
    good = orjson.loads(encode_notice(n))
    for bad in (
        b"not json",
        b"[1]",
        orjson.dumps({**good, "v": 99}),
        orjson.dumps({k: v for k, v in good.items() if k != "id"}),
        orjson.dumps({**good, "at_ms": True}),
        orjson.dumps({**good, "type": "spam_report"}),
    ):
        with pytest.raises(MalformedNotice):
            decode_notice(bad)
    assert decode_notice(orjson.dumps({**good, "from_the_future": 1})) == n


def test_notices_travel_in_batches_and_a_bad_one_does_not_sink_the_rest() -> None:
    from schemas.notices import decode_notice_batch, encode_notice_batch

    a, b = notice("m1", 7, kind="click", first=False), notice("m2", 8, kind="open", first=True)
    assert decode_notice_batch(encode_notice_batch([a, b])) == ([a, b], [])
    assert decode_notice_batch(encode_notice(a)) == ([a], [])  # a lone notice, as earlier versions wrote
    good = orjson.loads(encode_notice(b))
    damaged = orjson.dumps(
        {"v": 1, "notices": [orjson.loads(encode_notice(a)), {**good, "type": "spam_report"}]}
    )
    assert decode_notice_batch(damaged) == ([a], ["notices[1]: unknown notice type 'spam_report'"])
    for bad in (b"[]", b'{"v": 7, "notices": []}', b"nope", b'{"v":1,"notices":3}'):
        with pytest.raises(MalformedNotice):
            decode_notice_batch(bad)


def test_the_fast_notice_decoder_accepts_exactly_what_the_field_by_field_check_accepts() -> None:
    import random

    from schemas.notices import _decode_checked

    n = notice("m1", 7, kind="click", first=True)
    good = orjson.loads(encode_notice(n))
    rng = random.Random(5)
    values: list[object] = [None, True, False, 0, 1, -1, 1.5, "", "open", "click", "machine_open", [], {}]
    names = [*good, "v", "future"]
    agree = 0
    for i in range(5_000):
        if i % 2:
            raw = orjson.dumps({**good, **{rng.choice(names): rng.choice(values) for _ in range(2)}})
        else:
            damaged = bytearray(encode_notice(n))
            damaged[rng.randrange(len(damaged))] = rng.choice(b'{}[]":,0123456789.-+eE tfnrulsa')
            raw = bytes(damaged)
        agree += same_outcome(raw, _decode_checked, decode_notice, MalformedNotice)
    assert 500 < agree < 4_500  # both outcomes were exercised
