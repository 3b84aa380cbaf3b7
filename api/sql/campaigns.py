"""A campaign's stats and the account's list of campaigns, read from the rollups of
``schemas/ddl/0002_rollups.sql`` (exactly: `api.sql.exact`): whether a campaign is known, its summary (sent,
opens, unique opens, machine opens, clicks, rates, filtered hits), the messages counted as sent without a send
(`unregistered_messages`), and one page of campaigns. Pure; every query is scoped by ``{account:String}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from api.sql import filtered, pages
from api.sql.common import CAMPAIGN_SCOPE, Query, iso_ms, rate
from api.sql.exact import ROLLUP_KEYS, ExactRead


def campaign_known(db: str, account: str, campaign_id: str) -> Query:
    """One row if the campaign has a send or any hit for this account."""
    return Query(
        f"""SELECT 1 FROM {db}.campaign_catalog WHERE {CAMPAIGN_SCOPE}
            UNION ALL SELECT 1 FROM {db}.rollups WHERE {CAMPAIGN_SCOPE} AND rollup = 'hour' LIMIT 1""",
        {"account": account, "campaign_id": campaign_id},
    )


def campaign_hits(db: str, account: str, campaign_id: str) -> ExactRead:
    """Distinct hits of a campaign by (kind, verdict, reason): counted and filtered alike."""
    return ExactRead(
        f"{db}.rollups",
        f"{CAMPAIGN_SCOPE} AND rollup = 'hour'",
        keys=ROLLUP_KEYS,
        sizes=(("hits", "hits"),),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("kind", "kind"), ("verdict", "who"), ("reason", "label")),
    )


def campaign_messages(db: str, account: str, campaign_id: str, *, include_machine: bool = False) -> ExactRead:
    """Distinct messages of a campaign by (event, who): 'sent' (who ''), opened and clicked per verdict, and,
    for the machine-open switch, opened by anyone ('open', 'any': people or machines)."""
    scope = f"{CAMPAIGN_SCOPE} AND rollup = 'messages'"
    return ExactRead(
        f"{db}.rollups",
        scope if include_machine else f"{scope} AND who != 'any'",
        keys=ROLLUP_KEYS,
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
        f"{CAMPAIGN_SCOPE} AND (`rollup` = 'hour' OR ({messages}))",
        keys=("`rollup`", *ROLLUP_KEYS),
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("r", "`rollup`"), ("kind", "kind"), ("verdict", "who"), ("reason", "label")),
    )


def campaign_parts(db: str, account: str, campaign_id: str) -> Query:
    """A signature of the data parts holding the campaign's rollup rows: the sum of a hash of each row's part
    name, and the number of rows (`api.campaign_reads`). Reads the key columns of the campaign's range
    only. Read time's numbers (`api.sql.reads`, from ``reads``) are covered too: every insert into ``reads``
    writes a ``reads`` row into the rollups (``0013_reads_rollup.sql``), and an erasure rewrites the
    rollups' parts."""
    return Query(
        f"SELECT sum(cityHash64(_part)), count() FROM {db}.rollups WHERE {CAMPAIGN_SCOPE}",
        {"account": account, "campaign_id": campaign_id},
    )


