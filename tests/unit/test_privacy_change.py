"""Privacy changes: the record on the privacy topic, do-not-track by tags, and what the notice path forgets
of an erased recipient (the outbox, with its schema migration, and the message cache)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from notices.deliveries import Delivery, plan_deliveries
from notices.making import MessageLookup
from notices.outbox import Outbox
from schemas.notices import Notice, Webhook
from schemas.privacy_change import (
    MalformedPrivacyChange,
    PrivacyChange,
    decode_privacy_change,
    encode_privacy_change,
    privacy_change,
)
from schemas.secret import Secret
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring, recipient_tag
from tests.notice_data import open_notice

OLD, NEW = b"a" * 32, b"b" * 32
ROTATED = Keyring(((2, NEW), (1, OLD)))


def tag(secret: bytes, recipient: str, account: str = "acme") -> bytes:
    return recipient_tag(secret, account, recipient)


# -- the record ----------------------------------------------------------------------------------------------


def test_a_change_names_the_recipient_by_every_tag_signing_key_first_and_never_by_address() -> None:
    change = privacy_change(ROTATED, "acme", " Ann@Example.com", tracking=False, erased=False, at_ms=1_700)
    assert change.recipient_tags == (tag(NEW, "ann@example.com").hex(), tag(OLD, "ann@example.com").hex())
    assert change.tags == {tag(NEW, "ann@example.com"), tag(OLD, "ann@example.com")}
    assert change.key == b"acme\x1f" + tag(NEW, "ann@example.com").hex().encode()
    raw = encode_privacy_change(change)
    assert b"ann" not in raw.lower()
    assert orjson.loads(raw) == {
        "account": "acme",
        "recipient_tags": list(change.recipient_tags),
        "tracking": False,
        "erased": False,
        "at_ms": 1_700,
        "v": 1,
    }
    assert decode_privacy_change(raw) == change


def test_one_key_one_tag_and_the_same_recipient_the_same_key() -> None:
    keyring = Keyring(((1, OLD),))
    out = privacy_change(keyring, "acme", "bob@example.com", tracking=False, erased=True, at_ms=1)
    back = privacy_change(keyring, "acme", "BOB@example.com ", tracking=True, erased=False, at_ms=2)
    assert len(out.recipient_tags) == 1
    assert out.key == back.key
    assert (
        privacy_change(keyring, "globex", "bob@example.com", tracking=True, erased=False, at_ms=2).key
        != back.key
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"v": 2}', "unknown privacy change version 2"),
        (b'{"v": 1, "account": "acme"}', "missing fields"),
        (
            b'{"v":1,"account":"a","recipient_tags":"ab","tracking":true,"erased":false,"at_ms":1}',
            "wrong type",
        ),
        (
            b'{"v":1,"account":"a","recipient_tags":[1],"tracking":true,"erased":false,"at_ms":1}',
            "wrong type",
        ),
        (
            b'{"v":1,"account":"a","recipient_tags":[],"tracking":true,"erased":false,"at_ms":1}',
            "at least one",
        ),
        (b'{"v":1,"account":"a","recipient_tags":["xyz"],"tracking":true,"erased":false,"at_ms":1}', "hex"),
        (
            b'{"v":1,"account":"a","recipient_tags":["0011223344556677"],"tracking":true,"erased":true,"at_ms":1}',
            "not tracked",
        ),
        (
            b'{"v":1,"account":"a","recipient_tags":["0011223344556677"],"tracking":1,"erased":false,"at_ms":1}',
            "wrong type",
        ),
    ],
)
def test_what_is_not_a_privacy_change_is_refused_with_the_reason(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedPrivacyChange, match=why):
        decode_privacy_change(raw)


def test_a_newer_writer_may_add_fields() -> None:
    raw = (
        b'{"v":1,"account":"a","recipient_tags":["0011223344556677"],"tracking":true,"erased":false,'
        b'"at_ms":5,"x":1}'
    )
    assert decode_privacy_change(raw) == PrivacyChange("a", ("0011223344556677",), True, False, 5)


# -- do-not-track by tags ------------------------------------------------------------------------------------


def test_changes_by_tags_add_and_remove_recipients_in_order() -> None:
    dnt = DoNotTrack(ROTATED)
    ann = privacy_change(ROTATED, "acme", "ann@example.com", tracking=False, erased=False, at_ms=1)
    bob = privacy_change(ROTATED, "acme", "bob@example.com", tracking=False, erased=True, at_ms=2)
    ann_back = privacy_change(ROTATED, "acme", "ann@example.com", tracking=True, erased=False, at_ms=3)
    dnt.apply([(c.tags, not c.tracking) for c in (ann, bob)])
    assert len(dnt) == 2
    assert tag(OLD, "ann@example.com") in dnt
    assert tag(NEW, "bob@example.com") in dnt
    dnt.apply([(ann_back.tags, False)])
    assert len(dnt) == 1
    assert tag(OLD, "ann@example.com") not in dnt
    assert tag(NEW, "ann@example.com") not in dnt
    # by address and by tags are the same recipient
    dnt.add("acme", "ann@example.com")
    dnt.remove_tags([tag(NEW, "ann@example.com")])  # one shared tag takes the whole recipient out
    assert tag(OLD, "ann@example.com") not in dnt
    dnt.add_tags(bob.tags)
    assert len(dnt) == 1


def test_a_change_after_a_key_rotation_still_finds_the_recipient() -> None:
    before = Keyring(((1, OLD),))
    dnt = DoNotTrack(ROTATED)
    dnt.apply(
        [
            (
                privacy_change(before, "acme", "ann@example.com", tracking=False, erased=False, at_ms=1).tags,
                True,
            )
        ]
    )
    assert tag(OLD, "ann@example.com") in dnt
    # opted in again under the rotated keyring: its tags include the old one
    dnt.apply(
        [
            (
                privacy_change(ROTATED, "acme", "ann@example.com", tracking=True, erased=False, at_ms=2).tags,
                False,
            )
        ]
    )
    assert len(dnt) == 0


def test_a_reload_read_before_a_change_does_not_undo_it() -> None:
    dnt = DoNotTrack(ROTATED)
    version = dnt.version
    dnt.add("acme", "ann@example.com")  # while the store was being read
    assert not dnt.replace([], if_version=version)
    assert tag(NEW, "ann@example.com") in dnt
    assert dnt.replace([], if_version=dnt.version)
    assert len(dnt) == 0


# -- what the notice path forgets ----------------------------------------------------------------------------


def notice(message: str, seq: int, recipient: str, account: str = "acme") -> Notice:
    return open_notice(
        message, seq, account=account, recipient=recipient, recipient_tag=tag(NEW, recipient, account).hex()
    )


def deliveries(*notices: Notice) -> list[Delivery]:
    hooks = {
        a: [Webhook(a, f"wh_{a}", "http://receiver/hook", ("open",), Secret("whsec_x"))]
        for a in ("acme", "globex")
    }
    return plan_deliveries(notices, lambda account: hooks.get(account, []))


_V0_SCHEMA = """
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE, webhook_id TEXT NOT NULL,
    lane TEXT NOT NULL, notice_id TEXT NOT NULL, account TEXT NOT NULL, message_id TEXT NOT NULL,
    type TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending', created_at REAL NOT NULL,
    finished_at REAL
);
INSERT INTO deliveries (delivery_id, webhook_id, lane, notice_id, account, message_id, type, body,
                        next_attempt_at, created_at)
