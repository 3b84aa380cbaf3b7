"""The analyst API's SQL and the shaping of its answers. Pure: SQL text and parameters in, dicts out.

Owns how the rollups of ``schemas/ddl/0002_rollups.sql`` are read exactly (`ExactRead`), campaign summaries,
breakdowns, time series, links, filtered hits, message timelines, recipients and their best time to send, and
the keyset pagination of campaign and message lists (opaque cursors). Does no I/O of its own (`read_exact`
runs its queries through the function it is given) and never answers across accounts: every query is scoped
by ``{account:String}``.

Exactness: a rollup row holds *sets* (hashes of hit and message ids); a key with one row is counted by its
array lengths, a key with several rows (parts not merged yet, or a replayed hit) by the union of its arrays.
Keys never share a hit (hits are keyed by the hour or minute they were received) nor a message (messages by
a bucket of their hash), so the sum over keys is the exact number of distinct hits or messages: a hit stored
twice counts once, as ``uniqExact(hit_id)`` over ``events`` would.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from api.queries import Query, iso, rate
from schemas.errors import PixelpipeError

Dimension = Literal["country", "client", "device", "os"]
Bucket = Literal["minute", "hour", "day"]

MAX_BUCKETS: Final = 10_000  # a time series longer than this is refused (400), not truncated
MIN_SAMPLE: Final = 5  # fewer human opens than this: best time falls back to a wider audience
MAX_PAGE: Final = 1000
_SLACK: Final = 16  # extra rows a message page reads, for copies of re-registered messages
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_BUCKET_SQL: Final = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}
_SCOPE: Final = "account = {account:String} AND campaign_id = {campaign_id:String}"
# The rest of the rollups' sorting key, after (account, campaign_id, rollup): see 0002_rollups.sql.
_KEYS: Final = ("kind", "who", "label", "at", "bucket")


class BadQuery(PixelpipeError, ValueError):
    """A query value the API cannot answer (answered as 400, with this message)."""


# -- the exact read of a set rollup --------------------------------------------------------------------------

RunQuery = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]  # e.g. `Store.query`


@dataclass(frozen=True, slots=True)
class ExactRead:
    """Distinct elements of array columns of a set rollup, per ``out`` group, in one query or two.

    ``keys`` must be the rest of the table's sorting key once ``where`` fixes its prefix, so a key with one
    row holds its whole set. The first query sums the array lengths of keys with one row (once background
    merges have caught up: all of them) and names the keys with several; only then does a second query union
    those keys' arrays. The second query takes the key names from the first, so a key that gains a row in
    between is counted once, as the first query saw it. A key is named by the 64-bit hash of its columns
    (hashing is several times cheaper than formatting the tuple, and the filter runs on every row of the
    scope); two keys of one campaign sharing a hash (p < 1e-10) would count one key twice.
    """

    table: str
    where: str
    keys: tuple[str, ...]
    sizes: tuple[tuple[str, str], ...]  # (name, array column)
    parameters: Mapping[str, Any]
    out: tuple[tuple[str, str], ...] = ()  # (alias, expression over keys)

    def _outer(self, sums: str) -> tuple[str, str]:
        aliases = ", ".join(alias for alias, _ in self.out)
        select = ", ".join([*(f"{expr} AS {alias}" for alias, expr in self.out), sums])
        return select, (f" GROUP BY {aliases} ORDER BY {aliases}" if self.out else "")

    def first(self) -> Query:
        keys = ", ".join(self.keys)
        lengths = ", ".join(f"sum(length({column})) AS n_{name}" for name, column in self.sizes)
        sums = ", ".join(f"sumIf(n_{name}, copies = 1) AS {name}" for name, _ in self.sizes)
        select, tail = self._outer(f"{sums}, groupArrayIf(key, copies > 1) AS several")
        sql = f"""SELECT {select} FROM (
            SELECT {keys}, cityHash64({keys}) AS key, count() AS copies, {lengths}
            FROM {self.table} WHERE {self.where} GROUP BY {keys}){tail}"""
        return Query(sql, dict(self.parameters))

    def second(self, several: Sequence[int]) -> Query:
        keys = ", ".join(self.keys)
        unions = ", ".join(
            f"length(arrayDistinct(arrayFlatten(groupArray({column})))) AS n_{name}"
            for name, column in self.sizes
        )
        select, tail = self._outer(", ".join(f"sum(n_{name}) AS {name}" for name, _ in self.sizes))
        sql = f"""SELECT {select} FROM (
            SELECT {keys}, {unions} FROM {self.table}
            WHERE {self.where} AND cityHash64({keys}) IN {{several_keys:Array(UInt64)}}
            GROUP BY {keys}){tail}"""
        return Query(sql, {**self.parameters, "several_keys": list(several)})


def read_exact(run: RunQuery, read: ExactRead) -> list[tuple[Any, ...]]:
    """Rows ``(*out, *sizes)`` of ``read``, in ``out`` order, running its one or two queries with ``run``."""
    width = len(read.out)
    first = read.first()
    rows = run(first.sql, first.parameters)
    totals = {tuple(row[:width]): [int(n) for n in row[width:-1]] for row in rows}
    several = [key for row in rows for key in row[-1]]
    if several:
        second = read.second(several)
        for row in run(second.sql, second.parameters):
            sums = totals.setdefault(tuple(row[:width]), [0] * len(read.sizes))
            for i, n in enumerate(row[width:]):
                sums[i] += int(n)
    return [(*group, *sums) for group, sums in totals.items() if width or rows]


# -- campaigns: existence, summary, filtered hits ------------------------------------------------------------


def campaign_known(db: str, account: str, campaign_id: str) -> Query:
    """One row if the campaign has a send or any hit for this account."""
    return Query(
        f"""SELECT 1 FROM {db}.campaign_catalog WHERE {_SCOPE}
            UNION ALL SELECT 1 FROM {db}.rollups WHERE {_SCOPE} AND rollup = 'hour' LIMIT 1""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_hits(db: str, account: str, campaign_id: str) -> ExactRead:
    """Distinct hits of a campaign by (kind, verdict, reason): counted and filtered alike."""
    return ExactRead(
        f"{db}.rollups",
        f"{_SCOPE} AND rollup = 'hour'",
        keys=_KEYS,
        sizes=(("hits", "hits"),),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("kind", "kind"), ("verdict", "who"), ("reason", "label")),
    )


