# ruff: noqa: S608 - the baseline SQL here is built from this module's constants, never from input.
"""Query latency of the analyst API: p50/p99 of each endpoint's queries over a chDB directory filled by
``bench/generate.py``, before (raw SQL over ``events``) and after (the rollups of 0002_rollups.sql).

What a "request" is here: the store calls one endpoint makes, run back to back through `schemas.store.Store`
(clickhouse-connect over embedded chDB, in-process, so no HTTP). Each query runs against two targets: the
largest campaign (the worst case) and a mix (a random campaign of the busiest account per request). Then a
"live" phase inserts small parts of new hits for the largest campaign, as the processor's flushes do while a
campaign is being opened, and measures campaign stats again before background merges catch up. The rollup
answers are checked against the raw ones before and after.

Benchmarks never fail for being slow. Not a test.

    uv run python -m bench.query_latency PATH [--json REPORT] [--runs 200]
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from api.campaign_answers import campaign_summary
from api.context import ApiContext
from api.delivery_numbers import DeliveryNumbers
from api.open_numbers import OpenNumbers
from api.sql import (
    best_time,
    breakdowns,
    campaigns,
    common,
    deliveries,
    exact,
    filtered,
    messages,
    open_rates,
    recipients,
    reference,
    timeseries,
)
from bench.common import argparser, conditions, machine, wait_quiet
from schemas.store import Store, parse_store_url
from schemas.tokens import Keyring

Step = common.Query | exact.ExactRead | Callable[[], object]  # a callable: a step of the API's own code
Request = Callable[[str], Sequence[Step]]  # campaign id -> the queries one request runs
TARGET_MS = 50.0
BUDGET_S = 25.0  # per query and target: fewer runs when a query is slow


def raw_breakdown(db: str, account: str, campaign_id: str) -> common.Query:
    """What a breakdown by country costs without the rollups (the baseline)."""
    return common.Query(
        f"""SELECT country, uniqExactIf(hit_id, kind = 'open'), uniqExactIf(message_id, kind = 'open'),
                   uniqExactIf(hit_id, kind = 'click'), uniqExactIf(message_id, kind = 'click')
            FROM {db}.events
            WHERE account = {{account:String}} AND campaign_id = {{campaign_id:String}} AND verdict = 'human'
            GROUP BY country""",
        {"account": account, "campaign_id": campaign_id},
    )


def api_context(store: Store, numbers: DeliveryNumbers) -> ApiContext:
    """What the API's handlers are given (only the store and its caches matter to the routes measured)."""
    return ApiContext(
        store, Keyring(((1, b"bench-only-key-0123456789"),)), "http://bench", {}, delivery_numbers=numbers
    )


