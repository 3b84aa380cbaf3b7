"""Webhook secrets at rest: sealed under PIXELPIPE_SECRET's key, opened again, tampering detected, rotation
and rows from before sealing."""

from __future__ import annotations

import base64

import pytest

from schemas.tokens import Keyring
from schemas.webhook_secrets import PREFIX, SecretUnreadable, hint, is_sealed, seal, unseal

SECRET = "whsec_" + "A1b2C3d4" * 5 + "xyz"
OLD = Keyring(((1, b"o" * 32),))
ROTATED = Keyring(((2, b"n" * 32), (1, b"o" * 32)))
NEW_ONLY = Keyring(((2, b"n" * 32),))
WHERE = {"account": "acme", "webhook_id": "wh_0123456789abcdef"}


def test_a_sealed_secret_opens_to_itself_and_holds_no_plain_text() -> None:
    stored = seal(OLD, SECRET, **WHERE)
    assert stored.startswith("enc:v1:1:")
    assert is_sealed(stored)
    assert SECRET not in stored
    assert SECRET[6:] not in stored
    assert unseal(OLD, stored, **WHERE) == SECRET
    # a fresh nonce each time: the same secret never seals to the same text
    assert seal(OLD, SECRET, **WHERE) != stored
    # nonce (12) + ciphertext (as long as the secret) + tag (16)
    payload = stored.removeprefix("enc:v1:1:")
    assert len(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == 12 + len(SECRET) + 16


def test_a_row_from_before_sealing_is_read_as_it_is() -> None:
    assert not is_sealed(SECRET)
    assert unseal(OLD, SECRET, **WHERE) == SECRET
    assert unseal(ROTATED, "whsec_legacy", account="globex", webhook_id="wh_x") == "whsec_legacy"


def test_every_changed_character_is_detected() -> None:
    stored = seal(OLD, SECRET, **WHERE)
    body_start = len(PREFIX) + len("1:")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(body_start, len(stored) - 1):  # the last character may carry padding bits only
        flipped = alphabet[(alphabet.index(stored[i]) + 1) % len(alphabet)]
        tampered = stored[:i] + flipped + stored[i + 1 :]
        with pytest.raises(SecretUnreadable):
            unseal(OLD, tampered, **WHERE)


@pytest.mark.parametrize(
    "garbled",
    [
        "enc:v1:",
        "enc:v1:1",
        "enc:v1::AAAA",
        "enc:v1:x:AAAA",
        "enc:v1:1:",
        "enc:v1:1:AAAA",  # shorter than a nonce
        "enc:v1:1:" + "A" * 40,  # long enough, but no tag matches
        "enc:v1:1:!!!!",
    ],
)
def test_garbled_sealed_secrets_do_not_open(garbled: str) -> None:
    with pytest.raises(SecretUnreadable):
        unseal(OLD, garbled, **WHERE)


def test_a_sealed_secret_is_bound_to_its_webhook() -> None:
    stored = seal(OLD, SECRET, **WHERE)
    with pytest.raises(SecretUnreadable, match="tampered with, or another webhook's"):
        unseal(OLD, stored, account="globex", webhook_id=WHERE["webhook_id"])
    with pytest.raises(SecretUnreadable):
        unseal(OLD, stored, account="acme", webhook_id="wh_other")


def test_rotation_seals_under_the_new_key_and_opens_under_both() -> None:
    sealed_before = seal(OLD, SECRET, **WHERE)
    sealed_after = seal(ROTATED, SECRET, **WHERE)
    assert sealed_after.startswith("enc:v1:2:")
    assert unseal(ROTATED, sealed_before, **WHERE) == SECRET
    assert unseal(ROTATED, sealed_after, **WHERE) == SECRET
    # once the old key is dropped from PIXELPIPE_SECRET, what it sealed cannot be read
    with pytest.raises(SecretUnreadable, match="key id 1, which PIXELPIPE_SECRET no longer holds"):
        unseal(NEW_ONLY, sealed_before, **WHERE)
    # another key under the same id does not open it either
    with pytest.raises(SecretUnreadable):
        unseal(Keyring(((1, b"x" * 32),)), sealed_before, **WHERE)


def test_the_hint_shows_only_the_last_four_characters() -> None:
    assert hint(SECRET) == "...4xyz"