def campaign_messages(db: str, account: str, campaign_id: str, *, include_machine: bool = False) -> ExactRead:
    """Distinct messages of a campaign by (event, who): 'sent' (who ''), opened and clicked per verdict, and,
    for the machine-open switch, opened by anyone ('open', 'any': people or machines)."""
    scope = f"{_SCOPE} AND rollup = 'messages'"
    return ExactRead(
        f"{db}.rollups",
        scope if include_machine else f"{scope} AND who != 'any'",
        keys=_KEYS,
        sizes=(("messages", "messages"),),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("event", "kind"), ("who", "who")),
    )


def campaign_counts(db: str, account: str, campaign_id: str, *, include_machine: bool = False) -> ExactRead:
    """`campaign_hits` and `campaign_messages` in one read (the summary's one or two queries instead of two
    to four): rows ``(rollup, kind, who, label, hits, messages)``; split them with `split_counts`."""
    messages = "`rollup` = 'messages'" if include_machine else "`rollup` = 'messages' AND who != 'any'"
    return ExactRead(
        f"{db}.rollups",
        f"{_SCOPE} AND (`rollup` = 'hour' OR ({messages}))",
        keys=("`rollup`", *_KEYS),
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("r", "`rollup`"), ("kind", "kind"), ("verdict", "who"), ("reason", "label")),
    )