def requests(store: Store, account: str, numbers: DeliveryNumbers, ctx: ApiContext) -> dict[str, Request]:
    db = store.database
    berlin = ZoneInfo("Europe/Berlin")

    def series(campaign_id: str) -> list[Step]:
        first, last, _ = run(store, timeseries.campaign_extent(db, account, campaign_id))[0]
        start, end = datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last + 60, UTC)
        span = timeseries.bucket_starts("hour", berlin, start, end)
        return [
            timeseries.series_hits(db, account, campaign_id, bucket="hour", tz="Europe/Berlin", span=span),
            timeseries.series_openers(
                db, account, campaign_id, bucket="hour", tz="Europe/Berlin", span=span, include_machine=False
            ),
        ]

    return {
        "campaign stats, raw (api.sql.reference)": lambda c: [
            reference.campaign_sent(db, account, c),
            reference.campaign_counts(db, account, c),
            filtered.filtered_breakdown(db, account, c),
        ],
        "campaign stats, rollups (/summary)": lambda c: [campaigns.campaign_counts(db, account, c)],
        # What /stats runs (issue 16): the handler's own function, whose inputs are kept while the parts
        # holding the campaign's rollup rows stay the same (`api.campaign_reads`).
        "campaign stats with deliveries (/stats)": lambda c: [
            lambda: campaign_summary(ctx, account, c, include_machine=False, delivery_fields=True)
        ],
        # What it computes when those parts changed (a campaign being opened: every flush of the processors):
        # the counts, then the delivery numbers and the messages counted as sent without a send
        # (`api.delivery_numbers`: per bucket, counted again only where the parts changed).
        # ... and MPP-only messages and implied opens (issue 20, `api.open_numbers`: the same per bucket).
        "campaign stats with deliveries, parts changed (/stats computing)": lambda c: [
            campaigns.campaign_counts(db, account, c),
            lambda: numbers.read(lambda q: run(store, q), db, account, [c]),
            lambda: ctx.open_numbers.read(lambda q: run(store, q), db, account, [c]),
        ],
        # The same without them: what it computed before issue 20's numbers (the comparison in one run).
        "campaign stats with deliveries, parts changed, without MPP-only and implied opens": lambda c: [
            campaigns.campaign_counts(db, account, c),
            lambda: numbers.read(lambda q: run(store, q), db, account, [c]),
        ],
        "MPP-only and implied opens, counted in full (no cache)": lambda c: [
            open_rates.campaigns_open_counts(db, account, [c])
        ],
        "unregistered messages, as before (api.sql.campaigns)": lambda c: [
            campaigns.unregistered_messages(db, account, [c])
        ],
        "delivery numbers, counted in full (no cache)": lambda c: [
            deliveries.campaigns_delivery(db, account, [c])
        ],
        "summary include_machine": lambda c: [
            campaigns.campaign_counts(db, account, c, include_machine=True)
        ],
        "breakdown include_machine": lambda c: [
            campaigns.campaign_known(db, account, c),
            breakdowns.breakdown(db, account, c, "country", include_machine=True),
        ],
        "breakdown by country, raw": lambda c: [raw_breakdown(db, account, c)],
        "breakdown by country, rollups": lambda c: [
            campaigns.campaign_known(db, account, c),
            breakdowns.breakdown(db, account, c, "country", include_machine=False),
        ],
        "timeseries hourly, Berlin": lambda c: [campaigns.campaign_known(db, account, c), *series(c)],
        "links": lambda c: [
            campaigns.campaign_known(db, account, c),
            breakdowns.link_clicks(db, account, c),
            breakdowns.link_indexes(db, account, c),
        ],
        "best time, campaign": lambda c: [
            campaigns.campaign_known(db, account, c),
            best_time.audience_slots(db, account, [c]),
        ],
    }


def run(store: Store, step: Step) -> Any:
    if isinstance(step, exact.ExactRead):
        return exact.read_exact(store.query, step)
    if isinstance(step, common.Query):
        return store.query(step.sql, step.parameters)
    return step()


def measure(store: Store, request: Request, campaigns: Sequence[str], runs: int) -> dict[str, Any]:
    """Run ``request`` up to ``runs`` times (within `BUDGET_S`), each on a campaign drawn from ``campaigns``;
    the first run warms caches and is not counted."""
    rng = random.Random(7)
    times: list[float] = []
    deadline = time.monotonic() + BUDGET_S
    for i in range(runs + 1):
        planned = request(rng.choice(campaigns))  # planning (and the series' extent) is not timed
        started = time.perf_counter()
        for step in planned:
            run(store, step)
        if i:
            times.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline and len(times) >= 20:
            break
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, round(0.99 * (len(times) - 1)))], 1),
        "max_ms": round(times[-1], 1),
        "runs": len(times),
    }


