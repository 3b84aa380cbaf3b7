"""The aggregate open (issue 19): a campaign's open counted without identifying anyone. Pure.

Where a recipient may not be tracked individually (`schemas.consent.Tracking.AGGREGATE`), the email carries
a campaign pixel: `schemas.tokens.TokenKind.AGGREGATE_OPEN`, naming the account and campaign only (the
message id empty, the recipient tag zero). The edge answers it with the GIF as any pixel and publishes an
`AggregateOpen` on the raw-hit topic, a line of its own kind (`is_aggregate_line`), naming nobody: no message,
no recipient tag, no token.

It carries the client's address and user agent, in flight only: the processors need them to tell a person's
open from a machine's (Apple's Mail Privacy Protection and security gateways fetch every image from their
published ranges; bots say so in their user agent), as they do for every hit; they then store one row per
open in ``aggregate_opens`` holding the campaign, the hour, who opened (person / machine / bot) and a hash of
the open's random id (for exactly-once storage), and nothing of the address or the user agent. The raw-hit
topic keeps the line for its retention (``PIXELPIPE_KAFKA_*_RETENTION_HOURS``), as it keeps every hit.

Aggregate opens are not unique opens: with no identity they cannot be told apart per person (one reader
opening twice counts twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
import orjson

from schemas.errors import PixelpipeError
from schemas.tokens import TokenKind, token_starts
from schemas.wire import required_fields, strict_fields, typed_decoder

AGGREGATE_VERSION: Final = 1
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_MAX_EPOCH_MS: Final = 10_413_791_999_000  # 2299-12-31T23:59:59Z, as `schemas.events`


class MalformedAggregateOpen(PixelpipeError, ValueError):
    """Bytes on the bus that are not an aggregate open of a version we read."""


@dataclass(frozen=True, slots=True)
class AggregateOpen:
    """One fetch of a campaign pixel, as the edge saw it: ``aggregate_of`` is its random hit id (time-ordered,
    as a hit's), ``ip`` and ``user_agent`` are for classification in flight only. Times are epoch ms."""

    aggregate_of: str  # first: the line's start tells an aggregate open from a hit (`is_aggregate_line`)
    account: str
    campaign_id: str
    received_at_ms: Int64
    ip: str
    user_agent: str
    v: Int64 = AGGREGATE_VERSION

    @property
    def partition_key(self) -> bytes:
        """The campaign's: a campaign's aggregate opens share a partition (nothing else needs an order)."""
        return f"{self.account}\x1f\x1f{self.campaign_id}".encode()


LINE_START: Final = b'{"aggregate_of":'
# The edge tells a campaign pixel from an open by its first characters, before anything is verified.
_STARTS: Final = token_starts(TokenKind.AGGREGATE_OPEN)


def looks_aggregate(token: str) -> bool:
    """Whether ``token`` says it is an aggregate open (unverified: `schemas.tokens.verify` decides)."""
    return token[:3] in _STARTS


def is_aggregate_line(raw: bytes) -> bool:
    """Whether a line of a raw-hit record is an aggregate open (`encode_aggregate` starts every one so)."""
    return raw.startswith(LINE_START)


def encode_aggregate(record: AggregateOpen) -> bytes:
    return orjson.dumps(record)


_REQUIRED: Final = required_fields(AggregateOpen)
_TYPES: Final[dict[str, type]] = {
    "aggregate_of": str,
    "account": str,
    "campaign_id": str,
    "received_at_ms": int,
    "ip": str,
    "user_agent": str,
    "v": int,
}


def _checked(raw: bytes) -> AggregateOpen:
    fields = strict_fields(
        raw,
        version=AGGREGATE_VERSION,
        required=_REQUIRED,
        types=_TYPES,
        error=MalformedAggregateOpen,
        what="aggregate open",
    )
    return AggregateOpen(**fields)


_decode_typed: Final = typed_decoder(AggregateOpen, AGGREGATE_VERSION, _checked)


def decode_aggregate(raw: bytes) -> AggregateOpen:
    """The aggregate open in ``raw``; `MalformedAggregateOpen` with the reason when it is not one."""
    record = _decode_typed(raw)
    if not record.aggregate_of or not record.account:
        raise MalformedAggregateOpen("an aggregate open names its id and account")
    if not 0 <= record.received_at_ms <= _MAX_EPOCH_MS:
        raise MalformedAggregateOpen(f"received_at_ms {record.received_at_ms} is out of range")
    return record
