"""Read records in the processors (issue 18): a record as a ``reads`` row, the batch's insert, what is handed
on once stored, and the classifications of recent opens it is named with. Pure, but for `RecentOpens`'s
bounded memory.

A read record (`schemas.reads.ReadRecord`) travels on the raw-hit topic after its open, on the open's
partition. The runner (`processors.runner`) decodes it, drops it when its recipient is on do-not-track,
and stores it with the batch it came in: one insert into ``reads`` with a deduplication token of its own
per batch (`plan_read_insert`), before the batch's offsets are committed. ``reads`` is a
ReplacingMergeTree ordered by ``read_of`` (the open's hit id), so a record stored again after a crash
between the insert and the commit is one row once merged, and the API reads it exactly (FINAL).

Once stored, the records are handed to ``on_reads_stored`` (`OnReadsStored`, the notices' hook) as
`StoredRead`: the record, where it came from, and its open's classification when this processor knows it
(it judged the open since it started: `RecentOpens`), so the ``read`` notice can say read / skimmed /
glanced / unknown without a lookup; None when it does not (the open was judged before a restart beyond
what the flood filter's replay covers, or by another processor, or evicted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from processors.rows import InsertPlan
from schemas.reads import ReadCategory, ReadRecord, read_category
from schemas.verdicts import Classification, Verdict

READS_TABLE: Final = "reads"
READ_COLUMNS: Final = (
    "read_of", "account", "campaign_id", "message_id", "opened_at", "ended_at", "read_ms", "end", "source",
)  # fmt: skip
# Opens whose classification a processor keeps for the reads that follow them (within the edge's cap, 25 s
# by default, of their open): at 100 bytes or so each, about 10 MB.
RECENT_OPENS: Final = 100_000


@dataclass(frozen=True, slots=True)
class StoredRead:
    """A read record stored in ``reads``: ``source`` is its bus position (topic:partition:offset);
    ``open`` the final classification of the open it measured (after the replay-flood filter), or None
    when this processor does not know it."""

    record: ReadRecord
    source: str
    open: Classification | None

    @property
    def category(self) -> ReadCategory | None:
        """read / skimmed / glanced / unknown (`schemas.reads.read_category`), or None when the open's
        classification is not known here (the API joins it from the store)."""
        if self.open is None:
            return None
        r = self.record
        return read_category(r.read_ms, r.end, self.open.verdict is Verdict.HUMAN)


# The hook the notices build the ``read`` notice on: called on the event loop with each flush's stored read
# records, in bus order, right after the stored hits' ``on_stored``; must not block. Its notices are covered
# by the same ``notices_durable`` ticket as the hits' (the flush's offsets wait for both).
OnReadsStored = Callable[[Sequence[StoredRead]], None]


def read_row(record: ReadRecord, source: str) -> list[Any]:
    """The ``reads`` row of ``record`` (times as integer milliseconds, as `processors.rows.row`)."""
    return [
        record.read_of, record.account, record.campaign_id, record.message_id, record.opened_at_ms,
        record.ended_at_ms, record.read_ms, record.end.value, source,
    ]  # fmt: skip


def plan_read_insert(rows: Sequence[Sequence[Any]]) -> InsertPlan | None:
    """The batch's insert into ``reads``, its deduplication token a digest of the batch's ``read_of``s (an
    identical retry is stored once); None without rows."""
    if not rows:
        return None
    digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()[:32]
    return InsertPlan(READS_TABLE, READ_COLUMNS, rows, f"{READS_TABLE}:{digest}")


class RecentOpens:
    """The final classifications of the last opens this processor judged, by hit id: at least the last
    ``bound`` / 2 and at most ``bound`` (two generations of dicts: the older is forgotten whole when the newer
    is full, so remembering an open is one dict store on the hot path, several times cheaper than an LRU's
    bookkeeping)."""

    __slots__ = ("_half", "_newer", "_older")

    def __init__(self, bound: int = RECENT_OPENS) -> None:
        if bound < 0:
            raise ValueError("bound must be >= 0")
        self._half = bound // 2
        self._newer: dict[str, Classification] = {}
        self._older: dict[str, Classification] = {}

    def remember(self, hit_id: str, classification: Classification) -> None:
        if not self._half:
            return
        newer = self._newer
        newer[hit_id] = classification
        if len(newer) >= self._half:
            self._older, self._newer = newer, {}

    def get(self, hit_id: str) -> Classification | None:
        found = self._newer.get(hit_id)
        return found if found is not None else self._older.get(hit_id)

    def __len__(self) -> int:
        return len(self._newer) + len(self._older)
