"""Read time: how long an opened email stayed on screen (issue 18). What the edge measures, what travels on
the bus, and how a measurement is named. Pure.

An open token of kind `schemas.tokens.TokenKind.TIMED_OPEN` makes the edge hold its pixel's answer open (an
animated GIF sent a frame at a time, `ingest.read_gif`), after publishing the open as usual. When the client
closes the connection, the cap is reached, or the edge stops, the edge publishes a `ReadRecord` for that
open's hit id with what it measured. The record travels on the raw-hit topic, keyed like the open (one
partition, after it), as a line of its own kind (`is_read_line`): the processors store it in ``reads``
with the batch it came in, exactly once, as they store hits.

How a measurement is named (`read_category`, and `category_sql` in SQL; the unit tests hold them equal):

- ``unknown``: nothing a person did can be measured. The open was not a person's (an image proxy such as
  Gmail's or Yahoo's, Apple's prefetch, a security gateway, a bot: they fetch the whole image at once, or
  hold it for as long as it lasts, whoever reads), or the edge did not hold the image (`ReadEnd.BUSY`: at
  its cap of held connections; `ReadEnd.PROXY`: a client known to fetch everything at once), or the edge
  stopped before the reader did, under `READ_MS` (`ReadEnd.STOPPED`: the time is a lower bound).
- ``read``: on screen `READ_MS` (8 s) or more; ``skimmed``: `GLANCED_MS` (2 s) to 8 s; ``glanced``: under 2 s.
  These are Litmus's names and bounds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec
import orjson

from schemas.errors import PixelpipeError
from schemas.wire import required_fields, strict_fields, typed_decoder

READS_VERSION: Final = 1
READ_MS: Final = 8_000  # on screen this long or longer: read
GLANCED_MS: Final = 2_000  # shorter than this: glanced; between the two: skimmed
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

ReadCategory = Literal["read", "skimmed", "glanced", "unknown"]
CATEGORIES: Final[tuple[ReadCategory, ...]] = ("read", "skimmed", "glanced", "unknown")


class ReadEnd(enum.StrEnum):
    """How a held pixel ended: what the measured time means."""

    CLOSED = "closed"  # the client closed the connection: the time on screen
    CAP = "cap"  # the whole animation was sent (the cap): on screen at least that long
    STOPPED = "stopped"  # the edge stopped first: on screen at least that long (a lower bound)
    BUSY = "busy"  # at the cap of held connections: the GIF was sent whole, nothing measured
    PROXY = "proxy"  # a client known to fetch whole images at once (an image proxy): sent whole


# Ends whose time is no measurement of a reader.
UNMEASURED: Final = frozenset({ReadEnd.BUSY, ReadEnd.PROXY})


class MalformedRead(PixelpipeError, ValueError):
    """Bytes on the bus that are not a read record of a version we read."""


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """The end of one held pixel: ``read_of`` is the hit id of its open (`schemas.events.RawHit.hit_id`),
    ``read_ms`` the milliseconds from the open's answer to the end (0 when `UNMEASURED`). The open's claim is
    repeated so the record is keyed, filtered (do-not-track) and erased like the open. Times are epoch ms."""

    read_of: str  # first: the line's start tells a read from a hit (`is_read_line`)
    account: str
    campaign_id: str
    message_id: str
    recipient_tag: str  # hex, as the open's
    opened_at_ms: Int64
    ended_at_ms: Int64
    read_ms: Int64
    end: ReadEnd
    v: Int64 = READS_VERSION

    @property
    def partition_key(self) -> bytes:
        """The open's key (`schemas.events.RawHit.partition_key`): the same partition, after the open."""
        return f"{self.account}\x1f{self.message_id}".encode()


LINE_START: Final = b'{"read_of":'


def is_read_line(raw: bytes) -> bool:
    """Whether a line of a raw-hit record is a read record (`encode_read` starts every one so)."""
    return raw.startswith(LINE_START)


def encode_read(record: ReadRecord) -> bytes:
    return orjson.dumps(record)


_REQUIRED: Final = required_fields(ReadRecord)
_TYPES: Final[dict[str, type]] = {
    "read_of": str,
    "account": str,
    "campaign_id": str,
    "message_id": str,
    "recipient_tag": str,
    "opened_at_ms": int,
    "ended_at_ms": int,
    "read_ms": int,
    "end": str,
    "v": int,
}
_ENDS: Final = frozenset(e.value for e in ReadEnd)
_MAX_EPOCH_MS: Final = 10_413_791_999_000  # 2299-12-31T23:59:59Z, as `schemas.events`
_MAX_READ_MS: Final = 24 * 3600 * 1000


def _checked(raw: bytes) -> ReadRecord:
    fields = strict_fields(
        raw, version=READS_VERSION, required=_REQUIRED, types=_TYPES, error=MalformedRead, what="read record"
    )
    if fields["end"] not in _ENDS:
        raise MalformedRead(f"unknown end {fields['end']!r}")
    fields["end"] = ReadEnd(fields["end"])
    return ReadRecord(**fields)


_decode_typed: Final = typed_decoder(ReadRecord, READS_VERSION, _checked)


def decode_read(raw: bytes) -> ReadRecord:
    """The read record in ``raw``; `MalformedRead` with the reason when it is not one."""
    record = _decode_typed(raw)
    if not record.read_of or not record.account or not record.message_id:
        raise MalformedRead("a read record names its open, account and message")
    for name in ("opened_at_ms", "ended_at_ms"):
        if not 0 <= getattr(record, name) <= _MAX_EPOCH_MS:
            raise MalformedRead(f"{name} {getattr(record, name)} is out of range")
    if not 0 <= record.read_ms <= _MAX_READ_MS:
        raise MalformedRead(f"read_ms {record.read_ms} is out of range")
    return record


def read_category(read_ms: int, end: str, person: bool) -> ReadCategory:
    """The name of one measurement: ``person`` is whether its open counts as a person's (its classification).
    A lower bound (`ReadEnd.STOPPED`) is named only when it already reaches `READ_MS`."""
    if not person or end in UNMEASURED:
        return "unknown"
    if read_ms >= READ_MS:
        return "read"
    if end == ReadEnd.STOPPED:
        return "unknown"
    return "skimmed" if read_ms >= GLANCED_MS else "glanced"


def category_sql(read_ms: str, end: str, person: str) -> str:
    """`read_category` as a ClickHouse expression over these columns (``person``: a boolean expression)."""
    unmeasured = ", ".join(f"'{e.value}'" for e in sorted(UNMEASURED))
    return (
        f"multiIf(NOT ({person}) OR {end} IN ({unmeasured}), 'unknown', "
        f"{read_ms} >= {READ_MS}, 'read', {end} = '{ReadEnd.STOPPED.value}', 'unknown', "
        f"{read_ms} >= {GLANCED_MS}, 'skimmed', 'glanced')"
    )
