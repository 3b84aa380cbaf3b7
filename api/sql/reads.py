"""Read time as the API reads it (issue 18): a campaign's distribution of read / skimmed / glanced / unknown
with the median seconds of the measured, the same per mail client, and a message's read records for its
timeline. Pure.

``reads`` holds one row per held pixel of a timed open (`schemas.reads.ReadRecord`), keyed by the open's
hit id (``read_of``). It is read exactly: with FINAL (a record stored again after a crash before its offset
commit is one row), and its open's classification is joined from ``events`` at query time (one row per
open: ANY). A read is a person's when its open is a counted ``human`` open; a machine open, an open only in
``filtered_hits`` (a bot, a replay flood) or no open at all is not, and its read is ``unknown``
(`schemas.reads.category_sql`, equal to `schemas.reads.read_category`). ``events`` is read only for the
messages and hit ids the campaign's reads name, so a campaign without reads costs no scan of its opens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from api.sql.common import CAMPAIGN_SCOPE, Query
from schemas.reads import UNMEASURED, ReadCategory, read_category
from schemas.reads import category_sql as _category_sql

MEASURED: Final = ("read", "skimmed", "glanced")  # what ``measured`` and ``median_seconds`` count
# What a read's open must be for the read to be a person's: a counted human open (`events.verdict`).
PERSON: Final = "e.verdict = 'human'"
CATEGORY: Final = _category_sql("r.read_ms", "r.`end`", PERSON)


def _categorized(db: str) -> str:
    """Each read of the campaign (scope bound by ``{account}``/``{campaign_id}``) as ``category``,
    ``read_ms`` and its open's ``client`` ('' when the open is not in ``events``)."""
    return f"""
        SELECT {CATEGORY} AS category, r.read_ms AS read_ms, e.client AS client
        FROM (SELECT read_of, read_ms, `end` FROM {db}.reads FINAL WHERE {CAMPAIGN_SCOPE}) AS r
        ANY LEFT JOIN (
            SELECT hit_id, verdict, client FROM {db}.events
            WHERE {CAMPAIGN_SCOPE} AND kind = 'open'
              AND (message_id, hit_id) IN (SELECT message_id, read_of FROM {db}.reads WHERE {CAMPAIGN_SCOPE})
        ) AS e ON e.hit_id = r.read_of"""


_AGGREGATES: Final = (
    "countIf(category = 'read'), countIf(category = 'skimmed'), countIf(category = 'glanced'), "
    "countIf(category = 'unknown'), "
    "quantileExactInclusiveIf(0.5)(read_ms, category IN ('read', 'skimmed', 'glanced'))"
)


def campaign_read_time(db: str, account: str, campaign_id: str) -> Query:
    """One row: reads, skims, glances, unknowns and the median milliseconds of the measured (nan: none)."""
    return Query(
        f"SELECT {_AGGREGATES} FROM ({_categorized(db)})",
        {"account": account, "campaign_id": campaign_id},
    )


def client_read_time(db: str, account: str, campaign_id: str) -> Query:
    """`campaign_read_time` per the open's mail client ('' unknown), one row each: ``client, ...``."""
    return Query(
        f"SELECT client, {_AGGREGATES} FROM ({_categorized(db)}) GROUP BY client",
        {"account": account, "campaign_id": campaign_id},
    )


def shape_read_time(row: Iterable[Any] | None) -> dict[str, Any]:
    """``{read, skimmed, glanced, unknown, measured, median_seconds}`` of one aggregate row (None: no
    reads); ``median_seconds`` null when nothing was measured."""
    values = list(row) if row is not None else [0, 0, 0, 0, math.nan]
    read, skimmed, glanced, unknown, median_ms = values
    measured = int(read) + int(skimmed) + int(glanced)
    median = float(median_ms) if median_ms is not None else math.nan
    return {
        "read": int(read),
        "skimmed": int(skimmed),
        "glanced": int(glanced),
        "unknown": int(unknown),
        "measured": measured,
        "median_seconds": round(median / 1000, 3) if measured and not math.isnan(median) else None,
    }


NO_READ_TIME: Final = shape_read_time(None)


def with_client_read_time(
    rows: list[dict[str, Any]], read_rows: Iterable[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Breakdown-by-client rows (`api.sql.breakdowns.shape_breakdown`) each with its ``read_time``; a client
    with reads but no counted open in the breakdown gets a row of its own (zero opens), so the rows' read
    times add up to the campaign's."""
    by_client = {str(client) or None: shape_read_time(rest) for client, *rest in read_rows}
    out = [{**row, "read_time": by_client.pop(row["key"], NO_READ_TIME)} for row in rows]
    for key, read_time in sorted(by_client.items(), key=lambda kv: kv[0] or ""):
        empty = {"key": key, "opens": 0, "unique_opens": 0, "clicks": 0, "unique_clicks": 0}
        out.append({**empty, "read_time": read_time})
    return out


def message_reads(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    """A message's read records: ``read_of, read_ms, end`` (one per open, exactly)."""
    return Query(
        f"""SELECT read_of, read_ms, `end` FROM {db}.reads FINAL
            WHERE {CAMPAIGN_SCOPE} AND message_id = {{message_id:String}}""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def open_read(
    reads: Mapping[str, tuple[int, str]], hit_id: str, verdict: str
) -> tuple[float | None, ReadCategory | None]:
    """An open's ``read_seconds`` and ``read_category`` for the timeline: (None, None) when the open was not
    timed (no read record); seconds None when nothing was measured (the GIF went whole: busy, proxy)."""
    found = reads.get(hit_id)
    if found is None:
        return None, None
    read_ms, end = found
    seconds = None if end in UNMEASURED else read_ms / 1000
    return seconds, read_category(read_ms, end, verdict == "human")
