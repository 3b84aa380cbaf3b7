# ruff: noqa: S608 - the SQL here is built from this module's own constants and numbers, never from input.
"""Synthetic sends, counted events and filtered hits, generated inside ClickHouse, for the query benchmarks.

Owns the shape of a realistic high-volume sender's data: few accounts, campaigns of very different sizes (the
largest holds about a sixth of everything), recipients who get several campaigns and keep their time zone,
mail client and habits (a preferred local hour to read mail), Apple MPP and Gmail prefetch machine opens
right at delivery, Gmail proxy opens without a location, a few clicks, bots in `filtered_hits`, and a share
of replayed hits (the same row stored twice, as a crash between insert and commit leaves them).

Rows are made by ``INSERT ... SELECT FROM numbers()`` in the engine itself, in blocks of a million, so ten
million events take a minute, not an hour of Python. It writes only through `schemas.store.Store` and must
never be imported by the product.

    uv run python bench/generate.py PATH --events 10000000 [--deliveries 10000000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.store import Store, parse_store_url

BLOCK = 1_000_000

# (IANA zone, country, city, UTC offset in hours without DST): opens are made at a local hour, so the
# best-time-to-send answer has something true to find.
PLACES = (
    ("Europe/Berlin", "DE", "Berlin", 1),
    ("Europe/London", "GB", "London", 0),
    ("America/New_York", "US", "New York", -5),
    ("America/Los_Angeles", "US", "Los Angeles", -8),
    ("America/Chicago", "US", "Chicago", -6),
    ("Europe/Paris", "FR", "Paris", 1),
    ("Asia/Tokyo", "JP", "Tokyo", 9),
    ("Australia/Sydney", "AU", "Sydney", 10),
    ("America/Sao_Paulo", "BR", "São Paulo", -3),
    ("Asia/Kolkata", "IN", "Mumbai", 5),
)
CAMPAIGN_NAMES = ("spring-sale", "newsletter", "welcome", "winback", "product-launch", "black-friday")


@dataclass(frozen=True, slots=True)
class Shape:
    """How much to make. ``skew``: campaign c of C holds the sends i with C*(i/S)^skew in [c, c+1)."""

    events: int
    sends: int
    campaigns: int
    recipients: int
    start: datetime
    days: int
    skew: float = 3.0
    replay_per_mille: int = 2  # hits stored twice (and delivery events, as a provider's retry leaves them)
    deliveries: int = 0  # the mail service's delivery events (issue 16), at least one per send when given
    filtered_per_cent: int = 6  # filtered hits, relative to events
    seed: int = 1

    @classmethod
    def for_events(
        cls, events: int, *, start: datetime, days: int = 80, seed: int = 1, deliveries: int = 0
    ) -> Shape:
        sends = max(10, events * 4 // 5)
        return cls(
            deliveries=deliveries,
            events=events,
            sends=sends,
            campaigns=max(5, events // 50_000),
            recipients=max(5, sends // 4),
            start=start,
            days=days,
            seed=seed,
        )


def _literal(values: tuple[str, ...]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


def _send_expressions(shape: Shape, i: str) -> dict[str, str]:
    """SQL expressions of send ``i`` (a message index), shared by sends and events so they agree."""
    seconds_per_campaign = shape.days * 86_400 // shape.campaigns
    campaign = f"toUInt32(floor({shape.campaigns} * pow({i} / {shape.sends}, {shape.skew})))"
    recipient_no = f"(cityHash64({i}, {shape.seed}, 'r') % {shape.recipients})"
    return {
        "campaign": campaign,
        "account": f"multiIf({campaign} % 10 < 8, 'acme', {campaign} % 10 = 8, 'globex', 'initech')",
        "campaign_id": (
            f"concat(arrayElement({_literal(CAMPAIGN_NAMES)}, {campaign} % {len(CAMPAIGN_NAMES)} + 1), "
            f"'-', leftPad(toString({campaign}), 5, '0'))"
        ),
        "message_id": f"concat('msg-', lower(hex(toUInt64({i}))))",
        "recipient_no": recipient_no,
        "recipient": f"concat('user', toString({recipient_no}), '@example.com')",
        "sent_at": (
            f"toDateTime64({int(shape.start.timestamp())} + {campaign} * {seconds_per_campaign}"
            f" + cityHash64({i}, 's') % 1800, 3, 'UTC')"
        ),
        "links": (
            f"arrayMap(k -> concat('https://shop.example.com/c', toString({campaign}), '/link', "
            f"toString(k)), range(1 + {campaign} % 5))"
        ),
    }


def sends_sql(db: str, shape: Shape, first: int, count: int) -> str:
    e = _send_expressions(shape, "number")
    return f"""INSERT INTO {db}.sends
        (account, campaign_id, message_id, recipient, sent_at, registered_at, links)
        SELECT {e["account"]}, {e["campaign_id"]}, {e["message_id"]}, {e["recipient"]}, {e["sent_at"]},
               {e["sent_at"]}, {e["links"]}
        FROM numbers({first}, {count})"""


def _event_select(shape: Shape, j: str, salt: str) -> str:
    """One counted event per ``j``: which message (half of the sends are ever opened), who, when, how."""
    i = f"((cityHash64({j}, {shape.seed}, 'm') % {max(1, shape.sends // 2)}) * 2)"
    e = _send_expressions(shape, i)
    zones, countries, cities = (_literal(tuple(p[k] for p in PLACES)) for k in range(3))
    offsets = "[" + ", ".join(str(p[3]) for p in PLACES) + "]"
    return f"""
        SELECT *, if(machine OR proxy, '', place.1) AS time_zone,
               if(machine OR proxy, '', place.2) AS country, if(machine OR proxy, '', place.3) AS city
        FROM (
          SELECT
            {j} AS j, {e["account"]} AS account, {e["campaign_id"]} AS campaign_id,
            {e["message_id"]} AS message_id, {e["sent_at"]} AS sent_at, {e["recipient_no"]} AS r,
            cityHash64(r, 'profile') % 100 AS profile,
            (cityHash64(r, 'place') % {len(PLACES)}) + 1 AS place_no,
            tuple(arrayElement({zones}, place_no), arrayElement({countries}, place_no),
                  arrayElement({cities}, place_no)) AS place,
            arrayElement({offsets}, place_no) AS utc_offset,
            7 + cityHash64(r, 'hour') % 15 AS local_hour,
            if(cityHash64({j}, 'kind') % 100 < 8, 'click', 'open') AS kind,
            kind = 'open' AND ((profile < 40 AND cityHash64({j}, 'mpp') % 100 < 60)
                OR (profile >= 40 AND profile < 70 AND cityHash64({j}, 'pf') % 100 < 8)) AS machine,
            profile >= 40 AND profile < 70 AND NOT machine AND kind = 'open' AS proxy,
            -- machine opens come at delivery; people read at their hour, within a few days
            if(machine,
               sent_at + toIntervalSecond(2 + cityHash64({j}, 'd') % 120),
               toDateTime64(toUnixTimestamp(toStartOfDay(sent_at))
                            + (cityHash64({j}, 'day') % 4) * 86400
                            + ((local_hour - utc_offset + 48) % 24) * 3600
                            + cityHash64({j}, 'min') % 3600
                            + 86400 * (cityHash64({j}, 'w') % 7 = 0), 3, 'UTC')
            ) AS at0,
            if(at0 <= sent_at, at0 + toIntervalDay(1), at0) AS received_at,
            concat(leftPad(lower(hex(toUInt64(toUnixTimestamp64Milli(received_at)))), 12, '0'),
                   leftPad(lower(hex(cityHash64({j}, {shape.seed}, '{salt}'))), 16, '0')) AS hit_id,
            {e["links"]} AS links,
            if(kind = 'click', toInt16(cityHash64({j}, 'l') % length(links)), toInt16(-1)) AS link_index,
            if(kind = 'click', arrayElement(links, link_index + 1), '') AS url,
            if(machine, 'machine', 'human') AS verdict,
            multiIf(machine AND profile < 40, 'apple_mpp', machine, 'gmail_prefetch', proxy, 'gmail_proxy',
                    'ua:client') AS reason,
            multiIf(machine AND profile < 40, 'Mozilla/5.0', profile < 40, 'iPhone Mail',
                    profile < 70, 'GoogleImageProxy', profile < 85, 'Microsoft Outlook 16.0',
                    profile < 95, 'Android Gmail', 'Thunderbird/115.0') AS user_agent,
            multiIf(profile < 40, 'Apple Mail', machine, 'Gmail Prefetch', proxy, 'Gmail Image Proxy',
                    profile < 70, 'Gmail', profile < 85, 'Outlook', profile < 95, 'Gmail', 'Thunderbird')
              AS client,
            multiIf(profile < 40, 'iOS', profile < 70, '', profile < 85, 'Windows', profile < 95, 'Android',
                    'Linux') AS os,
            multiIf(machine, 'unknown', profile < 40, 'mobile', proxy, 'proxy', profile < 70, 'desktop',
                    profile < 85, 'desktop', profile < 95, 'mobile', 'desktop') AS device,
            multiIf(machine AND profile < 40, 714, profile < 70, 15169, 3320 + toUInt32(r % 50)) AS asn
          FROM numbers({{first}}, {{count}})
        )"""


EVENT_INSERT_COLUMNS = (
    "hit_id, kind, account, campaign_id, message_id, sent_at, received_at, link_index, url, verdict, reason, "
    "via_proxy, country, city, time_zone, asn, as_org, ip, device, os, client, user_agent, source"
)


def events_sql(db: str, shape: Shape, first: int, count: int, *, where: str = "1") -> str:
    inner = _event_select(shape, "number", "id").replace("{first}", str(first)).replace("{count}", str(count))
    return f"""INSERT INTO {db}.events ({EVENT_INSERT_COLUMNS})
        SELECT hit_id, kind, account, campaign_id, message_id, sent_at, received_at, link_index, url, verdict,
               reason, proxy, country, city, time_zone, asn,
               multiIf(asn = 15169, 'GOOGLE', asn = 714, 'APPLE', 'ISP'),
               if(machine OR proxy, '', concat('81.2.', toString(r % 250), '.0')), device, os, client,
               user_agent, 'bench'
        FROM ({inner}) WHERE {where}"""


def filtered_sql(db: str, shape: Shape, first: int, count: int) -> str:
    """Bots: link scanners' clicks, scripts, crawlers, and a few forged tokens."""
    inner = (
        _event_select(shape, "number", "bot").replace("{first}", str(first)).replace("{count}", str(count))
    )
    return f"""INSERT INTO {db}.filtered_hits ({EVENT_INSERT_COLUMNS}, token_head)
        SELECT hit_id, kind, account, campaign_id, message_id, sent_at, sent_at + toIntervalSecond(j % 9),
               link_index, url, if(j % 50 = 0, 'invalid', 'bot'),
               multiIf(j % 50 = 0, 'token:bad_tag', j % 4 = 0 AND kind = 'click', 'click_burst',
                       j % 4 = 1, 'ua:http_library', j % 4 = 2 AND kind = 'open', 'ua:crawler',
                       'gateway_range:microsoft_eop'),
               false, '', '', '', 8075, 'MICROSOFT', '', 'bot', '', '', 'python-requests/2.31', 'bench',
               if(j % 50 = 0, 'AAAAforged', '')
        FROM ({inner})"""


