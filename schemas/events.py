"""The raw hit: what the edge publishes and the processors consume (orjson on the wire).

The edge has already verified the token (it must, to redirect a click and to key the hit by message), so a
raw hit carries the decoded claim, or ``token_ok=False`` with the reason and the token's first characters.
Decoding is strict: anything that is not a raw hit raises `MalformedHit`, which the processors send to the
dead-letter path instead of stopping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from schemas.wire import strict_fields

SCHEMA_VERSION: Final = 1
HitKind = Literal["open", "click"]
_KINDS: Final = frozenset({"open", "click"})


class MalformedHit(ValueError):
    """Bytes on the bus that are not a raw hit of a version we read."""


@dataclass(frozen=True, slots=True)
class RawHit:
    """One request to the edge, as the edge saw it. Times are epoch milliseconds (UTC)."""

    hit_id: str
    kind: HitKind
    received_at_ms: int
    ip: str
    user_agent: str
    token_ok: bool
    account: str = ""
    campaign_id: str = ""
    message_id: str = ""
    sent_at: int = 0
    link_index: int = -1
    url: str = ""
    token_error: str = ""
    token_head: str = ""
    recipient_tag: str = ""  # hex of the token's recipient tag (do-not-track checks)
    v: int = SCHEMA_VERSION

    @property
    def partition_key(self) -> bytes | None:
        """All hits of one message share a key, so they land on one partition in order."""
        if not self.token_ok:
            return None
        return f"{self.account}\x1f{self.message_id}".encode()


_FIELDS: Final = {f.name: f for f in dataclasses.fields(RawHit)}
_REQUIRED: Final = frozenset(name for name, f in _FIELDS.items() if f.default is dataclasses.MISSING)
_TYPES: Final[dict[str, type]] = {
    "hit_id": str,
    "kind": str,
    "received_at_ms": int,
    "ip": str,
    "user_agent": str,
    "token_ok": bool,
    "account": str,
    "campaign_id": str,
    "message_id": str,
    "sent_at": int,
    "link_index": int,
    "url": str,
    "token_error": str,
    "token_head": str,
    "recipient_tag": str,
    "v": int,
}


def encode_hit(hit: RawHit) -> bytes:
    return orjson.dumps(hit)


def decode_hit(raw: bytes) -> RawHit:
    fields = strict_fields(
        raw, version=SCHEMA_VERSION, required=_REQUIRED, types=_TYPES, error=MalformedHit, what="schema"
    )
    if fields["kind"] not in _KINDS:
        raise MalformedHit(f"unknown kind {fields['kind']!r}")
    return RawHit(**fields)
