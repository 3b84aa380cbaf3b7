"""A privacy change on the ``privacy`` topic: one recipient's do-not-track or erasure, for every process.

The API publishes one record per change (``PUT``/``DELETE .../do-not-track``, erasure); edges, processors and
webhook dispatchers read the topic from its beginning into their `schemas.suppression.DoNotTrack`. A record
names its recipient only by tags (`schemas.tokens.recipient_tag`, hex, under every key of the keyring, the
signing key's first): what tokens carry, so a hit is matched without a lookup, and meaningless without the
keys, so the plain address never reaches Kafka.

Each record is the recipient's whole state (``tracking``, ``erased``), not a delta: the topic is compacted
(keyed by account and the signing key's tag), a reader applies records in order and the newest wins. One
partition, so that order holds across a key rotation too (the key changes with the signing key).

Pure: the record, its key, encoding and strict decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from schemas.errors import PixelpipeError
from schemas.tokens import RECIPIENT_TAG_BYTES, Keyring, recipient_tag
from schemas.wire import required_fields, strict_fields

PRIVACY_VERSION: Final = 1
_TAG_HEX_CHARS: Final = 2 * RECIPIENT_TAG_BYTES
_HEX: Final = frozenset("0123456789abcdef")


class MalformedPrivacyChange(PixelpipeError, ValueError):
    """Bytes on the privacy topic that are not a privacy change of a version we read."""


class PrivacyNotPublished(PixelpipeError, RuntimeError):
    """The broker did not take a privacy change in time (the API answers 503; a repeat publishes again)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class PrivacyChange:
    """A recipient's privacy state as of ``at_ms`` (epoch milliseconds, UTC).

    ``tracking=False``: do not record their hits. ``erased``: they were erased, so notification state that
    still names them (webhook outbox, message cache) must go too; an erased recipient is never tracked.
    """

    account: str
    recipient_tags: tuple[str, ...]  # lowercase hex, the signing key's tag first
    tracking: bool
    erased: bool
    at_ms: int
    v: int = PRIVACY_VERSION

    def __post_init__(self) -> None:
        if not self.recipient_tags:
            raise MalformedPrivacyChange("a privacy change needs at least one recipient tag")
        for tag in self.recipient_tags:
            if len(tag) != _TAG_HEX_CHARS or not _HEX.issuperset(tag):
                raise MalformedPrivacyChange(f"recipient tag {tag[:40]!r} is not {_TAG_HEX_CHARS} hex digits")
        if self.erased and self.tracking:
            raise MalformedPrivacyChange("an erased recipient is not tracked")

    @property
    def key(self) -> bytes:
        """The compaction key: one recipient of one account (under the signing key of the time)."""
        return f"{self.account}\x1f{self.recipient_tags[0]}".encode()

    @property
    def tags(self) -> frozenset[bytes]:
        return frozenset(bytes.fromhex(t) for t in self.recipient_tags)


def privacy_change(
    keyring: Keyring, account: str, recipient: str, *, tracking: bool, erased: bool, at_ms: int
) -> PrivacyChange:
    """The record for a change of ``recipient`` (a plain address, which the record does not keep)."""
    signing = recipient_tag(keyring.signing_key[1], account, recipient)
    others = sorted(keyring.recipient_tags(account, recipient) - {signing})
    tags = (signing.hex(), *(t.hex() for t in others))
    return PrivacyChange(account, tags, tracking=tracking, erased=erased, at_ms=at_ms)


def encode_privacy_change(change: PrivacyChange) -> bytes:
    return orjson.dumps(change)


_REQUIRED: Final = required_fields(PrivacyChange)
_TYPES: Final[dict[str, type]] = {
    "account": str, "recipient_tags": list, "tracking": bool, "erased": bool, "at_ms": int, "v": int,
}  # fmt: skip


def decode_privacy_change(raw: bytes) -> PrivacyChange:
    """Strict: anything that is not a privacy change of this version raises `MalformedPrivacyChange`."""
    fields = strict_fields(
        raw,
        version=PRIVACY_VERSION,
        required=_REQUIRED,
        types=_TYPES,
        error=MalformedPrivacyChange,
        what="privacy change",
    )
    tags = fields.pop("recipient_tags")
    if not all(isinstance(t, str) for t in tags):
        raise MalformedPrivacyChange("field recipient_tags has the wrong type")
    return PrivacyChange(recipient_tags=tuple(tags), **fields)
