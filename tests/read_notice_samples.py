"""Read records for the tests of read notices (issue 18): a timed open's measurement as the edge publishes it,
and as the processor hands it on once stored."""

from __future__ import annotations

from typing import Any

from processors.reads import StoredRead
from schemas.reads import ReadEnd, ReadRecord
from schemas.verdicts import Classification, Verdict

OPENED_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: the open of `tests.notice_samples.stored_hit`


def read_record(read_of: str, read_ms: int, end: ReadEnd = ReadEnd.CLOSED, **fields: Any) -> ReadRecord:
    """acme's message ``m1`` of campaign ``spring``, opened at `OPENED_MS`, held ``read_ms``; ``fields``
    replace any of these."""
    sample: dict[str, Any] = {
        "read_of": read_of,
        "account": "acme",
        "campaign_id": "spring",
        "message_id": "m1",
        "recipient_tag": "ab" * 16,
        "opened_at_ms": OPENED_MS,
        "ended_at_ms": OPENED_MS + read_ms + 3,
        "read_ms": read_ms,
        "end": end,
    }
    return ReadRecord(**{**sample, **fields})


def stored_read(
    record: ReadRecord, verdict: Verdict | None = Verdict.HUMAN, reason: str = "why"
) -> StoredRead:
    """``record`` as the processor hands it on: its open judged ``verdict`` (None: not judged here)."""
    return StoredRead(record, "memory:0:9", Classification(verdict, reason) if verdict is not None else None)