VALUES ('dlv_old', 'wh_acme', 'wh_acme\x1facme\x1fm0', 'm0-1', 'acme', 'm0', 'open', X'7B7D', 1.0, 1.0);
"""


def test_an_outbox_from_before_tags_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_V0_SCHEMA)
    outbox = Outbox(path)
    try:
        assert outbox.pending() == 1
        head = outbox.head("wh_acme\x1facme\x1fm0")
        assert head is not None
        assert (head.delivery.delivery_id, head.delivery.recipient_tag) == ("dlv_old", "")
        outbox.add(deliveries(notice("m1", 1, "ann@example.com")), now=2.0)
        assert outbox.pending() == 2
    finally:
        outbox.close()
    again = Outbox(path)  # opening a migrated outbox again changes nothing
    try:
        assert again.pending() == 2
        assert again.forget("acme", [], ["m0"]) == {"pending": 1}  # an old row: by message id
    finally:
        again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)


def test_an_erased_recipients_deliveries_go_pending_and_finished_and_no_one_elses(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        ann = [
            notice("m1", 1, "ann@example.com"),
            notice("m1", 2, "ann@example.com"),
            notice("m2", 1, "ann@example.com"),
        ]
        others = [notice("m3", 1, "bob@example.com"), notice("m4", 1, "ann@example.com", account="globex")]
        outbox.add(deliveries(*ann, *others), now=1.0)
        head = outbox.head("wh_acme\x1facme\x1fm1")
        assert head is not None
        assert head.delivery.recipient_tag == tag(NEW, "ann@example.com").hex()
        outbox.finish(head.seq, "delivered", 1, 2.0)
        ann_tags = privacy_change(ROTATED, "acme", "ann@example.com", tracking=False, erased=True, at_ms=1)
        assert outbox.forget("acme", ann_tags.recipient_tags) == {"pending": 2, "delivered": 1}
        assert outbox.states() == {"pending": 2}
        assert sorted(lane.split("\x1f")[1:] for lane, _ in outbox.heads()) == [
            ["acme", "m3"],
            ["globex", "m4"],
        ]
        assert outbox.forget("acme", ann_tags.recipient_tags) == {}
    finally:
        outbox.close()


class _NoStore:
    database = "db"

    def __init__(self) -> None:
        self.queries = 0

    def query(self, sql: str, parameters: object = None) -> list[tuple[str, str]]:
        self.queries += 1
        return [("m1", "ann@example.com"), ("m2", "ann@example.com"), ("m3", "bob@example.com")]


def test_the_message_cache_forgets_an_erased_recipient_by_tag_or_message() -> None:
    store = _NoStore()
    lookup = MessageLookup(store)  # type: ignore[arg-type]
    lookup.complete(
        [
            notice("m1", 1, "ann@example.com"),
            notice("m2", 1, "ann@example.com"),
            notice("m3", 1, "bob@example.com"),
        ]
    )
    ann = privacy_change(ROTATED, "acme", "ann@example.com", tracking=False, erased=True, at_ms=1)
    assert lookup.forget("globex", ann.recipient_tags) == 0
    assert lookup.forget("acme", ann.recipient_tags) == 2
    assert lookup.forget("acme", [], ["m3"]) == 1
    queries = store.queries
    lookup.complete([notice("m3", 2, "bob@example.com")])  # forgotten: asked again
    assert store.queries > queries
