# ruff: noqa: S608 - the SQL here is built from this module's own constants and numbers, never from input.
"""Segments at scale (issue 20): p50/p99 of a segment's first page (100 recipients) at 1 M recipients and
10 M events, target p99 <= 200 ms.

The data is `bench/generate.py`'s (its sends and events expressions: skewed campaigns, recipients who keep
their habits, Apple MPP and Gmail prefetch opens, clicks), written with the recipient's tag so the engagement
rollup's materialized views (0012) fill it as they would live. The tag is ``hex(cityHash64(recipient))``, a
stand-in for the keyed HMAC (SQL cannot compute it; the rollup only needs 16 hex characters per recipient).
Plus: 3 % of sends hard-bounce, 0.3 % draw a complaint, 1 % of recipients refused tracking and 2 % of sends
were not tracked individually. The rollup is merged first (`OPTIMIZE ... FINAL`, as background merges leave a
live system), then each segment's first page is asked ``--runs`` times through the API's own SQL
(`api.sql.engagement.segment_page`) on the embedded engine; ``count`` is timed once per segment.

    uv run python bench/segments.py PATH [--recipients 1000000 --events 10000000] [--runs 30]
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from api.sql import engagement as sql
from bench.common import argparser, conditions, write_result
from bench.generate import BLOCK, Shape, _event_select, _send_expressions
from schemas.store import Store, parse_store_url

TAG = "lower(hex(cityHash64({r}, 'tag')))"


def sends_sql(db: str, shape: Shape, first: int, count: int) -> str:
    e = _send_expressions(shape, "number")
    tag = TAG.format(r=e["recipient_no"])
    return f"""INSERT INTO {db}.sends
        (account, campaign_id, message_id, recipient, sent_at, registered_at, links, recipient_tag, tracking)
        SELECT {e["account"]}, {e["campaign_id"]}, {e["message_id"]}, {e["recipient"]}, {e["sent_at"]},
               {e["sent_at"]}, {e["links"]}, {tag},
               if(cityHash64(number, 'untracked') % 100 < 2, 'none', 'individual')
        FROM numbers({first}, {count})"""


def events_sql(db: str, shape: Shape, first: int, count: int) -> str:
    inner = _event_select(shape, "number", "id").replace("{first}", str(first)).replace("{count}", str(count))
    return f"""INSERT INTO {db}.events
        (hit_id, kind, account, campaign_id, message_id, sent_at, received_at, link_index, url, verdict,
         reason, via_proxy, country, city, time_zone, asn, device, os, client, user_agent, source,
         recipient_tag)
        SELECT hit_id, kind, account, campaign_id, message_id, sent_at, received_at, link_index, url, verdict,
               reason, proxy, country, city, time_zone, asn, device, os, client, user_agent, 'bench',
               {TAG.format(r="r")}
        FROM ({inner})"""


def deliveries_sql(db: str, shape: Shape, first: int, count: int) -> str:
    e = _send_expressions(shape, "number")
    return f"""INSERT INTO {db}.deliveries
        (delivery_id, account, campaign_id, message_id, recipient, provider, provider_event_id, event,
         bounce_type, matched_by, occurred_at, received_at, recipient_tag)
        SELECT lower(hex(cityHash64(number, 'dl'))), {e["account"]}, {e["campaign_id"]}, {e["message_id"]},
               {e["recipient"]}, 'sendgrid', toString(number), event,
               if(event = 'bounce', 'hard', ''), 'message_id', {e["sent_at"]} + toIntervalSecond(30),
               {e["sent_at"]} + toIntervalSecond(33), {TAG.format(r=e["recipient_no"])}
        FROM (SELECT number, cityHash64(number, 'outcome') % 1000 AS p,
                     multiIf(p < 30, 'bounce', p < 33, 'complaint', 'delivered') AS event
              FROM numbers({first}, {count}))"""


def consent_sql(db: str, recipients: int) -> str:
    return f"""INSERT INTO {db}.consent_events
        (account, tag, recipient_tags, state, how, source, evidence, at)
        SELECT 'acme', {TAG.format(r="number")}, [{TAG.format(r="number")}], 'refused', 'api', 'bench', '',
               now64(3)
        FROM numbers({recipients}) WHERE cityHash64(number, 'refused') % 100 < 1"""


def load(store: Store, shape: Shape) -> dict[str, float]:
    db = store.database
    took: dict[str, float] = {}
    for name, total, make in (
        ("sends", shape.sends, lambda f, n: sends_sql(db, shape, f, n)),
        ("deliveries", shape.sends, lambda f, n: deliveries_sql(db, shape, f, n)),
        ("events", shape.events, lambda f, n: events_sql(db, shape, f, n)),
    ):
        start = time.perf_counter()
        for first in range(0, total, BLOCK):
            store.command(make(first, min(BLOCK, total - first)))
        took[name] = round(time.perf_counter() - start, 1)
        print(f"{name:>12}: {total:>11,} rows in {took[name]:6.1f}s", flush=True)
    store.command(consent_sql(db, shape.recipients))
    start = time.perf_counter()
    store.command(f"OPTIMIZE TABLE {db}.engagement FINAL")
    took["merge"] = round(time.perf_counter() - start, 1)
    print(f"{'merged':>12}: in {took['merge']:6.1f}s", flush=True)
    return took


def segments(store: Store) -> dict[str, sql.Segment]:
    """The segments measured; the campaign ones on the account's largest campaign."""
    db = store.database
    largest = store.query(
        f"SELECT campaign_id FROM {db}.sends WHERE account = 'acme' GROUP BY campaign_id "
        "ORDER BY count() DESC LIMIT 1"
    )[0][0]
    return {
        "everyone": sql.Segment(),
        "min_score 4": sql.Segment(min_score=4),
        "inactive 30 days": sql.Segment(inactive_days=30),
        "machine_only": sql.Segment(machine_only=True),
        "bounced": sql.Segment(bounced=True),
        "complained": sql.Segment(complained=True),
        "refused_tracking": sql.Segment(refused_tracking=True),
        "clicked link 0 of the largest": sql.Segment(clicked=sql.CampaignLink(largest, link_index=0)),
        "opened, not clicked the largest": sql.Segment(opened_not_clicked=largest),
        "inactive 30 days + min_score 2": sql.Segment(inactive_days=30, min_score=2),
    }