def per_request(store: Store, account: str, runs: int) -> dict[str, dict[str, Any]]:
    """Message, recipient and list endpoints: a random message or recipient per request."""
    db = store.database
    sample = store.query(
        f"SELECT message_id, campaign_id, recipient FROM {db}.sends WHERE account = {{a:String}} "
        "ORDER BY cityHash64(message_id) LIMIT 500",
        {"a": account},
    )
    rng = random.Random(11)

    def timeline() -> list[Step]:
        message_id, campaign_id, _ = rng.choice(sample)
        return [
            messages.send_of_message(db, account, message_id),
            messages.message_timeline(db, account, campaign_id, message_id),
        ]

    def recipient() -> list[Step]:
        who = rng.choice(sample)[2]
        sent = run(store, recipients.recipient_messages(db, account, who, limit=100))
        return [
            recipients.recipient_messages(db, account, who, limit=100),
            messages.messages_counts(db, account, [(m[1], m[0]) for m in sent[:100]]),
            recipients.recipient_opens(db, account, who),
        ]

    def campaign_page() -> list[Step]:
        page = run(store, campaigns.campaign_list(db, account, limit=50, cursor=None, q=None))
        counts = campaigns.campaigns_counts(db, account, [p[0] for p in page[:50]])
        return [campaigns.campaign_list(db, account, limit=50, cursor=None, q=None), *counts]

    def message_page() -> list[Step]:
        campaign_id = rng.choice(sample)[1]
        q = messages.message_list(
            db, account, limit=50, cursor=None, campaign_id=campaign_id, recipient=None, opened=True
        )
        page = messages.distinct_sends(store.query(q.sql, q.parameters))
        return [q, messages.messages_counts(db, account, [(m[1], m[0]) for m in page[:50]])]

    out = {}
    for name, plan in (
        ("message timeline", timeline),
        ("recipient (messages, opens)", recipient),
        ("campaign list, 50 per page", campaign_page),
        ("message list, one campaign, opened", message_page),
    ):
        out[name] = measure(store, lambda _c, plan=plan: plan(), ["-"], runs)
    return out


def check_exact(store: Store, account: str, campaign_id: str, numbers: DeliveryNumbers) -> str:
    """The rollups' campaign counts must equal the raw uniqExact ones (the data holds replayed hits)."""
    db = store.database
    (raw,) = run(store, reference.campaign_counts(db, account, campaign_id))
    (sent,) = run(store, reference.campaign_sent(db, account, campaign_id))
    hits, messages = campaigns.split_counts(run(store, campaigns.campaign_counts(db, account, campaign_id)))
    summary = campaigns.shape_summary(campaign_id, hits, messages)
    names = ("opens", "unique_opens", "machine_opens", "unique_machine_opens", "clicks", "unique_clicks")
    rolled = tuple(summary[n] for n in names)
    if rolled != tuple(raw) or summary["sent"] != sent[0]:
        return f"MISMATCH: raw {raw}, sent {sent[0]}; rollups {rolled}, sent {summary['sent']}"
    delivery = numbers.read(lambda q: run(store, q), db, account, [campaign_id]).get(campaign_id)
    if delivery:
        (raw_delivery,) = run(store, reference.campaign_delivery(db, account, campaign_id))
        delivery = delivery[: len(raw_delivery)]  # the raw reference has no tracked count (issue 19)
        if tuple(delivery) != tuple(raw_delivery):
            return f"MISMATCH of delivery numbers: raw {raw_delivery}; rollups {delivery}"
        names = (*names, *deliveries.COUNTS[: len(raw_delivery)])
        raw = (*raw, *raw_delivery)
    # MPP-only messages and implied opens, every bucket counted afresh (issue 20)
    facts = OpenNumbers().facts(lambda q: run(store, q), db, account, [campaign_id])[campaign_id]
    (raw_facts,) = run(store, reference.campaign_open_facts(db, account, campaign_id))
    if (facts.mpp_only, facts.implied) != tuple(raw_facts):
        return f"MISMATCH of MPP-only and implied opens: raw {raw_facts}; rollups {facts}"
    names = (*names, *open_rates.OPEN_COUNTS)
    raw = (*raw, *raw_facts)
    return (
        f"exact: rollups = raw uniqExact ({', '.join(f'{n} {v:,}' for n, v in zip(names, raw, strict=True))})"
    )


