"""Webhook signing secrets at rest: sealed with AES-256-GCM under a key derived from ``PIXELPIPE_SECRET``.

The dispatcher needs each secret itself (it signs with it), so secrets are encrypted, not hashed. A stored
secret reads ``enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``: the key id is the `Keyring` key it was
sealed under (the keyring's signing key), the AES key is HKDF-SHA256 of that key's secret, and the account and
webhook id are the associated data, so a sealed secret copied onto another webhook's row does not open. A
rotated ``PIXELPIPE_SECRET=2:new,1:old`` seals new secrets under key 2 and still opens those sealed under
key 1; a secret sealed under a key that is no longer configured cannot be read (`SecretUnreadable`).

Rows written before secrets were sealed hold the plain ``whsec_…`` value; `unseal` returns those as they are.

The sealing itself (`seal_with`, `open_with`: any text under associated data its owner names) also seals the
mail services' credentials (`schemas.mail_services`).

Pure apart from the random nonce.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from schemas.errors import PixelpipeError
from schemas.tokens import Keyring

PREFIX: Final = "enc:v1:"
NONCE_BYTES: Final = 12
_INFO: Final = b"pixelpipe webhook secret v1"


class SecretUnreadable(PixelpipeError, ValueError):
    """A sealed secret that does not open: tampered with, garbled, or sealed under a key no longer held."""


@functools.lru_cache(maxsize=64)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key))


def _associated(account: str, webhook_id: str) -> bytes:
    return f"{account}\x1f{webhook_id}".encode()


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def seal(keyring: Keyring, secret: str, *, account: str, webhook_id: str) -> str:
    """The stored form of ``secret``, sealed under the keyring's signing key."""
    return seal_with(keyring, secret, _associated(account, webhook_id))


def unseal(keyring: Keyring, stored: str, *, account: str, webhook_id: str) -> str:
    """The secret a stored value holds: opened when sealed, as it is when written before sealing existed."""
    if not is_sealed(stored):
        return stored
    return open_with(keyring, stored, _associated(account, webhook_id))


def seal_with(keyring: Keyring, plain: str, associated: bytes) -> str:
    """``plain`` sealed under the keyring's signing key, opened only with the same ``associated`` data."""
    key_id, key = keyring.signing_key
    nonce = os.urandom(NONCE_BYTES)
    sealed = nonce + _aead(key).encrypt(nonce, plain.encode(), associated)
    return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(sealed).decode().rstrip('=')}"


def open_with(keyring: Keyring, stored: str, associated: bytes) -> str:
    """What `seal_with` sealed with ``associated``; `SecretUnreadable` for anything else (plain text too)."""
    if not is_sealed(stored):
        raise SecretUnreadable("not a sealed secret")
    key_text, sep, payload = stored.removeprefix(PREFIX).partition(":")
    if not sep or not key_text.isdigit():
        raise SecretUnreadable("a sealed secret without a key id")
    key = keyring.secret_for(int(key_text))
    if key is None:
        raise SecretUnreadable(f"sealed under key id {key_text}, which PIXELPIPE_SECRET no longer holds")
    try:
        sealed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SecretUnreadable("a sealed secret that is not base64url") from exc
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    if len(nonce) < NONCE_BYTES:
        raise SecretUnreadable("a sealed secret too short to hold a nonce")
    try:
        plain = _aead(key).decrypt(nonce, ciphertext, associated)
    except InvalidTag:
        raise SecretUnreadable(
            "the sealed secret fails its tag: tampered with, or another webhook's (or mail service's)"
        ) from None
    return plain.decode()


def hint(secret: str) -> str:
    """Enough of a secret to tell which one it is (its last 4 characters), never enough to sign with."""
    return "..." + secret[-4:]