DELIVERY_INSERT_COLUMNS = (
    "delivery_id, account, campaign_id, message_id, recipient, provider, provider_event_id, "
    "provider_message_id, event, bounce_type, smtp_status, smtp_code, diagnostic, provider_type, matched_by, "
    "occurred_at, received_at"
)


def deliveries_sql(db: str, shape: Shape, first: int, count: int, *, where: str = "1") -> str:
    """Delivery events as a mail service reports them: ``j`` below the number of sends is send ``j``'s outcome
    (95 % delivered, 2 % hard and 2 % soft bounces, 1 % dropped); the rest are further events of random
    sends (deferrals before delivery, unsubscribes, complaints, soft bounces). ``where`` picks a subset
    (the replays: the same rows, the same delivery ids)."""
    i = f"if(j < {shape.sends}, j, cityHash64(j, {shape.seed}, 'dm') % {shape.sends})"
    e = _send_expressions(shape, "i")
    hard = f"if(j < {shape.sends} AND p < 970, 'hard', 'soft')"
    return f"""INSERT INTO {db}.deliveries ({DELIVERY_INSERT_COLUMNS})
        SELECT lower(hex(cityHash64(j, {shape.seed}, 'delivery'))), account, campaign_id, message_id,
               recipient, 'sendgrid', toString(j), concat('sg-', message_id), event, bounce_type, status,
               code, if(bounce_type = '', '', concat(toString(code), ' ', status, ' ', recipient, ': gone')),
               event, 'message_id', occurred_at, occurred_at + toIntervalSecond(3)
        FROM (
          SELECT number AS j, {i} AS i, {e["account"]} AS account, {e["campaign_id"]} AS campaign_id,
                 {e["message_id"]} AS message_id, {e["recipient"]} AS recipient, {e["sent_at"]} AS sent_at,
                 cityHash64(j, 'event') % 1000 AS p,
                 multiIf(j < {shape.sends}, multiIf(p < 950, 'delivered', p < 990, 'bounce', 'dropped'),
                         p < 900, 'deferred', p < 950, 'unsubscribe', p < 960, 'complaint', 'bounce')
                   AS event,
                 if(event = 'bounce', {hard}, '') AS bounce_type,
                 multiIf(bounce_type = 'hard', '5.1.1', bounce_type = 'soft', '4.2.2',
                         event = 'deferred', '4.7.1', '') AS status,
                 toUInt16(multiIf(bounce_type = 'hard', 550, bounce_type = 'soft', 452,
                                  event = 'deferred', 421, 0)) AS code,
                 sent_at + toIntervalSecond(1 + cityHash64(j, 'late') % if(j < {shape.sends}, 60, 86400))
                   AS occurred_at
          FROM numbers({first}, {count}))
        WHERE {where}"""