def unregistered_messages(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Per campaign, its messages with a counted hit (an open or click in ``events``) but no send: a send
    dropped by the retention before its opens (sends expire by ``sent_at``, opens by when they came). Such a
    message counts as sent, so a campaign's totals stay the sum over its messages (`GET /v1/messages/{id}`
    answers for it from its hits) and its rates stay at most 1. Exact: within one bucket of message hashes,
    the hit messages minus the sent ones; buckets never share a message."""
    return Query(
        f"""SELECT campaign_id, sum(length(arrayDistinct(arrayConcat(sent, hit))) - length(sent)) AS n
            FROM (
              SELECT campaign_id, bucket,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'sent'))) AS sent,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind != 'sent'))) AS hit
              FROM {db}.rollups
              WHERE account = {{account:String}} AND campaign_id IN {{campaign_ids:Array(String)}}
                AND rollup = 'messages'
              GROUP BY campaign_id, bucket)
            GROUP BY campaign_id HAVING n > 0""",
        {"account": account, "campaign_ids": list(campaign_ids)},
    )


def split_counts(rows: Iterable[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """`campaign_counts` rows as (`campaign_hits` rows, `campaign_messages` rows)."""
    hit_rows: list[tuple[Any, ...]] = []
    messages: Counter[tuple[str, str]] = Counter()
    for r, kind, who, label, hits, n in rows:
        if r == "hour":
            hit_rows.append((kind, who, label, hits))
        else:
            messages[kind, who] += int(n)
    return hit_rows, [(event, who, n) for (event, who), n in sorted(messages.items())]


def shape_summary(
    campaign_id: str,
    hit_rows: Iterable[tuple[Any, ...]],
    message_rows: Iterable[tuple[Any, ...]],
    *,
    include_machine: bool = False,
    unregistered: int = 0,
) -> dict[str, Any]:
    """The campaign summary: the contract's campaign stats, from the rollups. With ``include_machine``,
    ``opens`` / ``unique_opens`` / ``open_rate`` count machine opens too (Mailchimp's MPP switch).
    ``unregistered``: messages with hits but no send (`unregistered_messages`), counted as sent."""
    hits: Counter[tuple[str, str]] = Counter()
    filtered: Counter[str] = Counter()
    for kind, verdict, reason, n in hit_rows:
        hits[kind, verdict] += int(n)
        if verdict in ("bot", "invalid"):
            filtered[reason] += int(n)
    messages = {(event, verdict): int(n) for event, verdict, n in message_rows}
    sent = messages.get(("sent", ""), 0) + unregistered
    opens, unique_opens = hits["open", "human"], messages.get(("open", "human"), 0)
    if include_machine:
        opens, unique_opens = opens + hits["open", "machine"], messages.get(("open", "any"), 0)
    unique_clicks = messages.get(("click", "human"), 0)
    return {
        "campaign_id": campaign_id,
        "include_machine": include_machine,
        "sent": sent,
        "opens": opens,
        "unique_opens": unique_opens,
        "machine_opens": hits["open", "machine"],
        "unique_machine_opens": messages.get(("open", "machine"), 0),
        "open_rate": rate(unique_opens, sent),
        "clicks": hits["click", "human"],
        "unique_clicks": unique_clicks,
        "bot_clicks": hits["click", "bot"],
        "bot_opens": hits["open", "bot"],
        "click_rate": rate(unique_clicks, sent),
        "filtered": dict(sorted(filtered.items(), key=lambda item: (-item[1], item[0]))),
    }


def shape_filtered(hit_rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """Filtered hits (bot, invalid) by verdict and reason, and machine opens by reason."""
    filtered = []
    machine: Counter[str] = Counter()
    for kind, verdict, reason, n in hit_rows:
        if verdict in ("bot", "invalid"):
            filtered.append({"kind": kind, "verdict": verdict, "reason": reason, "hits": int(n)})
        elif verdict == "machine" and kind == "open":
            machine[reason] += int(n)
    filtered.sort(key=lambda f: (-f["hits"], f["verdict"], f["reason"], f["kind"]))
    return {
        "filtered": filtered,
        "filtered_total": sum(f["hits"] for f in filtered),
        "machine_opens_by_reason": dict(sorted(machine.items(), key=lambda item: (-item[1], item[0]))),
        "machine_opens": sum(machine.values()),
    }


# -- breakdowns and links ------------------------------------------------------------------------------------


def breakdown(db: str, account: str, campaign_id: str, by: Dimension, *, include_machine: bool) -> ExactRead:
    """Distinct hits and messages of a campaign per value of one dimension, by kind."""
    verdicts = "('human', 'machine')" if include_machine else "('human')"
    return ExactRead(
        f"{db}.rollups",
        f"{_SCOPE} AND rollup = {{dimension:String}} AND who IN {verdicts}",
        # Without machine opens `who` is fixed, so each (kind, label, bucket) is one row once merged; with
        # them, the human and machine rows of a key are unioned (a message opened by both counts once).
        keys=("kind", "label", "at", "bucket"),
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id, "dimension": by},
        out=(("value", "label"), ("kind", "kind")),
    )


def shape_breakdown(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows ``{key, opens, unique_opens, clicks, unique_clicks}``, most opens first; ``key`` null: unknown."""
    table: dict[str, dict[str, Any]] = {}
    for value, kind, hits, messages in rows:
        row = table.setdefault(
            value, {"key": value or None, "opens": 0, "unique_opens": 0, "clicks": 0, "unique_clicks": 0}
        )
        if kind == "open":
            row["opens"], row["unique_opens"] = int(hits), int(messages)
        else:
            row["clicks"], row["unique_clicks"] = int(hits), int(messages)
    return sorted(table.values(), key=lambda r: (-r["opens"], -r["clicks"], r["key"] or ""))


_LINKS: Final = f"{_SCOPE} AND rollup = 'url' AND kind = 'click'"


def link_clicks(db: str, account: str, campaign_id: str) -> ExactRead:
    """Clicks per destination URL and verdict: human (counted) and bot (link scanners, bursts)."""
    return ExactRead(
        f"{db}.rollups",
        _LINKS,
        keys=_KEYS,
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("value", "label"), ("verdict", "who")),
    )


