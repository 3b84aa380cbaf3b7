"""A message's SQL and answers: its send (or, once the retention dropped the send, its hits), its counts and
filtered hits (`api.sql.filtered`), its timeline, the sends of a batch being registered, and one page of the
account's messages. Message answers read ``events``, ``filtered_hits`` and ``sends`` by their indexes, not the
rollups. Pure.

Every query starts from ``account`` (and ``campaign_id`` where known): the tables are ordered by that prefix,
so ClickHouse reads only the granules of one account's campaign. Counts are ``uniqExact(hit_id)``: a hit
stored twice (a replay) still counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from api.sql import pages
from api.sql.common import CAMPAIGN_SCOPE, Query, iso, iso_ms
from api.sql.filtered import Filtered
from api.sql.reads import open_read

_SLACK: Final = 16  # extra rows a message page reads, for copies of re-registered messages


def send_of_message(db: str, account: str, message_id: str) -> Query:
    return Query(
        f"""SELECT campaign_id, recipient, sent_at, links, provider_message_id
            FROM {db}.sends
            WHERE account = {{account:String}} AND message_id = {{message_id:String}}
            ORDER BY registered_at DESC LIMIT 1""",
        {"account": account, "message_id": message_id},
    )


def message_of_hits(db: str, account: str, message_id: str) -> Query:
    """A message known only by its counted hits (its send expired before them): (campaign_id, sent_at)."""
    return Query(
        f"""SELECT campaign_id, min(sent_at) FROM {db}.events
            WHERE account = {{account:String}} AND message_id = {{message_id:String}}
            GROUP BY campaign_id ORDER BY campaign_id LIMIT 1""",
        {"account": account, "message_id": message_id},
    )


def sends_of_messages(db: str, account: str, message_ids: Sequence[str]) -> Query:
    """What `send_of_message` answers, for many messages in one query: one row per registered id."""
    return Query(
        f"""SELECT message_id, argMax((campaign_id, recipient, sent_at), registered_at)
            FROM {db}.sends
            WHERE account = {{account:String}} AND message_id IN {{message_ids:Array(String)}}
            GROUP BY message_id""",
        {"account": account, "message_ids": list(message_ids)},
    )


def message_counts(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    return Query(
        f"""SELECT
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'human') AS opens,
              uniqExactIf(hit_id, kind = 'open' AND verdict = 'machine') AS machine_opens,
              minIf(received_at, kind = 'open' AND verdict = 'human') AS first_open_at,
              maxIf(received_at, kind = 'open' AND verdict = 'human') AS last_open_at,
              uniqExactIf(hit_id, kind = 'click' AND verdict = 'human') AS clicks,
              minIf(received_at, kind = 'click' AND verdict = 'human') AS first_click_at
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}}
              AND message_id = {{message_id:String}}""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def open_implied(opens: int, machine_opens: int, clicks: int) -> bool:
    """A message is opened by implication when a person clicked it and its pixel never loaded (no open of any
    kind: a machine open means the pixel did load, so images were not blocked)."""
    return bool(clicks) and not opens and not machine_opens


def shape_stats(
    message_id: str,
    send: tuple[Any, ...],
    counts: tuple[Any, ...],
    dropped: Filtered,
) -> dict[str, Any]:
    """The answer of ``GET /v1/messages/{id}``: ``send`` is ``(campaign_id, recipient, sent_at, links,
    provider_message_id)`` (`send_of_message`), ``counts`` the row of `message_counts`, ``dropped`` its
    filtered hits."""
    campaign_id, recipient, sent_at, links, provider_message_id = send
    opens, machine_opens, first_open, last_open, clicks, first_click = counts
    return {
        "message_id": message_id,
        "campaign_id": campaign_id,
        "recipient": recipient,
        "sent_at": iso(sent_at),
        "links": list(links),
        "provider_message_id": provider_message_id or None,
        "opens": opens,
        "machine_opens": machine_opens,
        "first_open_at": iso(first_open) if opens else None,
        "last_open_at": iso(last_open) if opens else None,
        "clicks": clicks,
        "first_click_at": iso(first_click) if clicks else None,
        # A person's click on a message whose pixel never loaded proves it was opened (`api.sql.open_rates`).
        "opened": bool(opens) or open_implied(opens, machine_opens, clicks),
        "open_implied": open_implied(opens, machine_opens, clicks),
        "bot_clicks": dropped.bot_clicks,
        "bot_opens": dropped.bot_opens,
        "filtered": dropped.by_reason,
    }


def message_timeline(db: str, account: str, campaign_id: str, message_id: str) -> Query:
    """Every counted open and click of a message, oldest first (a hit stored twice is listed once), with
    its hit id last (an open's read record is found by it: `api.sql.reads.message_reads`)."""
    return Query(
        f"""SELECT toUnixTimestamp64Milli(received_at), kind, verdict, reason, client, device, os, country,
                   city, via_proxy, link_index, url, hit_id
            FROM {db}.events
            WHERE {CAMPAIGN_SCOPE} AND message_id = {{message_id:String}}
            ORDER BY received_at, hit_id LIMIT 1 BY hit_id""",
        {"account": account, "campaign_id": campaign_id, "message_id": message_id},
    )


def shape_timeline(
    rows: Iterable[tuple[Any, ...]], reads: Mapping[str, tuple[int, str]] | None = None
) -> list[dict[str, Any]]:
    """The timeline's hits; each open with its ``read_seconds`` and ``read_category`` (read time, issue 18:
    `api.sql.reads.open_read` over ``reads``, the message's read records by hit id; null when the open was
    not timed)."""
    out = []
    for row in rows:
        at, kind, verdict, reason, client, device, os_, country, city, via_proxy, link_index, url, hit_id = (
            row
        )
        click = kind == "click"
        entry: dict[str, Any] = {
            "at": iso_ms(at),
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
        if kind == "open":
            entry["read_seconds"], entry["read_category"] = open_read(reads or {}, str(hit_id), str(verdict))
        out.append(entry)
    return out


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
    parameters: dict[str, Any] = {"account": account, "limit": pages.check_limit(limit) + 1}
    where = ["account = {account:String}"]
    if campaign_id is not None:
        where.append("campaign_id = {campaign_id:String}")
        parameters["campaign_id"] = campaign_id
    if recipient is not None:
        where.append("recipient = {recipient:String}")
        parameters["recipient"] = recipient
    if cursor is not None:
        parameters["after_ms"], parameters["after_id"] = pages.decode_cursor(cursor)
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
                "sent_at": iso_ms(sent_ms),
                "opens": int(opens),
                "machine_opens": int(machine_opens),
                "clicks": int(clicks),
                "first_open_at": iso_ms(first_open_ms) if opens else None,
            }
        )
    last = page[limit - 1] if len(page) > limit else None
    return {"items": items, "next_cursor": pages.encode_cursor(int(last[3]), last[0]) if last else None}