def generate(store: Store, shape: Shape, *, log: bool = True) -> dict[str, float]:
    """Insert the sends, events (with replays) and filtered hits of ``shape``; return seconds per table."""
    db = store.database
    took: dict[str, float] = {}
    plan = (
        ("sends", shape.sends, lambda first, n: sends_sql(db, shape, first, n)),
        ("events", shape.events, lambda first, n: events_sql(db, shape, first, n)),
        (
            "replays",
            shape.events,
            lambda first, n: events_sql(
                db, shape, first, n, where=f"cityHash64(j, 'replay') % 1000 < {shape.replay_per_mille}"
            ),
        ),
        (
            "filtered_hits",
            shape.events * shape.filtered_per_cent // 100,
            lambda first, n: filtered_sql(db, shape, first, n),
        ),
        ("deliveries", shape.deliveries, lambda first, n: deliveries_sql(db, shape, first, n)),
        (
            "delivery replays",
            shape.deliveries,
            lambda first, n: deliveries_sql(
                db, shape, first, n, where=f"cityHash64(j, 'replay') % 1000 < {shape.replay_per_mille}"
            ),
        ),
    )
    for name, total, sql in plan:
        start = time.perf_counter()
        for first in range(0, total, BLOCK):
            store.command(sql(first, min(BLOCK, total - first)))
        took[name] = time.perf_counter() - start
        if log:
            print(f"{name:>14}: {total:>11,} rows in {took[name]:6.1f}s", flush=True)
    return took


