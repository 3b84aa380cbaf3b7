"""Time series of a campaign: its time zone and bounds checked, its buckets (minute, hour, day, in the
requested zone, across daylight-saving changes), the rollup each series reads, and the shaping of one row per
bucket. Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from api.sql.common import CAMPAIGN_SCOPE, BadQuery, Query
from api.sql.exact import ROLLUP_KEYS, ExactRead

Bucket = Literal["minute", "hour", "day"]

MAX_BUCKETS: Final = 10_000  # a time series longer than this is refused (400), not truncated


_BUCKET_SQL: Final = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}


@functools.cache
def _zone_names() -> frozenset[str]:
    # The canonical IANA names: `available_timezones` leaves out tzdata's `right/` (leap seconds, which
    # ClickHouse refuses) and `posix/` copies, and never lists a path outside the database.
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """An IANA time zone that Python and ClickHouse both read, or `BadQuery` naming ``tz``."""
    if name not in _zone_names():
        raise BadQuery(f"tz: unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadQuery(f"tz: unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'") from exc


EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)  # the store's DateTime range (ClickHouse: 1970 to 2106)


LATEST: Final = datetime(2106, 1, 1, tzinfo=UTC)


def instant(parameter: str, value: datetime, tz: ZoneInfo) -> datetime:
    """``value`` (read in ``tz`` without an offset) as an aware time within the store's range, or `BadQuery`
    naming ``parameter`` as the client sent it. Checked before any local-time arithmetic, which overflows
    near the ends of the calendar (year 1 in New York, year 9999 in Kiritimati)."""
    bounds = f"{parameter!r} must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"
    aware = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    try:
        utc = aware.astimezone(UTC)
        aware.astimezone(tz)
    except (OverflowError, ValueError) as exc:
        raise BadQuery(bounds) from exc
    if not EARLIEST <= utc < LATEST:
        raise BadQuery(bounds)
    return aware


@dataclass(frozen=True, slots=True)
class Span:
    """A time series' buckets: their starts in the requested zone, and where the last one ends."""

    starts: tuple[datetime, ...]
    stop: datetime

    @property
    def parameters(self) -> dict[str, int]:
        return {"start": int(self.starts[0].timestamp()), "stop": int(self.stop.timestamp())}


def _next_start(bucket: Bucket, current: datetime, tz: ZoneInfo) -> datetime:
    if bucket == "day":
        # Local midnights, 23 to 25 hours apart across daylight-saving changes.
        following = current.date() + timedelta(days=1)
        return datetime(following.year, following.month, following.day, tzinfo=tz)
    step = timedelta(minutes=1) if bucket == "minute" else timedelta(hours=1)
    return (current.astimezone(UTC) + step).astimezone(tz)


def bucket_starts(bucket: Bucket, tz: ZoneInfo, start: datetime, end: datetime) -> Span:
    """Every bucket that meets ``[start, end)``, as its start in ``tz``; `BadQuery` past `MAX_BUCKETS`."""
    if end <= start:
        raise BadQuery("'to' must be after 'from'")
    step_s = {"minute": 60, "hour": 3600, "day": 86_400}[bucket]
    if (end - start).total_seconds() / step_s > MAX_BUCKETS + 1:
        raise BadQuery(f"more than {MAX_BUCKETS} {bucket} buckets; narrow the range or widen the bucket")
    local = start.astimezone(tz)
    if bucket == "minute":
        current = local.replace(second=0, microsecond=0)
    elif bucket == "hour":
        # Local hours of zones at :30 or :45 offsets do not start on UTC hours: floor in local time.
        current = local.replace(minute=0, second=0, microsecond=0)
    else:
        current = datetime(local.year, local.month, local.day, tzinfo=tz)
    starts = []
    while current < end:
        starts.append(current)
        current = _next_start(bucket, current, tz)
    if len(starts) > MAX_BUCKETS:
        raise BadQuery(f"more than {MAX_BUCKETS} {bucket} buckets; narrow the range or widen the bucket")
    return Span(tuple(starts), current)


def campaign_extent(db: str, account: str, campaign_id: str) -> Query:
    """First and last minute with a counted hit (the default range of a time series), epoch seconds."""
    return Query(
        f"""SELECT toUnixTimestamp(min(at)), toUnixTimestamp(max(at)), count() FROM {db}.rollups
            WHERE {CAMPAIGN_SCOPE} AND rollup = 'minute' AND who IN ('human', 'machine')""",
        {"account": account, "campaign_id": campaign_id},
    )