def campaigns_parts(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """`campaign_parts` of several campaigns in one query: rows ``(campaign_id, signature, rows)`` for those
    with rollup rows."""
    return Query(
        f"""SELECT campaign_id, sum(cityHash64(_part)), count() FROM {db}.rollups
            WHERE account = {{account:String}} AND campaign_id IN {{campaign_ids:Array(String)}}
            GROUP BY campaign_id""",
        {"account": account, "campaign_ids": list(campaign_ids)},
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
    hit_rows = list(hit_rows)
    hits: Counter[tuple[str, str]] = Counter()
    for kind, verdict, _, n in hit_rows:
        hits[kind, verdict] += int(n)
    dropped = filtered.tally(hit_rows)
    messages = {(event, verdict): int(n) for event, verdict, n in message_rows}
    sent = messages.get(("sent", ""), 0) + unregistered
    # Sends without individual tracking (0010: those outside the 'individual' set) have no pixel or tracked
    # link of their own: the rates are over the others. Answered (`tracked_sends`, `rate_basis`) only where
    # a campaign has some, so a campaign without is answered as before. A message with hits but no send was
    # tracked (its hits came through its pixel or links).
    tracked = messages.get(("sent", "individual"), 0) + unregistered
    untracked = sent - tracked
    opens, unique_opens = hits["open", "human"], messages.get(("open", "human"), 0)
    if include_machine:
        opens, unique_opens = opens + hits["open", "machine"], messages.get(("open", "any"), 0)
    unique_clicks = messages.get(("click", "human"), 0)
    summary = {
        "campaign_id": campaign_id,
        "include_machine": include_machine,
        "sent": sent,
        "opens": opens,
        "unique_opens": unique_opens,
        "machine_opens": hits["open", "machine"],
        "unique_machine_opens": messages.get(("open", "machine"), 0),
        "open_rate": rate(unique_opens, tracked),
        "clicks": hits["click", "human"],
        "unique_clicks": unique_clicks,
        "bot_clicks": dropped.bot_clicks,
        "bot_opens": dropped.bot_opens,
        "click_rate": rate(unique_clicks, tracked),
        "filtered": dropped.by_reason,
    }
    if untracked:
        summary.update(tracked_sends=tracked, rate_basis="tracked_sends")
    return summary


def campaign_list(db: str, account: str, *, limit: int, cursor: str | None, q: str | None) -> Query:
    """One page of the account's campaigns, newest send first (then by id), plus one row to tell if there is
    a next page. ``q`` matches anywhere in the id, case-insensitively (so a prefix matches too)."""
    parameters: dict[str, Any] = {"account": account, "limit": pages.check_limit(limit) + 1}
    where = "account = {account:String}"
    if q:
        where += " AND positionCaseInsensitiveUTF8(campaign_id, {q:String}) > 0"
        parameters["q"] = q
    having = ""
    if cursor is not None:
        parameters["after_ms"], parameters["after_id"] = pages.decode_cursor(cursor)
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
    """Human opens and clicks per UTC day (rows ``(campaign, kind, day, hits)``), and messages sent, opened
    and clicked by people (`shape_summary`'s sent, unique opens and unique clicks), of several campaigns."""
    scope = "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)}"
    parameters = {"account": account, "campaign_ids": list(campaign_ids)}
    hits = ExactRead(
        f"{db}.rollups",
        f"{scope} AND rollup = 'hour' AND who = 'human'",
        keys=("campaign_id", *ROLLUP_KEYS),
        sizes=(("hits", "hits"),),
        parameters=parameters,
        out=(("campaign_id", "campaign_id"), ("kind", "kind"), ("day", "toDate(at)")),
    )
    messages = ExactRead(
        f"{db}.rollups",
        f"{scope} AND rollup = 'messages' "
        # sent: all ('') and those tracked individually (0010's 'individual' rows, the rates' basis)
        "AND ((kind = 'sent' AND who IN ('', 'individual')) "
        "OR (kind IN ('open', 'click') AND who = 'human'))",
        keys=("campaign_id", *ROLLUP_KEYS),
        sizes=(("messages", "messages"),),
        parameters=parameters,
        out=(("campaign_id", "campaign_id"), ("event", "kind"), ("who", "who")),
    )
    return hits, messages


def _every_day(opens: dict[date, int]) -> list[dict[str, Any]]:
    """``{day, opens}`` for each UTC day from the first with an open to the last, days without one as 0."""
    if not opens:
        return []
    day, last = min(opens), max(opens)
    days = []
    while day <= last:
        days.append({"day": day.isoformat(), "opens": opens.get(day, 0)})
        day += timedelta(days=1)
    return days


def shape_campaign_page(
    page: Sequence[tuple[Any, ...]],
    limit: int,
    hit_rows: Iterable[tuple[Any, ...]],
    message_rows: Iterable[tuple[Any, ...]],
    unregistered_rows: Iterable[tuple[Any, ...]] = (),
) -> dict[str, Any]:
    hits: Counter[tuple[str, str]] = Counter()
    opens_by_day: dict[str, dict[date, int]] = {}
    for c, k, day, n in hit_rows:
        hits[c, k] += int(n)
        if k == "open":
            opens_by_day.setdefault(c, {})[day] = int(n)
    messages = {(c, e, who): int(n) for c, e, who, n in message_rows}
    unregistered = {c: int(n) for c, n in unregistered_rows}  # `unregistered_messages`: counted as sent
    items = []
    for campaign_id, first_ms, last_ms in page[:limit]:
        # As `shape_summary` counts them: the rates over the sends tracked individually.
        sent = messages.get((campaign_id, "sent", ""), 0) + unregistered.get(campaign_id, 0)
        tracked = messages.get((campaign_id, "sent", "individual"), 0) + unregistered.get(campaign_id, 0)
        unique_opens = messages.get((campaign_id, "open", "human"), 0)
        unique_clicks = messages.get((campaign_id, "click", "human"), 0)
        item = {
            "campaign_id": campaign_id,
            "sent": sent,
            "first_sent_at": iso_ms(first_ms),
            "last_sent_at": iso_ms(last_ms),
            "opens": hits.get((campaign_id, "open"), 0),
            "clicks": hits.get((campaign_id, "click"), 0),
            # As the campaign's summary says them; over delivered mail where it has delivery data
            # (`api.sql.deliveries.with_campaign_deliveries`).
            "unique_opens": unique_opens,
            "open_rate": rate(unique_opens, tracked),
            "unique_clicks": unique_clicks,
            "click_rate": rate(unique_clicks, tracked),
            "opens_by_day": _every_day(opens_by_day.get(campaign_id, {})),
        }
        if tracked != sent:  # sends without individual tracking (issue 19), as the summary answers them
            item["tracked_sends"] = tracked
        items.append(item)
    more = len(page) > limit
    last = page[limit - 1] if more else None
    return {"items": items, "next_cursor": pages.encode_cursor(int(last[2]), last[0]) if last else None}
