from __future__ import annotations

import hashlib
import hmac

import pytest

from schemas.suppression import DoNotTrack
from schemas.tokens import Claim, InvalidToken, Keyring, TokenKind, recipient_tag, sign, verify

KEYS = Keyring(((1, b"k" * 32),))
OPEN = Claim(TokenKind.OPEN, "acme", "spring-sale", "msg-123", 1_700_000_000)
CLICK = Claim(
    TokenKind.CLICK, "acme", "spring-sale", "msg-123", 1_700_000_000, 2, "https://x.example/a?b=1&c=é"
)


@pytest.mark.parametrize("claim", [OPEN, CLICK])
def test_round_trip(claim: Claim) -> None:
    assert verify(sign(claim, KEYS), KEYS) == claim


def test_tokens_are_url_safe_and_short() -> None:
    token = sign(OPEN, KEYS)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    # 15 header bytes (with the recipient tag) + 3 length-prefixed strings (25) + a 16-byte tag = 56 bytes
    assert len(token) == 75


@pytest.mark.parametrize("claim", [OPEN, CLICK])
def test_every_flipped_bit_is_rejected(claim: Claim) -> None:
    token = sign(claim, KEYS)
    raw = bytearray(token.encode())
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(raw)):
        for replacement in alphabet:
            if replacement == raw[i]:
                continue
            forged = raw.copy()
            forged[i] = replacement
            with pytest.raises(InvalidToken):
                verify(forged.decode(), KEYS)


def test_kind_is_checked() -> None:
    with pytest.raises(InvalidToken):
        verify(sign(OPEN, KEYS), KEYS, TokenKind.CLICK)


def test_keys_rotate() -> None:
    old = Keyring(((1, b"a" * 32),))
    rotated = Keyring(((2, b"b" * 32), (1, b"a" * 32)))
    assert verify(sign(OPEN, old), rotated) == OPEN
    with pytest.raises(InvalidToken):
        verify(sign(OPEN, rotated), old)  # key 2 unknown there


def test_another_secret_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        verify(sign(OPEN, KEYS), Keyring(((1, b"z" * 32),)))


@pytest.mark.parametrize("garbage", ["", "=", "A", "!!!!", "AAAA" * 2000, "A" * 80, "\x00", "é"])
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verify(garbage, KEYS)


def test_padding_and_truncation_are_rejected() -> None:
    token = sign(OPEN, KEYS)
    for variant in (token + "=", token[:-1], token + "A"):
        with pytest.raises(InvalidToken):
            verify(variant, KEYS)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter"):
        Keyring(((1, b"short"),))


def test_recipient_tag_is_keyed_normalized_and_carried() -> None:
    tag = recipient_tag(b"k" * 32, "acme", " Ann@Example.com ")
    assert tag == recipient_tag(b"k" * 32, "acme", "ann@example.com")
    assert tag != recipient_tag(b"k" * 32, "globex", "ann@example.com")
    assert tag != recipient_tag(b"z" * 32, "acme", "ann@example.com")
    assert len(tag) == 8
    claim = Claim(TokenKind.OPEN, "acme", "c", "m", 1, recipient_tag=tag)
    assert verify(sign(claim, KEYS), KEYS).recipient_tag == tag


def test_do_not_track_matches_tokens_signed_by_any_key() -> None:
    rotated = Keyring(((2, b"b" * 32), (1, b"a" * 32)))
    dnt = DoNotTrack(rotated)
    dnt.add("acme", "Ann@Example.com")
    assert recipient_tag(b"a" * 32, "acme", "ann@example.com") in dnt
    assert recipient_tag(b"b" * 32, "acme", "ann@example.com") in dnt
    assert recipient_tag(b"b" * 32, "acme", "bob@example.com") not in dnt
    assert dnt.suppressed_hex(recipient_tag(b"b" * 32, "acme", "ann@example.com").hex())
    assert not dnt.suppressed_hex("not hex")
    dnt.remove("acme", "ANN@example.com")
    assert len(dnt) == 0
    assert recipient_tag(b"a" * 32, "acme", "ann@example.com") not in dnt
    dnt.replace(
        [rotated.recipient_tags("acme", "x@example.com"), rotated.recipient_tags("globex", "y@x.org")]
    )
    assert len(dnt) == 2
    assert dnt.suppressed("acme", " X@Example.COM")
    assert not dnt.suppressed("globex", "x@example.com")


@pytest.mark.parametrize("secret", [b"k" * 16, b"k" * 64, bytes(range(65)), b"\x00\xff" * 100])
def test_the_keyrings_tag_is_hmac_sha256_of_the_body(secret: bytes) -> None:
    """`Keyring.tag` computes HMAC-SHA256 from pre-keyed hashes (RFC 2104, keys over 64 bytes hashed
    first); it must agree with the standard library's for every key length."""
    keyring = Keyring(((7, secret),))
    for body in (b"", b"x", bytes(range(256)) * 3):
        assert keyring.tag(7, body) == hmac.new(secret, body, hashlib.sha256).digest()[:16]
    assert keyring.tag(8, b"x") is None


@pytest.mark.parametrize(
    ("key", "body", "tag"),
    [
        (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b"),
        (
            b"\xaa" * 131,  # longer than SHA-256's block: hashed first
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f",
        ),
    ],
)
def test_the_keyrings_tag_matches_rfc_4231(key: bytes, body: bytes, tag: str) -> None:
    """Fixed vectors (RFC 4231 test cases 1 and 6, checked with ``openssl dgst -sha256 -mac HMAC``): the
    first 16 bytes of HMAC-SHA256."""
    assert Keyring(((7, key),)).tag(7, body) == bytes.fromhex(tag)