def _series_rollup(bucket: Bucket, span: Span) -> str:
    """The rollup a series reads: hours, unless the buckets need minutes (minute buckets, or a zone whose
    offset is not whole hours somewhere in the span, like +05:30)."""
    whole_hours = all((s.utcoffset() or timedelta()).total_seconds() % 3600 == 0 for s in span.starts)
    return "hour" if bucket != "minute" and whole_hours else "minute"


def _series_scope(rollup: str) -> str:
    return (
        f"{CAMPAIGN_SCOPE} AND rollup = '{rollup}' AND who IN ('human', 'machine') "
        "AND at >= toDateTime({start:Int64}, 'UTC') AND at < toDateTime({stop:Int64}, 'UTC')"
    )


def series_hits(db: str, account: str, campaign_id: str, *, bucket: Bucket, tz: str, span: Span) -> ExactRead:
    """Distinct hits per (bucket start in ``tz``, epoch seconds; kind; verdict)."""
    t = f"toUnixTimestamp({_BUCKET_SQL[bucket]}(toTimeZone(at, {{tz:String}})))"
    return ExactRead(
        f"{db}.rollups",
        _series_scope(_series_rollup(bucket, span)),
        keys=ROLLUP_KEYS,
        sizes=(("hits", "hits"),),
        parameters={"account": account, "campaign_id": campaign_id, "tz": tz, **span.parameters},
        out=(("t", t), ("kind", "kind"), ("verdict", "who")),
    )


def series_openers(
    db: str, account: str, campaign_id: str, *, bucket: Bucket, tz: str, span: Span, include_machine: bool
) -> Query:
    """Distinct messages opened per bucket (a message opened in two buckets counts in each)."""
    t = f"toUnixTimestamp({_BUCKET_SQL[bucket]}(toTimeZone(at, {{tz:String}})))"
    verdicts = "('human', 'machine')" if include_machine else "('human')"
    sql = f"""SELECT {t} AS t, length(arrayDistinct(arrayFlatten(groupArray(messages)))) AS openers
        FROM {db}.rollups
        WHERE {_series_scope(_series_rollup(bucket, span))} AND kind = 'open' AND who IN {verdicts}
        GROUP BY t ORDER BY t"""
    return Query(sql, {"account": account, "campaign_id": campaign_id, "tz": tz, **span.parameters})


def shape_series(
    span: Span,
    hit_rows: Iterable[tuple[Any, ...]],
    opener_rows: Iterable[tuple[Any, ...]],
    *,
    include_machine: bool,
) -> list[dict[str, Any]]:
    """One row per bucket of the span, empty ones too: ``{t, opens, unique_opens, clicks, machine_opens}``."""
    rows: dict[int, dict[str, Any]] = {
        int(s.timestamp()): {
            "t": s.isoformat(),
            "opens": 0,
            "unique_opens": 0,
            "clicks": 0,
            "machine_opens": 0,
        }
        for s in span.starts
    }
    for t, kind, verdict, hits in hit_rows:
        row = rows.get(int(t))
        if row is None:
            continue
        if kind == "open" and verdict == "machine":
            row["machine_opens"] += int(hits)
            if include_machine:
                row["opens"] += int(hits)
        elif kind == "open":
            row["opens"] += int(hits)
        else:
            row["clicks"] += int(hits)
    for t, openers in opener_rows:
        if int(t) in rows:
            rows[int(t)]["unique_opens"] = int(openers)
    return list(rows.values())


def shape_timeseries(
    campaign_id: str,
    *,
    bucket: str,
    tz: str,
    include_machine: bool,
    span: Span | None,
    series: list[dict[str, Any]],
) -> dict[str, Any]:
    """The answer of ``/v1/campaigns/{id}/timeseries``: its parameters and ``series`` (`shape_series`);
    ``span`` None: a campaign without a hit, no series."""
    return {
        "campaign_id": campaign_id,
        "bucket": bucket,
        "tz": tz,
        "from": span.starts[0].isoformat() if span else None,
        "to": span.stop.isoformat() if span else None,
        "include_machine": include_machine,
        "series": series,
    }
