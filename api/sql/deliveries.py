"""What the API reads of the mail services' delivery events (``schemas/ddl/0007_deliveries.sql``): the status
a message is counted under, the delivery numbers of campaigns (from the rollups, exact), a message's delivery
events (its detail and timeline) and a recipient's last one. Pure: SQL builders and shapers.

One rule decides a message's delivery status, for a campaign's numbers and a message's answer alike (`RULES`,
evaluated in SQL by `status_sql` and in Python by `status_of`; the unit tests hold the two equal). A message
is described by the set of what happened to it (`Flag`), not by the order of its events, since providers
report out of order and retry: the first rule that matches wins.

- ``delivered``: a ``delivered`` event without a hard bounce (a server that accepted the mail and then bounced
  it did not deliver it), or any proof that a reader had it: a counted open or click (people or machines: a
  machine open is a mail system fetching the mail it holds), a complaint or an unsubscribe. Proof wins over a
  bounce; a soft bounce, a deferral or a drop followed by a delivery counts as delivered.
- ``bounced`` hard: a hard bounce (and no proof). ``bounced`` soft: a soft bounce (a bounce of no known type
  counts as soft), no hard bounce, not delivered.
- ``dropped``: the service refused to send it (and nothing above). ``deferred``: only deferrals so far.

Campaign numbers count messages, not events: the rollups keep, per event, the set of hashes of the messages
it happened to, so a replayed event (the same ``delivery_id`` twice) or a message bounced twice counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntFlag
from typing import Any, Final

from api.sql.common import CAMPAIGN_SCOPE, Query, bucket_parts, iso, iso_ms, only_buckets, rate
from api.sql.exact import ROLLUP_KEYS, ExactRead


class Flag(IntFlag):
    """What happened to one message (bits of the per-message ``groupBitOr`` in `campaigns_delivery`)."""

    READ = 1  # a counted open or click
    DELIVERED = 2
    HARD = 4  # a hard bounce
    SOFT = 8  # a bounce not known to be hard
    DROPPED = 16
    DEFERRED = 32
    COMPLAINT = 64
    UNSUBSCRIBE = 128
    SENT = 256  # registered (a send): no part of a status; a message without it counts as sent all the same
    TRACKED = 512  # sent with individual tracking (issue 19, 0010): the rates' denominator


# (status, tests): the first status any of whose tests holds; a test (mask, want) holds when f & mask == want.
RULES: Final[tuple[tuple[str, tuple[tuple[int, int], ...]], ...]] = (
    (
        "delivered",
        (
            (Flag.READ, Flag.READ),
            (Flag.COMPLAINT, Flag.COMPLAINT),
            (Flag.UNSUBSCRIBE, Flag.UNSUBSCRIBE),
            (Flag.DELIVERED | Flag.HARD, Flag.DELIVERED),
        ),
    ),
    ("hard", ((Flag.HARD, Flag.HARD),)),
    ("soft", ((Flag.SOFT, Flag.SOFT),)),
    ("dropped", ((Flag.DROPPED, Flag.DROPPED),)),
    ("deferred", ((Flag.DEFERRED, Flag.DEFERRED),)),
)


def status_of(flags: int) -> str | None:
    """The status of a message with these flags (None: nothing known), by `RULES`."""
    for status, tests in RULES:
        if any(flags & mask == want for mask, want in tests):
            return status
    return None


def status_sql(flags: str) -> str:
    """`status_of` as a ClickHouse expression over the column ``flags`` ('' for nothing known)."""
    branches = ", ".join(
        f"{' OR '.join(f'bitAnd({flags}, {int(m)}) = {int(w)}' for m, w in tests)}, '{status}'"
        for status, tests in RULES
    )
    return f"multiIf({branches}, '')"


def event_flag(event: str, bounce_type: str) -> Flag:
    """The flag of one delivery event (`schemas.delivery_events.DeliveryKind`)."""
    if event == "bounce":
        return Flag.HARD if bounce_type == "hard" else Flag.SOFT
    return _EVENT_FLAGS.get(event, Flag(0))


_EVENT_FLAGS: Final = {
    "delivered": Flag.DELIVERED,
    "dropped": Flag.DROPPED,
    "deferred": Flag.DEFERRED,
    "complaint": Flag.COMPLAINT,
    "unsubscribe": Flag.UNSUBSCRIBE,
}


def flag_sql(event: str, bounce_type: str, read: str, sent: str = "false", tracked: str = "false") -> str:
    """`event_flag` as a ClickHouse expression (UInt16) over the columns ``event`` and ``bounce_type``;
    ``read``: the condition of a row that is a counted open or click, ``sent``: of a row that is a send,
    ``tracked``: of a row that is a send tracked individually (checked first)."""
    events = ", ".join(f"{event} = '{name}', {int(flag)}" for name, flag in _EVENT_FLAGS.items())
    hard, soft = int(Flag.HARD), int(Flag.SOFT)
    return (
        f"toUInt16(multiIf({tracked}, {int(Flag.SENT | Flag.TRACKED)}, {sent}, {int(Flag.SENT)}, "
        f"{read}, {int(Flag.READ)}, "
        f"{event} = 'bounce', if({bounce_type} = 'hard', {hard}, {soft}), {events}, 0))"
    )


# A campaign's delivery numbers, in `campaigns_delivery`'s column order.
COUNTS: Final = (
    "delivered", "delivered_inferred", "hard", "soft", "dropped", "deferred", "complaints", "unsubscribes",
    "unregistered",  # messages with an event or a hit but no send: counted as sent (`api.sql.campaigns`)
    "delivered_tracked",  # delivered and tracked individually (issue 19): the open and click rates' basis
)  # fmt: skip


# A rollup row's flag: its kind, who = the event, label = the bounce type (0007).
_ROLLUP_FLAG: Final = flag_sql(
    "who", "label", "kind IN ('open', 'click')", "kind = 'sent'", "kind = 'sent' AND who = 'individual'"
)
STATUS_COUNTS: Final = f"""countIf(s = 'delivered') AS delivered,
    countIf(s = 'delivered' AND bitAnd(f, {int(Flag.DELIVERED)}) = 0) AS delivered_inferred,
    countIf(s = 'hard'), countIf(s = 'soft'), countIf(s = 'dropped'), countIf(s = 'deferred'),
    countIf(bitAnd(f, {int(Flag.COMPLAINT)}) != 0), countIf(bitAnd(f, {int(Flag.UNSUBSCRIBE)}) != 0),
    countIf(bitAnd(f, {int(Flag.SENT)}) = 0) AS unregistered"""
"""`COUNTS` but the last over rows ``(f: the flags of one message, s: its status)`` (`status_sql`)."""
# `COUNTS`' last: delivered and tracked individually (or with hits but no send: they were), from the rollups'
# 'individual' sends (0010); the raw reference (`api.sql.reference`) has no such rows.
TRACKED_COUNT: Final = f"""countIf(s = 'delivered'
    AND (bitAnd(f, {int(Flag.TRACKED)}) != 0 OR bitAnd(f, {int(Flag.SENT)}) = 0)) AS delivered_tracked"""


def campaigns_with_deliveries(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Which of these campaigns have any matched delivery event (their hour rollups: a few rows each)."""
    return Query(
        f"""SELECT DISTINCT campaign_id FROM {db}.rollups
            WHERE account = {{account:String}} AND campaign_id IN {{campaign_ids:Array(String)}}
              AND `rollup` = 'hour' AND kind = 'delivery'""",
        {"account": account, "campaign_ids": list(campaign_ids)},
    )