def link_indexes(db: str, account: str, campaign_id: str) -> Query:
    """Each clicked URL's link index in the message (the lowest, if messages list it differently)."""
    return Query(
        f"SELECT label, min(link_index) FROM {db}.rollups WHERE {_LINKS} GROUP BY label",
        {"account": account, "campaign_id": campaign_id},
    )


def shape_links(
    rows: Iterable[tuple[Any, ...]], index_rows: Iterable[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Rows ``{link_index, url, clicks, unique_clicks, bot_clicks}``, most clicks first."""
    indexes = {url: int(index) for url, index in index_rows}
    table: dict[str, dict[str, Any]] = {}
    for url, verdict, hits, messages in rows:
        row = table.setdefault(
            url,
            {
                "link_index": indexes.get(url, -1),
                "url": url,
                "clicks": 0,
                "unique_clicks": 0,
                "bot_clicks": 0,
            },
        )
        if verdict == "human":
            row["clicks"], row["unique_clicks"] = int(hits), int(messages)
        elif verdict == "bot":
            row["bot_clicks"] += int(hits)
    return sorted(table.values(), key=lambda r: (-r["clicks"], -r["bot_clicks"], r["link_index"], r["url"]))


# -- time series ---------------------------------------------------------------------------------------------


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
            WHERE {_SCOPE} AND rollup = 'minute' AND who IN ('human', 'machine')""",
        {"account": account, "campaign_id": campaign_id},
    )


def _series_rollup(bucket: Bucket, span: Span) -> str:
    """The rollup a series reads: hours, unless the buckets need minutes (minute buckets, or a zone whose
    offset is not whole hours somewhere in the span, like +05:30)."""
    whole_hours = all((s.utcoffset() or timedelta()).total_seconds() % 3600 == 0 for s in span.starts)
    return "hour" if bucket != "minute" and whole_hours else "minute"


def _series_scope(rollup: str) -> str:
    return (
        f"{_SCOPE} AND rollup = '{rollup}' AND who IN ('human', 'machine') "
        "AND at >= toDateTime({start:Int64}, 'UTC') AND at < toDateTime({stop:Int64}, 'UTC')"
    )


def series_hits(db: str, account: str, campaign_id: str, *, bucket: Bucket, tz: str, span: Span) -> ExactRead:
    """Distinct hits per (bucket start in ``tz``, epoch seconds; kind; verdict)."""
    t = f"toUnixTimestamp({_BUCKET_SQL[bucket]}(toTimeZone(at, {{tz:String}})))"
    return ExactRead(
        f"{db}.rollups",
        _series_scope(_series_rollup(bucket, span)),
        keys=_KEYS,
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


# -- messages ------------------------------------------------------------------------------------------------


def message_timeline(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    """Every counted open and click of a message, oldest first (a hit stored twice is listed once)."""
    return Query(
        f"""SELECT toUnixTimestamp64Milli(received_at), kind, verdict, reason, client, device, os, country,
                   city, via_proxy, link_index, url
            FROM {db}.events
            WHERE {_SCOPE} AND message_id = {{message_id:String}}
            ORDER BY received_at, hit_id LIMIT 1 BY hit_id""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def _at(epoch_ms: int) -> str | None:
    return iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def shape_timeline(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for at, kind, verdict, reason, client, device, os_, country, city, via_proxy, link_index, url in rows:
        click = kind == "click"
        out.append(
            {
                "at": _at(at),
                "kind": kind,
                "verdict": verdict,
                "reason": reason,
                "client": client or None,
                "device": device or None,
                "os": os_ or None,
                "country": country or None,
                "city": city or None,
                "via_proxy": bool(via_proxy),
                "link_index": int(link_index) if click else None,
                "url": url if click else None,
            }
        )
    return out


# -- pagination ----------------------------------------------------------------------------------------------


def encode_cursor(at_ms: int, key: str) -> str:
    """An opaque cursor for keyset pagination: the (time, id) of the last row of a page."""
    return (
        base64.urlsafe_b64encode(json.dumps([at_ms, key], separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_ms, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadQuery("malformed cursor") from exc
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or not isinstance(key, str):
        raise BadQuery("malformed cursor")
    return at_ms, key


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BadQuery(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def campaign_list(db: str, account: str, *, limit: int, cursor: str | None, q: str | None) -> Query:
    """One page of the account's campaigns, newest send first (then by id), plus one row to tell if there is
    a next page. ``q`` matches anywhere in the id, case-insensitively (so a prefix matches too)."""
    parameters: dict[str, Any] = {"account": account, "limit": check_limit(limit) + 1}
    where = "account = {account:String}"
    if q:
        where += " AND positionCaseInsensitiveUTF8(campaign_id, {q:String}) > 0"
        parameters["q"] = q
    having = ""
    if cursor is not None:
        parameters["after_ms"], parameters["after_id"] = decode_cursor(cursor)
        having = (
            "HAVING last_ms < {after_ms:Int64} "
            "OR (last_ms = {after_ms:Int64} AND campaign_id > {after_id:String})"
        )
    return Query(
        f"""SELECT campaign_id, toUnixTimestamp64Milli(min(first_sent_at)) AS first_ms,
                   toUnixTimestamp64Milli(max(last_sent_at)) AS last_ms
            FROM {db}.campaign_catalog WHERE {where}
            GROUP BY campaign_id {having}
            ORDER BY last_ms DESC, campaign_id ASC LIMIT {{limit:UInt32}}""",
        parameters,
    )


def campaigns_counts(db: str, account: str, campaign_ids: Sequence[str]) -> tuple[ExactRead, ExactRead]:
    """Human opens and clicks, and messages sent, of several campaigns."""
    scope = "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)}"
    parameters = {"account": account, "campaign_ids": list(campaign_ids)}
    hits = ExactRead(
        f"{db}.rollups",
        f"{scope} AND rollup = 'hour' AND who = 'human'",
        keys=("campaign_id", *_KEYS),
        sizes=(("hits", "hits"),),
        parameters=parameters,
        out=(("campaign_id", "campaign_id"), ("kind", "kind")),
    )
    messages = ExactRead(
        f"{db}.rollups",
        f"{scope} AND rollup = 'messages' AND kind = 'sent'",
        keys=("campaign_id", *_KEYS),
        sizes=(("messages", "messages"),),
        parameters=parameters,
        out=(("campaign_id", "campaign_id"), ("event", "kind")),
    )
    return hits, messages


def shape_campaign_page(
    page: Sequence[tuple[Any, ...]],
    limit: int,
    hit_rows: Iterable[tuple[Any, ...]],
    message_rows: Iterable[tuple[Any, ...]],
    unregistered_rows: Iterable[tuple[Any, ...]] = (),
) -> dict[str, Any]:
    hits = {(c, k): int(n) for c, k, n in hit_rows}
    messages = {(c, e): int(n) for c, e, n in message_rows}
    for c, n in unregistered_rows:  # `unregistered_messages`: counted as sent
        messages[c, "sent"] = messages.get((c, "sent"), 0) + int(n)
    items = []
    for campaign_id, first_ms, last_ms in page[:limit]:
        items.append(
            {
                "campaign_id": campaign_id,
                "sent": messages.get((campaign_id, "sent"), 0),
                "first_sent_at": _at(first_ms),
                "last_sent_at": _at(last_ms),
                "opens": hits.get((campaign_id, "open"), 0),
                "clicks": hits.get((campaign_id, "click"), 0),
            }
        )
    more = len(page) > limit
    last = page[limit - 1] if more else None
    return {"items": items, "next_cursor": encode_cursor(int(last[2]), last[0]) if last else None}


def message_list(
    db: str,
    account: str,
    *,
    limit: int,
    cursor: str | None,
    campaign_id: str | None,
    recipient: str | None,
    opened: bool | None,
) -> Query:
    """One page of the account's messages, newest send first (then by id), plus one row to tell if there is a
    next page. ``opened``: with (true) or without (false) a human open."""
    parameters: dict[str, Any] = {"account": account, "limit": check_limit(limit) + 1}
    where = ["account = {account:String}"]
    if campaign_id is not None:
        where.append("campaign_id = {campaign_id:String}")
        parameters["campaign_id"] = campaign_id
    if recipient is not None:
        where.append("recipient = {recipient:String}")
        parameters["recipient"] = recipient
    if cursor is not None:
        parameters["after_ms"], parameters["after_id"] = decode_cursor(cursor)
        where.append(
            "(sent_at < fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC') OR (sent_at = "
            "fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC') AND message_id > {after_id:String}))"
        )
    if opened is not None:
        # The openers' hashes from the rollup: a set per bucket instead of every open of the campaign.
        scope = "account = {account:String}" + (
            " AND campaign_id = {campaign_id:String}" if campaign_id is not None else ""
        )
        openers = (
            f"SELECT arrayJoin(messages) FROM {db}.rollups "
            f"WHERE {scope} AND rollup = 'messages' AND kind = 'open' AND who = 'human'"
        )
        where.append(f"cityHash64(message_id) {'IN' if opened else 'NOT IN'} ({openers})")
    # No LIMIT BY: it would sort every send of the campaign. A message registered twice is two rows with the
    # same (sent_at, message_id), next to each other in this order: `shape_message_page` drops the copy, and
    # `_SLACK` extra rows keep the page full.
    parameters["limit"] += _SLACK
    return Query(
        f"""SELECT message_id, campaign_id, recipient, toUnixTimestamp64Milli(sent_at) AS sent_ms
            FROM {db}.sends WHERE {" AND ".join(where)}
            ORDER BY sent_at DESC, message_id ASC LIMIT {{limit:UInt32}}""",
        parameters,
    )


def messages_counts(db: str, account: str, messages: Sequence[tuple[str, str]]) -> Query:
    """Opens, machine opens, clicks and first open of some messages, given as (campaign_id, message_id)."""
    return Query(
        f"""SELECT message_id,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'human') AS opens,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine') AS machine_opens,
              uniqExactIf(hit_id, kind = 'click' AND verdict = 'human') AS clicks,
              toUnixTimestamp64Milli(minIf(received_at, kind = 'open' AND verdict = 'human')) AS first_open_ms
            FROM {db}.events
            WHERE account = {{account:String}}
              AND (campaign_id, message_id) IN {{messages:Array(Tuple(String, String))}}
            GROUP BY message_id""",
        {"account": account, "messages": [tuple(m) for m in messages]},
    )


def distinct_sends(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of `message_list` without a re-registered message's copies (adjacent, same id)."""
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if not out or out[-1][0] != row[0]:
            out.append(row)
    return out


def shape_message_page(
    page: Sequence[tuple[Any, ...]], limit: int, count_rows: Iterable[tuple[Any, ...]]
) -> dict[str, Any]:
    """``page``: `distinct_sends` of `message_list`'s rows."""
    counts = {row[0]: row[1:] for row in count_rows}
    items = []
    for message_id, campaign_id, recipient, sent_ms in page[:limit]:
        opens, machine_opens, clicks, first_open_ms = counts.get(message_id, (0, 0, 0, 0))
        items.append(
            {
                "message_id": message_id,
                "campaign_id": campaign_id,
                "recipient": recipient,
                "sent_at": _at(sent_ms),
                "opens": int(opens),
                "machine_opens": int(machine_opens),
                "clicks": int(clicks),
                "first_open_at": _at(first_open_ms) if opens else None,
            }
        )
    last = page[limit - 1] if len(page) > limit else None
    return {"items": items, "next_cursor": encode_cursor(int(last[3]), last[0]) if last else None}


# -- recipients and best time to send ------------------------------------------------------------------------


def recipient_messages(db: str, account: str, recipient: str, *, limit: int) -> Query:
    """A recipient's messages, newest first (``limit`` + 1 rows, to tell if there are more)."""
    return Query(
        f"""SELECT message_id, campaign_id, toUnixTimestamp64Milli(sent_at) AS sent_ms
            FROM {db}.sends WHERE account = {{account:String}} AND recipient = {{recipient:String}}
            ORDER BY sent_at DESC, message_id ASC LIMIT 1 BY message_id LIMIT {{limit:UInt32}}""",
        {"account": account, "recipient": recipient, "limit": check_limit(limit) + 1},
    )


def recipient_campaigns(db: str, account: str, recipient: str) -> Query:
    """Every campaign a recipient was sent (the audience of the best-time fallback)."""
    return Query(
        f"""SELECT DISTINCT campaign_id FROM {db}.sends
            WHERE account = {{account:String}} AND recipient = {{recipient:String}}""",
        {"account": account, "recipient": recipient},
    )


def recipient_opens(db: str, account: str, recipient: str) -> Query:
    """Every human open of a recipient's messages, newest first, one row per hit: (epoch ms, time zone,
    client, device, os, country, city, message_id)."""
    return Query(
        f"""SELECT toUnixTimestamp64Milli(received_at), time_zone, client, device, os, country, city,
                   message_id
            FROM {db}.events
            WHERE account = {{account:String}} AND kind = 'open' AND verdict = 'human'
              AND (campaign_id, message_id) IN (
                SELECT campaign_id, message_id FROM {db}.sends
                WHERE account = {{account:String}} AND recipient = {{recipient:String}})
            ORDER BY received_at DESC, hit_id LIMIT 1 BY hit_id""",
        {"account": account, "recipient": recipient},
    )


def audience_slots(db: str, account: str, campaign_ids: Sequence[str] | None) -> ExactRead:
    """Human opens per (time zone, UTC quarter hour as epoch seconds) of some campaigns' audience, or of the
    whole account's (``campaign_ids`` None: the rows the view keeps under campaign_id '')."""
    parameters: dict[str, Any] = {"account": account}
    if campaign_ids is None:
        where = "account = {account:String} AND campaign_id = '' AND rollup = 'slot'"
        keys: tuple[str, ...] = _KEYS
    else:
        where = (
            "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)} AND rollup = 'slot'"
        )
        parameters["campaign_ids"] = list(campaign_ids)
        keys = ("campaign_id", *_KEYS)
    return ExactRead(
        f"{db}.rollups",
        where,
        keys=keys,
        sizes=(("opens", "hits"),),
        parameters=parameters,
        out=(("time_zone", "label"), ("slot", "toUnixTimestamp(at)")),
    )


@dataclass(frozen=True, slots=True)
class BestTime:
    """When an audience opens: the modal hour and weekday in local time, and the histograms behind them."""

    basis: str  # "recipient" | "campaign" | "campaigns" | "account" | "none"
    hour: int | None
    weekday: str | None
    timezone: str | None  # the recipient's zone; None for an audience (each reader's own zone)
    sample_size: int
    hours: tuple[int, ...]
    weekdays: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "hour": self.hour,
            "weekday": self.weekday,
            "timezone": self.timezone,
            "sample_size": self.sample_size,
            "by_hour": list(self.hours),
            "by_weekday": dict(zip(WEEKDAYS, self.weekdays, strict=True)),
        }


NO_BEST_TIME: Final = BestTime("none", None, None, None, 0, (0,) * 24, (0,) * 7)


def _mode(histogram: Sequence[int]) -> int:
    # Ties go to the earliest hour or weekday, so the answer is stable.
    return max(range(len(histogram)), key=lambda i: (histogram[i], -i))


def best_time(local_times: Iterable[tuple[datetime, int]], basis: str, timezone: str | None) -> BestTime:
    """Mode of the hour of day and of the weekday over ``(local time, weight)``; `NO_BEST_TIME`'s basis "none"
    is for the caller to pick when no level reaches `MIN_SAMPLE`."""
    hours = [0] * 24
    weekdays = [0] * 7
    for at, weight in local_times:
        hours[at.hour] += weight
        weekdays[at.weekday()] += weight
    sample = sum(hours)
    if not sample:
        return BestTime(basis, None, None, timezone, 0, tuple(hours), tuple(weekdays))
    return BestTime(
        basis, _mode(hours), WEEKDAYS[_mode(weekdays)], timezone, sample, tuple(hours), tuple(weekdays)
    )


def recipient_best_time(opens: Sequence[tuple[int, str]]) -> BestTime:
    """A recipient's best time from their human opens ``(epoch ms, GeoIP time zone)``: every open in the
    recipient's zone (the mode over opens that have one; proxy opens carry none but are the same person)."""
    zones = Counter(tz for _, tz in opens if tz)
    if not zones:
        return best_time((), "recipient", None)
    name = min(zones, key=lambda z: (-zones[z], z))
    tz = ZoneInfo(name)
    return best_time(((datetime.fromtimestamp(ms / 1000, tz), 1) for ms, _ in opens), "recipient", name)


def audience_best_time(rows: Iterable[tuple[Any, ...]], basis: str) -> BestTime:
    """An audience's best time from ``(time zone, UTC slot epoch seconds, opens)``: each open in its reader's
    own zone. Unknown zone names (a GeoIP database newer than tzdata) are skipped."""

    def local() -> Iterable[tuple[datetime, int]]:
        zones: dict[str, ZoneInfo | None] = {}
        for name, slot, opens in rows:
            if name not in zones:
                try:
                    zones[name] = ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    zones[name] = None
            tz = zones[name]
            if tz is not None:
                yield datetime.fromtimestamp(int(slot), tz), int(opens)

    return best_time(local(), basis, None)


def first_sufficient(*candidates: BestTime) -> BestTime:
    """The first level with at least `MIN_SAMPLE` opens, else "none"."""
    for candidate in candidates:
        if candidate.sample_size >= MIN_SAMPLE:
            return candidate
    return NO_BEST_TIME


def shape_recipient(
    recipient: str,
    *,
    message_rows: Sequence[tuple[Any, ...]],
    limit: int,
    open_rows: Sequence[tuple[Any, ...]],
    count_rows: Iterable[tuple[Any, ...]],
    history: int,
    best: BestTime,
) -> dict[str, Any]:
    counts = {row[0]: row[1:] for row in count_rows}
    messages = []
    for message_id, campaign_id, sent_ms in message_rows[:limit]:
        opens, _, clicks, first_open_ms = counts.get(message_id, (0, 0, 0, 0))
        messages.append(
            {
                "message_id": message_id,
                "campaign_id": campaign_id,
                "sent_at": _at(sent_ms),
                "opens": int(opens),
                "clicks": int(clicks),
                "first_open_at": _at(first_open_ms) if opens else None,
            }
        )
    return {
        "recipient": recipient,
        "messages": messages,
        "more_messages": len(message_rows) > limit,
        "opens": len(open_rows),
        "open_history": [
            {
                "at": _at(at),
                "message_id": message_id,
                "client": client or None,
                "device": device or None,
                "os": os_ or None,
                "country": country or None,
                "city": city or None,
                "time_zone": tz or None,
            }
            for at, tz, client, device, os_, country, city, message_id in open_rows[:history]
        ],
        "best_time_to_send": best.as_dict(),
    }


# -- retention and erasure of the rollups --------------------------------------------------------------------


def rollup_retention(db: str, *, events_days: int, filtered_days: int) -> list[str]:
    """The TTL statement that keeps the rollups in step with `Store.apply_retention`'s retention."""
    events, filtered = int(events_days), int(filtered_days)
    return [
        f"ALTER TABLE {db}.rollups MODIFY TTL last_at + INTERVAL {filtered} DAY DELETE "
        f"WHERE who IN ('bot', 'invalid'), last_at + INTERVAL {events} DAY "
        "SETTINGS materialize_ttl_after_modify = 0"
    ]


def rollup_erasure(db: str) -> list[str]:
    """The statement that removes an erased recipient's hits and messages from the rollups. Parameters:
    ``account``; ``campaigns``, ``messages`` and ``hits`` (Array(String)): the hit ids read from events and
    filtered_hits *before* they are deleted. A mutation: rare, and slow only for the campaigns concerned; it
    returns once done, so the API confirms an erasure only when it is."""
    hits = "arrayMap(x -> cityHash64(x), {hits:Array(String)})"
    messages = "arrayMap(x -> cityHash64(x), {messages:Array(String)})"
    return [
        f"ALTER TABLE {db}.rollups UPDATE hits = arrayFilter(h -> NOT has({hits}, h), hits), "
        f"messages = arrayFilter(m -> NOT has({messages}, m), messages) "
        "WHERE account = {account:String} AND (campaign_id IN {campaigns:Array(String)} OR campaign_id = '') "
        "SETTINGS mutations_sync = 2"
    ]