def live_tail(store: Store, account: str, campaign_id: str, parts: int, rows: int) -> None:
    """Small inserts for one campaign, as a processor's flushes while the campaign is being opened: new hits
    (received now) of random messages of the campaign, so each part touches the current hour and many
    message buckets."""
    db = store.database
    for part in range(parts):
        store.command(
            f"INSERT INTO {db}.events SELECT * REPLACE (concat(hit_id, '-live{part}') AS hit_id, "
            "now64(3, 'UTC') AS received_at) FROM "
            f"{db}.events WHERE account = {{a:String}} AND campaign_id = {{c:String}} "
            f"AND cityHash64(hit_id, {part}) % 1000 = 0 LIMIT {rows}",
            {"a": account, "c": campaign_id},
        )


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'query':48} {'target':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'runs':>5}"]
    for name, r in results.items():
        target = r.get("target", "")
        lines.append(
            f"{name:48} {target:>9} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} {r['runs']:5d}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument("path", help="a chDB directory filled by bench/generate.py")
    parser.add_argument("--database", default="bench")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--runs", type=int, default=200, help="requests per query and target")
    parser.add_argument("--tail-parts", type=int, default=10, help="small parts inserted for the live phase")
    parser.add_argument("--only", help="measure only the requests whose name contains this")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="count every campaign's delivery numbers and stats once first, as a server that answered them",
    )
    args = parser.parse_args()
    store = Store.connect(parse_store_url(f"chdb://{args.path}?database={args.database}"))
    db = store.database
    events = store.query(f"SELECT count() FROM {db}.events")[0][0]
    delivery_events = store.query(f"SELECT count() FROM {db}.deliveries")[0][0]
    busiest = f"SELECT account FROM {db}.events GROUP BY account ORDER BY count() DESC LIMIT 1"
    account = store.query(busiest)[0][0]
    sizes = store.query(
        f"SELECT campaign_id, count() AS n FROM {db}.events WHERE account = {{a:String}} "
        "GROUP BY campaign_id ORDER BY n DESC",
        {"a": account},
    )
    largest, largest_events = sizes[0]
    campaigns = [c for c, _ in sizes]
    state = wait_quiet(0.15, args.wait_quiet) if args.wait_quiet else conditions()
    print(
        f"{events:,} events, {delivery_events:,} delivery events; account {account!r}: {len(campaigns)} "
        f"campaigns, the largest {largest!r} with "
        f"{largest_events:,} events; load average {state['loadavg']}",
        flush=True,
    )
    numbers = DeliveryNumbers()
    ctx = api_context(store, numbers)
    print(check_exact(store, account, largest, numbers), flush=True)
    if args.warm:
        started = time.perf_counter()
        numbers.read(lambda q: run(store, q), db, account, campaigns)
        for campaign_id in campaigns:  # as a server that answered each campaign's stats before
            campaign_summary(ctx, account, campaign_id, include_machine=False, delivery_fields=True)
        print(
            f"warmed: {len(campaigns)} campaigns counted in {time.perf_counter() - started:.1f} s", flush=True
        )

    results: dict[str, dict[str, Any]] = {}
    for name, request in requests(store, account, numbers, ctx).items():
        if args.only and args.only not in name:
            continue
        for target, pool in (("largest", [largest]), ("mix", campaigns)):
            results[f"{name} [{target}]"] = {"target": target, **measure(store, request, pool, args.runs)}
            print(table({f"{name} [{target}]": results[f"{name} [{target}]"]}).splitlines()[1], flush=True)
    for name, r in ({} if args.only else per_request(store, account, args.runs)).items():
        results[name] = {"target": "random", **r}
        print(table({name: results[name]}).splitlines()[1], flush=True)

    live_tail(store, account, largest, args.tail_parts, 250)
    parts = store.query(
        f"SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'rollups' AND active"
    )[0][0]
    stats = requests(store, account, numbers, ctx)
    for name in (
        "campaign stats, raw (api.sql.reference)",
        "campaign stats, rollups (/summary)",
        "campaign stats with deliveries (/stats)",
        "campaign stats with deliveries, parts changed (/stats computing)",
        "campaign stats with deliveries, parts changed, without MPP-only and implied opens",
    ):
        if args.only and args.only not in name:
            continue
        key = f"{name} [largest, live]"
        results[key] = {"target": "live", **measure(store, stats[name], [largest], args.runs)}
        print(table({key: results[key]}).splitlines()[1], flush=True)
    print(check_exact(store, account, largest, numbers), f"({parts} active parts in rollups)", flush=True)

    print()
    print(table(results))
    report = {
        "events": events,
        "delivery_events": delivery_events,
        "largest_campaign_events": largest_events,
        "campaigns": len(campaigns),
        "target_ms": TARGET_MS,
        "machine": machine(),
        "conditions": state,
        "queries": {name: {k: v for k, v in r.items() if k != "target"} for name, r in results.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    store.close()


if __name__ == "__main__":
    main()
