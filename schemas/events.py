"""The raw hit: what the edge publishes and the processors consume (orjson on the wire).

The edge has already verified the token (it must, to redirect a click and to key the hit by message), so a
raw hit carries the decoded claim, or ``token_ok=False`` with the reason and the token's shape.
Decoding is strict: anything that is not a raw hit raises `MalformedHit`, which the processors send to the
dead-letter path instead of stopping. It runs on every hit, so msgspec decodes the bytes straight into
`RawHit`, checking the types in C; what it refuses is read again the slow way (`schemas.wire`), which says why
(or, for the few records only the slow way reads, such as integers past 64 bits, accepts them as it always
has).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec
import orjson

from schemas.errors import PixelpipeError
from schemas.wire import required_fields, strict_fields, typed_decoder, version_tail

SCHEMA_VERSION: Final = 1
HitKind = Literal["open", "click"]
_KINDS: Final = frozenset({"open", "click"})
# msgspec checks integer bounds only within 64 bits (signed); larger ones take the slow path.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class MalformedHit(PixelpipeError, ValueError):
    """Bytes on the bus that are not a raw hit of a version we read."""


@dataclass(frozen=True, slots=True)
class RawHit:
    """One request to the edge, as the edge saw it. Times are epoch milliseconds (UTC)."""

    hit_id: str
    kind: HitKind
    received_at_ms: Int64
    ip: str
    user_agent: str
    token_ok: bool
    account: str = ""
    campaign_id: str = ""
    message_id: str = ""
    sent_at: Int64 = 0
    link_index: Int64 = -1
    url: str = ""
    token_error: str = ""
    token_head: str = ""
    recipient_tag: str = ""  # hex of the token's recipient tag (do-not-track checks)
    v: Int64 = SCHEMA_VERSION

    @property
    def partition_key(self) -> bytes | None:
        """All hits of one message share a key, so they land on one partition in order."""
        if not self.token_ok:
            return None
        return f"{self.account}\x1f{self.message_id}".encode()


_REQUIRED: Final = required_fields(RawHit)
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


def join_hits(encoded: Sequence[bytes]) -> bytes:
    """Several `encode_hit` outputs as one record: newline-delimited JSON. orjson never writes a raw newline
    (inside strings it is ``\\n``), so a newline only ever separates hits, and one hit is a record as before.
    The edge sends many hits per Kafka record because each record costs aiokafka as much Python as a hit
    costs everything else."""
    return b"\n".join(encoded)


def split_hits(record: bytes) -> list[bytes]:
    """The hits of a record (`join_hits`), each to be decoded on its own: one bad line is one dead letter."""
    return record.split(b"\n") if b"\n" in record else [record]


# How `encode_hit` ends every record (see `schemas.wire.version_tail`).
_V1_TAIL: Final = version_tail(SCHEMA_VERSION)


# What the tables can hold (DateTime64(3) ends in 2299; link_index is Int16): a record outside would fail its
# batch's insert on every retry and stall the partition, so it is refused here and dead-lettered instead.
_MAX_EPOCH_S: Final = 10_413_791_999  # 2299-12-31T23:59:59Z
_LINK_INDEX: Final = range(-1, 2**15)


def decode_hit(raw: bytes) -> RawHit:
    """The raw hit in ``raw``; `MalformedHit` with the reason when it is not one."""
    return _in_range(_decode_typed(raw))  # msgspec checks the kind too (`HitKind`)


def _in_range(hit: RawHit) -> RawHit:
    if not 0 <= hit.received_at_ms <= _MAX_EPOCH_S * 1000:
        raise MalformedHit(f"received_at_ms {hit.received_at_ms} is out of range")
    if not 0 <= hit.sent_at <= _MAX_EPOCH_S:
        raise MalformedHit(f"sent_at {hit.sent_at} is out of range")
    if hit.link_index not in _LINK_INDEX:
        raise MalformedHit(f"link_index {hit.link_index} is out of range")
    return hit


def _decode_checked(raw: bytes) -> RawHit:
    """The slow way, field by field: the reason a record is refused (or the rare one only it reads)."""
    fields = strict_fields(
        raw, version=SCHEMA_VERSION, required=_REQUIRED, types=_TYPES, error=MalformedHit, what="schema"
    )
    if fields["kind"] not in _KINDS:
        raise MalformedHit(f"unknown kind {fields['kind']!r}")
    return RawHit(**fields)


_decode_typed: Final = typed_decoder(RawHit, SCHEMA_VERSION, _decode_checked)