ROLLUPS = ("rollups", "campaign_catalog")


def settle(store: Store) -> None:
    """Merge the rollups' parts. A bulk load in random time order leaves every key of every campaign in every
    part; a live system writes each hour's rows while that hour is current, and background merges fold them
    long before anyone asks. (The query benchmark adds a live tail of its own.)"""
    start = time.perf_counter()
    for table in ROLLUPS:
        store.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")
    print(f"{'rollups merged':>14}: in {time.perf_counter() - start:6.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="chDB data directory (created if missing)")
    parser.add_argument("--database", default="bench")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--deliveries", type=int, default=0, help="delivery events (issue 16); one per send and more"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=80, help="campaigns are sent over this many days")
    parser.add_argument("--optimize", action="store_true", help="merge the base tables' parts afterwards too")
    parser.add_argument(
        "--unsettled", action="store_true", help="leave the rollups' parts as the bulk load left them"
    )
    args = parser.parse_args()
    store = Store.connect(parse_store_url(f"chdb://{args.path}?database={args.database}"))
    # the last ~12 weeks: within every table's retention (filtered hits are kept 3 months)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=args.days + 6
    )
    shape = Shape.for_events(
        args.events, start=start, days=args.days, seed=args.seed, deliveries=args.deliveries
    )
    print(
        f"{shape.events:,} events, {shape.deliveries:,} delivery events, {shape.sends:,} sends, "
        f"{shape.campaigns} campaigns, "
        f"{shape.recipients:,} recipients into {args.path} ({args.database})"
    )
    generate(store, shape)
    if not args.unsettled:
        settle(store)
    if args.optimize:
        for table in ("sends", "events", "filtered_hits", "deliveries"):
            store.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")
    store.close()


if __name__ == "__main__":
    main()
