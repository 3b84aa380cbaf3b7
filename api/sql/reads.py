"""Read time as the API reads it (issue 18): a campaign's distribution of read / skimmed / glanced / unknown
with the median seconds of the measured, the same per mail client, and a message's read records for its
timeline. Pure.

``reads`` holds one row per held pixel of a timed open (`schemas.reads.ReadRecord`), keyed by the open's
hit id (``read_of``). It is read exactly: with FINAL (a record stored again after a crash before its offset
commit is one row). A read is a person's when its open is a counted ``human`` open; a machine open, an open
only in ``filtered_hits`` (a bot, a replay flood) or no open at all is not, and its read is ``unknown``
(`schemas.reads.category_sql`, equal to `schemas.reads.read_category`).

The open's classification comes from ``events`` as the rollups keep it (``schemas/ddl/0002_rollups.sql``:
per verdict, and per verdict and client, the set of the opens' 64-bit hit id hashes, exact as every campaign
number is): a read's open is a person's when ``cityHash64(read_of)`` is in the campaign's human opens (the
``hour`` rows), and its client is the ``client`` row that holds it. Joining ``events`` by the hit id strings
instead costs 4-5 times as much (1.2-1.5 s against 0.26-0.34 s for 158 k reads of the benchmark's largest
campaign, 1.58 M opens, on a loaded machine). Every insert into ``reads`` also writes a row into the rollups
(``0013_reads_rollup.sql``), so the signature that keeps a campaign's stats
(`api.sql.campaigns.campaign_parts`, over the rollups' parts) changes with its reads too: the numbers are
never stale. A campaign without reads is answered by `campaign_has_reads` alone (one read of an empty key
range): the plans cost tens of ms even then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from api.sql.common import CAMPAIGN_SCOPE, Query
from schemas.reads import UNMEASURED, ReadCategory, read_category
from schemas.reads import category_sql as _category_sql

MEASURED: Final = ("read", "skimmed", "glanced")  # what ``measured`` and ``median_seconds`` count


def _read_hashes(db: str) -> str:
    """The campaign's reads' hit id hashes: what the rollups' sets are narrowed to before they are matched."""
    return f"SELECT cityHash64(read_of) FROM {db}.reads WHERE {CAMPAIGN_SCOPE}"


def campaign_has_reads(db: str, account: str, campaign_id: str) -> Query:
    """One row when the campaign has a read record (the key range of ``reads`` only)."""
    return Query(
        f"SELECT 1 FROM {db}.reads WHERE {CAMPAIGN_SCOPE} LIMIT 1",
        {"account": account, "campaign_id": campaign_id},
    )


_AGGREGATES: Final = (
    "countIf(category = 'read'), countIf(category = 'skimmed'), countIf(category = 'glanced'), "
    "countIf(category = 'unknown'), "
    "quantileExactInclusiveIf(0.5)(read_ms, category IN ('read', 'skimmed', 'glanced'))"
)


def campaign_read_time(db: str, account: str, campaign_id: str) -> Query:
    """One row: reads, skims, glances, unknowns and the median milliseconds of the measured (nan: none)."""
    humans = f"""SELECT h FROM {db}.rollups ARRAY JOIN hits AS h
                 WHERE {CAMPAIGN_SCOPE} AND rollup = 'hour' AND kind = 'open' AND who = 'human'
                   AND h IN ({_read_hashes(db)})"""
    category = _category_sql("read_ms", "`end`", "person")
    return Query(
        f"""SELECT {_AGGREGATES} FROM (
              SELECT {category} AS category, read_ms FROM (
                SELECT read_ms, `end`, cityHash64(read_of) IN ({humans}) AS person
                FROM {db}.reads FINAL WHERE {CAMPAIGN_SCOPE}))""",
        {"account": account, "campaign_id": campaign_id},
    )


def client_read_time(db: str, account: str, campaign_id: str) -> Query:
    """`campaign_read_time` per the open's mail client ('' unknown: no counted open), one row each:
    ``client, ...``."""
    category = _category_sql("r.read_ms", "r.`end`", "o.who = 'human'")
    return Query(
        f"""SELECT client, {_AGGREGATES} FROM (
              SELECT {category} AS category, r.read_ms AS read_ms, o.label AS client
              FROM (SELECT cityHash64(read_of) AS h, read_ms, `end` FROM {db}.reads FINAL
                    WHERE {CAMPAIGN_SCOPE}) AS r
              ANY LEFT JOIN (
                SELECT h, who, label FROM {db}.rollups ARRAY JOIN hits AS h
                WHERE {CAMPAIGN_SCOPE} AND rollup = 'client' AND kind = 'open'
                  AND h IN ({_read_hashes(db)})
              ) AS o ON o.h = r.h)
            GROUP BY client""",
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