# The rollup rows a campaign's delivery numbers are read from: its sends, delivery events, clicks and opens
# (the `any` rows: every opened message, people or machines).
_STATUS_ROWS: Final = (
    "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)} AND `rollup` = 'messages' "
    "AND (kind IN ('sent', 'delivery', 'click') OR (kind = 'open' AND who = 'any'))"
)


def delivery_parts(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Per campaign and bucket of message hashes, a signature of the data parts that hold its rows
    (`api.sql.common.bucket_parts`): a bucket with the same signature holds the same sets, so its counts
    need not be read again (`api.delivery_numbers`)."""
    return bucket_parts(db, _STATUS_ROWS, account, campaign_ids)


def campaigns_delivery(
    db: str, account: str, campaign_ids: Sequence[str], buckets: Sequence[int] | None = None
) -> Query:
    """Per campaign and bucket of message hashes, its messages by status (`COUNTS`), from the rollups'
    message sets: every message sent or with a delivery event or a counted open or click, once, with the
    flags of all its rows (``groupBitOr``: set union, so a replay or a second bounce changes nothing).
    ``delivered_inferred``: delivered without a ``delivered`` event. ``buckets``: only these (None: all).
    Rows ``(campaign_id, bucket, *COUNTS)``; a message's bucket is its hash % 4096, as the rollups'."""
    parameters: dict[str, Any] = {"account": account, "campaign_ids": list(campaign_ids)}
    only = only_buckets(parameters, buckets)
    return Query(
        f"""SELECT campaign_id, b, {STATUS_COUNTS}, {TRACKED_COUNT}
            FROM (
              SELECT campaign_id, b, m, groupBitOr(flag) AS f, {status_sql("f")} AS s
              FROM (
                SELECT campaign_id, bucket AS b, arrayJoin(messages) AS m, {_ROLLUP_FLAG} AS flag
                FROM {db}.rollups WHERE {_STATUS_ROWS}{only})
              GROUP BY campaign_id, b, m)
            GROUP BY campaign_id, b""",
        parameters,
    )


def shape_delivery(row: Sequence[Any] | None, *, sent: int) -> dict[str, Any]:
    """A campaign's delivery numbers and rates from its `campaigns_delivery` row (without the campaign id);
    None: the campaign has no delivery data, so every number is null and open and click rates stay over
    sent (`rate_basis`)."""
    if row is None:
        nothing: dict[str, Any] = dict.fromkeys(
            ("delivered", "deferred", "bounced", "bounces", "dropped", "complaints", "unsubscribes")
        )
        return {
            "delivery_data": False,
            **nothing,
            "delivered_inferred": None,
            "delivery_rate": None,
            "bounce_rate": None,
            "complaint_rate": None,
            "rate_basis": "sent",
        }
    n = dict(zip(COUNTS, (int(v) for v in row), strict=True))
    bounced = n["hard"] + n["soft"]
    return {
        "delivery_data": True,
        "delivered": n["delivered"],
        "deferred": n["deferred"],
        "bounced": bounced,
        "bounces": {"hard": n["hard"], "soft": n["soft"]},
        "dropped": n["dropped"],
        "complaints": n["complaints"],
        "unsubscribes": n["unsubscribes"],
        "delivered_inferred": n["delivered_inferred"],
        "delivery_rate": rate(n["delivered"], sent),
        "bounce_rate": rate(bounced, sent),
        "complaint_rate": rate(n["complaints"], n["delivered"]),
        "rate_basis": "delivered",
    }


def with_deliveries(summary: dict[str, Any], row: Sequence[Any] | None) -> dict[str, Any]:
    """A campaign summary (`api.sql.campaigns.shape_summary`) with its delivery numbers; with delivery data,
    open and click rates over delivered mail (`rate_basis`). Every open and click proves delivery, so the
    rates stay at most 1. A campaign with sends not tracked individually (``tracked_sends`` in the summary)
    has its rates over those tracked: ``rate_basis`` ``tracked_sends``, or with delivery data
    ``tracked_delivered`` (delivered and tracked individually, also answered)."""
    delivery = shape_delivery(row, sent=summary["sent"])
    out = {**summary, **delivery}
    untracked = summary.get("tracked_sends", summary["sent"]) != summary["sent"]
    if untracked:  # sends without individual tracking (issue 19): the rates are over the others
        out["rate_basis"] = "tracked_sends"
    if row is not None:
        basis = delivery["delivered"]
        if untracked:
            basis = out["tracked_delivered"] = int(row[COUNTS.index("delivered_tracked")])
            out["rate_basis"] = "tracked_delivered"
        out["open_rate"] = rate(summary["unique_opens"], basis)
        out["click_rate"] = rate(summary["unique_clicks"], basis)
    return out


def with_campaign_deliveries(page: dict[str, Any], rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """A page of the campaign list (`api.sql.campaigns.shape_campaign_page`) with each campaign's
    ``delivered``, ``bounced`` and ``delivery_rate`` (null without delivery data), from `campaigns_delivery`
    rows of its campaigns that have some; their open and click rates over delivered mail, as `with_deliveries`
    gives them in the summary."""
    by_campaign = {row[0]: row[1:] for row in rows}
    items = []
    for item in page["items"]:
        row = by_campaign.get(item["campaign_id"])
        delivery = shape_delivery(row, sent=item["sent"])
        listed = {**item, **{k: delivery[k] for k in ("delivered", "bounced", "delivery_rate")}}
        if row is not None:  # `with_deliveries`' basis: delivered, or delivered and tracked individually
            basis = delivery["delivered"]
            if item.get("tracked_sends", item["sent"]) != item["sent"]:
                basis = int(row[COUNTS.index("delivered_tracked")])
            listed["open_rate"] = rate(item["unique_opens"], basis)
            listed["click_rate"] = rate(item["unique_clicks"], basis)
        items.append(listed)
    return {**page, "items": items}


# The columns of an hour of `shape_delivery_series`: the event, bounces by type.
SERIES_EVENTS: Final = (
    "delivered", "deferred", "bounce_hard", "bounce_soft", "dropped", "complaint", "unsubscribe",
)  # fmt: skip


def delivery_series(db: str, account: str, campaign_id: str) -> ExactRead:
    """Distinct delivery events (by delivery id: a replay counts once) and their messages per hour in which
    they happened, by event and bounce type, from the hour rollups (0007)."""
    return ExactRead(
        f"{db}.rollups",
        f"{CAMPAIGN_SCOPE} AND `rollup` = 'hour' AND kind = 'delivery'",
        keys=ROLLUP_KEYS,
        sizes=(("events", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("at", "at"), ("event", "who"), ("bounce_type", "label")),
    )


def shape_delivery_series(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """One row per hour with a delivery event, oldest first: ``t`` and the events of each kind
    (`SERIES_EVENTS`)."""
    hours: dict[Any, dict[str, Any]] = {}
    for at, event, bounce_type, events, _ in rows:
        hour = hours.setdefault(at, {"t": iso(at), **dict.fromkeys(SERIES_EVENTS, 0)})
        key = f"bounce_{bounce_type or 'soft'}" if event == "bounce" else event
        if key in hour:
            hour[key] += int(events)
    return [hours[at] for at in sorted(hours)]


def message_deliveries(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    """A message's delivery events, oldest first (a replayed event listed once)."""
    return Query(
        f"""SELECT toUnixTimestamp64Milli(occurred_at), event, bounce_type, provider, smtp_status, smtp_code,
                   diagnostic, provider_type
            FROM {db}.deliveries
            WHERE {CAMPAIGN_SCOPE} AND message_id = {{message_id:String}}
            ORDER BY occurred_at, delivery_id LIMIT 1 BY delivery_id""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def shape_event(row: Sequence[Any]) -> dict[str, Any]:
    """One delivery event as answered (timeline, message, recipient)."""
    at, event, bounce_type, provider, smtp_status, smtp_code, diagnostic, provider_type = row
    return {
        "at": iso_ms(at),
        "kind": "delivery",
        "event": event,
        "bounce_type": bounce_type or None,
        "provider": provider,
        "provider_type": provider_type or None,
        "smtp_status": smtp_status or None,
        "smtp_code": int(smtp_code) or None,
        "diagnostic": diagnostic or None,
    }


def merge_timeline(hits: Sequence[dict[str, Any]], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """A message's timeline (`api.sql.messages.shape_timeline`, oldest first) with its delivery events
    (`message_deliveries` rows) among them, by time; at the same millisecond the delivery event first. An
    open may come before its ``delivered`` (providers report late): the order is the order they happened."""
    events = [shape_event(row) for row in rows]
    # ISO times in UTC with milliseconds sort as they read; stable, so each list keeps its own order.
    merged = sorted(
        [
            *((e["at"] or "", 0, i) for i, e in enumerate(events)),
            *((h["at"] or "", 1, i) for i, h in enumerate(hits)),
        ]
    )
    return [events[i] if source == 0 else hits[i] for _, source, i in merged]


def message_status(rows: Iterable[Sequence[Any]], *, read: bool) -> dict[str, Any]:
    """``delivery_status`` (`RULES`: delivered, hard, soft, dropped, deferred or None) and ``last_delivery``
    (the latest event) of a message from its `message_deliveries` rows; ``read``: it has a counted open or
    click (delivered even with no delivery event)."""
    rows = list(rows)
    flags = Flag.READ if read else Flag(0)
    for row in rows:
        flags |= event_flag(row[1], row[2])
    status = status_of(flags)
    return {
        "delivery_status": {"hard": "bounced", "soft": "bounced"}.get(status or "", status),
        "bounce_type": status if status in ("hard", "soft") else None,
        "last_delivery": shape_event(rows[-1]) if rows else None,
    }


def recipient_deliveries(db: str, account: str, recipient: str) -> Query:
    """Per event and bounce type, how many of a recipient's messages had it and the latest such event: (event,
    bounce_type, messages, latest row as `message_deliveries` gives it). Found by the address the provider
    reported (canonical, as the loader stores it) or by the recipient's messages."""
    return Query(
        f"""SELECT event, bounce_type, uniqExact(message_id),
                   argMax((toUnixTimestamp64Milli(occurred_at), event, bounce_type, provider, smtp_status,
                           smtp_code, diagnostic, provider_type), (occurred_at, delivery_id))
            FROM {db}.deliveries
            WHERE account = {{account:String}} AND (recipient = {{recipient:String}} OR message_id IN (
                SELECT message_id FROM {db}.sends
                WHERE account = {{account:String}} AND recipient = {{recipient:String}}))
            GROUP BY event, bounce_type""",
        {"account": account, "recipient": recipient},
    )


def shape_recipient_deliveries(rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """A recipient's ``last_delivery`` (their latest delivery event), ``hard_bounced`` and ``complained``
    (any of their messages, ever), and the number of their messages per event."""
    rows = list(rows)
    latest = max((row[3] for row in rows), key=lambda r: r[0], default=None)
    events: dict[str, int] = {}
    for event, bounce_type, n, _ in rows:
        key = f"bounce_{bounce_type or 'soft'}" if event == "bounce" else event
        events[key] = events.get(key, 0) + int(n)
    return {
        "last_delivery": shape_event(latest) if latest is not None else None,
        "hard_bounced": any(row[0] == "bounce" and row[1] == "hard" for row in rows),
        "complained": any(row[0] == "complaint" for row in rows),
        "delivery_events": dict(sorted(events.items())),
    }