def measure(store: Store, segment: sql.Segment, runs: int) -> dict[str, Any]:
    db = store.database
    times = []
    rows = 0
    for _ in range(runs):  # what the API does for a first page: the window, then the page in it
        start = time.perf_counter()
        w = sql.segment_window(db, "acme", after="")
        ((upto, _),) = store.query(w.sql, w.parameters)
        q = sql.segment_page(db, "acme", segment, after="", upto=upto, limit=100)
        rows = len(store.query(q.sql, q.parameters))
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    c = sql.segment_count(db, "acme", segment)
    start = time.perf_counter()
    members = store.query(c.sql, c.parameters)[0][0]
    count_ms = (time.perf_counter() - start) * 1000
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return {
        "page_rows": min(rows, 100),
        "members": members,
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(times[-1], 1),
        "count_ms": round(count_ms, 1),
    }


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument("path", help="chDB data directory (created if missing)")
    parser.add_argument("--database", default="bench_segments")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sends", type=int, default=0, help="default: events / 2")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="measure the data already loaded")
    args = parser.parse_args()
    store = Store.connect(parse_store_url(f"chdb://{args.path}?database={args.database}"))
    shape = Shape(
        events=args.events,
        sends=args.sends or args.events // 2,
        campaigns=60,
        recipients=args.recipients,
        start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=120),
        days=110,
    )
    took = {} if args.reuse else load(store, shape)
    db = store.database
    tags = store.query(f"SELECT uniqExact(recipient_tag) FROM {db}.engagement WHERE account = 'acme'")[0][0]
    state = conditions()
    print(f"acme: {tags:,} recipients in the rollup; load average {state['loadavg']}", flush=True)
    results = {}
    for name, segment in segments(store).items():
        results[name] = measure(store, segment, args.runs)
        r = results[name]
        print(
            f"{name:>34}: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
            f"({r['members']:,} members, count {r['count_ms']:.0f} ms)",
            flush=True,
        )
    write_result(
        "segments",
        {"shape": {**dataclasses.asdict(shape), "start": shape.start.isoformat()}, "load_s": took,
         "recipients_in_rollup": tags, "conditions": state, "results": results},
    )  # fmt: skip


if __name__ == "__main__":
    main()
