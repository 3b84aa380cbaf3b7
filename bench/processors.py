"""Processors: decode + enrich + classify events per second on one core, and the loader's rows per second
into ClickHouse (embedded chDB).

How (issue 7, benchmark 2):

- The hits are built up front as the bytes the edge puts on the bus (`schemas.events.encode_hit`): the user
  agents of the shared corpus (``tests/data/corpus_hits.jsonl`` and ``extra_hits.jsonl``: mail clients,
  Apple MPP, Gmail's proxy, scanners, scripts), and for 80 % of hits a random public IPv4 (70 %) or IPv6
  address, every one distinct so the GeoIP cache starts cold and mostly misses (the worst case, and the
  headline number); the other 20 % keep the corpus's own address, so Apple's, Google's and the gateways'
  ranges are hit. 10 % are clicks, 2 % carry an invalid token.
- A second mix, "realistic repetition", is the same but for the random addresses: they are drawn from a
  pool of ``ZIPF_POOL`` distinct addresses with Zipf-like weights (rank r has weight 1/r), because real mail
  traffic repeats addresses: mail providers' image proxies and Apple's relays fetch for many readers, and
  a company's readers share a few NAT addresses. Its GeoIP cache hit ratio is recorded next to its rate.
- The GeoIP ceiling: the cost of one cold City lookup alone (`maxminddb` ``Reader.get``, which decodes the
  whole record into Python dicts) over distinct public IPv4 addresses, and how many of the worst case's
  hits pay it: that product is a floor under the per-hit time that no Python-side work can lower.
- Enrichment uses the real GeoLite2 City database (the bundled snapshot: ``GeoLookup(None, None)``) and the
  address-range table, exactly as ``pixelpipe process`` builds them.
- The collector is tuned as every pixelpipe process tunes it once started (`pixelpipe.cli.tune_gc`: what
  start-up allocated frozen, the young generation collected every 50,000 allocations); ``--default-gc``
  leaves Python's defaults, for comparison.
- The timed loop is the processor's own per-hit work, on one core (the process pins itself to CPU 0):
  ``decode_hit`` -> ``HitProcessor.process`` -> ``ReplayFlood.classify`` (the replay-flood rule, with its
  state) -> ``processors.rows.row``. It runs three times, adding one
  stage each time, to say where the time goes; the last pass (the whole path) is the number. Rates are per
  CPU second of the process (`time.process_time`), so other work taking turns on the core does not lower
  them; the share of the core the loop got is recorded next to them.
- The loader: rows from that loop, inserted into a fresh chDB database in batches of 5000 through
  `Store.insert` with the runner's deduplication tokens (`plan_inserts`), as the runner does.

    uv run python -m bench.processors           # quick: 200k hits, 100k rows
    uv run python -m bench.processors --full    # 1M hits, 1M rows

(Run it with ``-m``: as a script, ``bench/`` would come first on the path and this file would shadow the
``processors`` package.)
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, SERVER_CPU, conditions, cpu_busy, pyplot, save_plot, wait_quiet, write_result

DATA = ROOT / "tests" / "data"
TARGET_EVENTS_S = 50_000
LOAD_BATCH = 5000
ZIPF_POOL = 100_000  # distinct addresses behind the realistic mix's random 80 %


def corpus() -> list[dict[str, Any]]:
    lines = [
        line
        for name in ("corpus_hits.jsonl", "extra_hits.jsonl")
        for line in (DATA / name).read_text().splitlines()
    ]
    return [json.loads(line) for line in lines if line.strip()]


def _public_ip(rng: random.Random, v6: bool) -> str:
    while True:
        if v6:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                (0x2000 << 112) | rng.getrandbits(125)  # 2000::/3, global unicast
            )
        else:
            addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if addr.is_global:
            return str(addr)


class _ZipfAddresses:
    """Public addresses drawn from a pool of ``size`` (70 % IPv4), rank r with weight 1/r."""

    def __init__(self, size: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._pool = [_public_ip(self._rng, v6=self._rng.random() >= 0.7) for _ in range(size)]
        self._weights = list(itertools.accumulate(1 / rank for rank in range(1, size + 1)))

    def draw(self) -> str:
        return self._rng.choices(self._pool, cum_weights=self._weights)[0]


def build_hits(count: int, seed: int = 7, *, repeated: bool = False) -> list[bytes]:
    """``count`` raw hits as bus records (see the module docstring for the two mixes: every random address
    distinct, or with ``repeated`` drawn Zipf-like from a pool)."""
    from schemas.events import RawHit, encode_hit

    rng = random.Random(seed)
    zipf = _ZipfAddresses(ZIPF_POOL, seed + 1) if repeated else None
    entries = corpus()
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(count):
        entry = entries[i % len(entries)]
        roll = rng.random()
        v6 = roll > 0.2 + 0.8 * 0.7
        if roll < 0.2:
            ip = entry["ip"]
        elif zipf is not None:
            ip = zipf.draw()
        else:
            ip = _public_ip(rng, v6=v6)
        kind = "click" if rng.random() < 0.1 else "open"
        received = now_ms - rng.randrange(0, 3_600_000)
        base: dict[str, Any] = {
            "hit_id": f"{received:012x}{rng.getrandbits(64):016x}",
            "kind": kind,
            "received_at_ms": received,
            "ip": ip,
            "user_agent": entry["ua"],
        }
        if rng.random() < 0.02:
            invalid = {"token_error": "bad signature", "token_head": "AAAAforged"}
            hit = RawHit(**base, token_ok=False, **invalid)
        else:
            hit = RawHit(
                **base,
                token_ok=True,
                account="acme",
                campaign_id=f"campaign-{i % 50}",
                message_id=f"msg-{i % 20_000:06d}",
                sent_at=received // 1000 - int(entry.get("after_s", rng.randrange(1, 86_400))),
                link_index=0 if kind == "click" else -1,
                url="https://shop.example.com/sale" if kind == "click" else "",
                recipient_tag=f"{rng.getrandbits(64):016x}",
            )
        out.append(encode_hit(hit))
    return out


def make_processor() -> Any:
    from processors.cloud_ranges import load_classification_ranges
    from processors.geo import GeoLookup
    from processors.pipeline import HitProcessor

    # The table `serve` classifies with: the curated ranges and the cloud lists (bundled, or refreshed ones).
    return HitProcessor(GeoLookup(None, None), load_classification_ranges()[0])


def _timed(loop: Callable[[], None]) -> tuple[float, float]:
    """CPU seconds of this process and wall seconds taken by ``loop``. Rates are per CPU second, so other
    work that takes turns on the same core does not lower them (it still shares the caches: the wall/CPU
    ratio is recorded to show how much it was there)."""
    cpu, wall = time.process_time(), time.perf_counter()
    loop()
    return time.process_time() - cpu, time.perf_counter() - wall


def time_stages(raws: Sequence[bytes]) -> dict[str, tuple[float, float]]:
    """(CPU, wall) seconds for decode; decode + process; decode + process + row over ``raws``, each on a
    cold GeoIP cache (a new processor per pass)."""
    from processors.flood import ReplayFlood
    from processors.rows import row
    from schemas.events import decode_hit

    def decode() -> None:
        for raw in raws:
            decode_hit(raw)

    def process(processor: Any) -> None:
        for raw in raws:
            processor.process(decode_hit(raw), "bench")

    def whole(processor: Any) -> None:
        flood = ReplayFlood()
        for raw in raws:
            p = processor.process(decode_hit(raw), "bench")
            row(p, flood.classify(p, 0), "truncate")

    # The UA cache is warm in every pass: the mix has a few dozen distinct UAs, and ua-parser compiles its
    # patterns on first use (a fifth of a second), which would otherwise land in whichever pass came first.
    from processors.useragent import parse_agent

    for entry in corpus():
        parse_agent(entry["ua"])
    first, second = make_processor(), make_processor()
    return {
        "decode": _timed(decode),
        "decode+enrich+classify": _timed(lambda: process(first)),
        "decode+enrich+classify+row": _timed(lambda: whole(second)),
    }


def process_rate(raws: Sequence[bytes], cpu: int | None = None) -> float:
    """Events per CPU second of the whole per-hit path over ``raws`` (optionally pinned to ``cpu``)."""
    return process_run(raws, cpu)["events_per_s"]


def process_run(raws: Sequence[bytes], cpu: int | None = None) -> dict[str, Any]:
    """`process_rate`, with the GeoIP cache's hits and misses over the run (a fresh processor)."""
    from processors.flood import ReplayFlood
    from processors.rows import row
    from schemas.events import decode_hit

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    processor = make_processor()
    flood = ReplayFlood()

    def whole() -> None:
        for raw in raws:
            p = processor.process(decode_hit(raw), "bench")
            row(p, flood.classify(p, 0), "truncate")

    cpu_s = _timed(whole)[0]
    cache = processor.geo.cache_info()
    lookups = cache.hits + cache.misses
    return {
        "events_per_s": len(raws) / cpu_s,
        "us_per_hit": 1e6 * cpu_s / len(raws),
        "geo_cache_hits": cache.hits,
        "geo_cache_misses": cache.misses,
        "geo_cache_hit_ratio": round(cache.hits / lookups, 3) if lookups else 0.0,
    }


def geo_cold_lookup_cost(count: int = 50_000, seed: int = 11) -> dict[str, Any]:
    """The cold GeoIP lookup alone: ``Reader.get`` on the bundled City database over ``count`` distinct
    public IPv4 addresses (no cache in front), split into those with a record (the whole City record is
    decoded into Python dicts: the cost) and those without."""
    import maxminddb

    from processors.geo import bundled_city_db

    rng = random.Random(seed)
    addresses = list(dict.fromkeys(_public_ip(rng, v6=False) for _ in range(count)))
    with maxminddb.open_database(str(bundled_city_db()), maxminddb.MODE_AUTO) as reader:
        found = [ip for ip in addresses if reader.get(ip) is not None]
        missing = [ip for ip in addresses if reader.get(ip) is None]
        rng.shuffle(found)  # not in the order just read (the OS page cache is warm either way)

        def lookups(ips: list[str]) -> Callable[[], None]:
            def run() -> None:
                for ip in ips:
                    reader.get(ip)

            return run

        with_record_s = _timed(lookups(found))[0]
        without_record_s = _timed(lookups(missing))[0] if missing else 0.0
    return {
        "addresses": len(addresses),
        "with_record": len(found),
        "us_per_lookup_with_record": round(1e6 * with_record_s / len(found), 2),
        "us_per_lookup_without_record": round(1e6 * without_record_s / len(missing), 2) if missing else None,
    }


def repetition_and_geoip(raws: Sequence[bytes], cpu: int) -> dict[str, Any]:
    """The whole path over both mixes, with their GeoIP cache hit ratios, and the GeoIP ceiling; printed."""

    def rounded(run: dict[str, Any]) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}

    worst = rounded(process_run(raws, cpu))
    realistic = rounded(process_run(build_hits(len(raws), repeated=True), cpu))
    cold = geo_cold_lookup_cost()
    ceiling = geo_ceiling(raws, cold)
    print(
        f"  worst case, the headline's mix (every random address distinct), again in one pass: "
        f"{worst['events_per_s']:,.0f} events/s, GeoIP cache hit ratio {worst['geo_cache_hit_ratio']:.0%}"
    )
    print(
        f"  realistic repetition (random addresses Zipf-drawn from {ZIPF_POOL:,}): "
        f"{realistic['events_per_s']:,.0f} events/s, "
        f"GeoIP cache hit ratio {realistic['geo_cache_hit_ratio']:.0%}"
    )
    print(
        f"  a cold GeoIP City lookup alone: {cold['us_per_lookup_with_record']} us with a record, "
        f"{cold['us_per_lookup_without_record']} us without; the worst case pays one with a record on "
        f"{ceiling['hits_with_cold_record_pct']}% of hits: a floor of {ceiling['floor_us_per_hit']} us "
        f"per hit, a ceiling of {ceiling['ceiling_events_per_s']:,} events/s on one core if nothing else "
        f"cost anything"
    )
    return {
        "worst_case": worst,
        "realistic_repetition": {"zipf_pool": ZIPF_POOL, **realistic},
        "geo_cold_lookup": cold,
        "geo_ceiling": ceiling,
    }


def geo_ceiling(raws: Sequence[bytes], cold: dict[str, Any]) -> dict[str, Any]:
    """How many of ``raws`` need a cold City lookup (the first sight of a public address), with and without
    a record, and the floor their cost alone puts under the per-hit time (not timed here)."""
    import maxminddb

    from processors.address import parse_address
    from processors.geo import bundled_city_db
    from schemas.events import decode_hit

    seen: set[str] = set()
    with_record = without = 0
    with maxminddb.open_database(str(bundled_city_db()), maxminddb.MODE_AUTO) as reader:
        for raw in raws:
            address = parse_address(decode_hit(raw).ip)
            if address is None or not address.is_global or address.text in seen:
                continue
            seen.add(address.text)
            if reader.get(address.text) is None:
                without += 1
            else:
                with_record += 1
    per_miss = cold["us_per_lookup_without_record"] or 0.0
    floor_us = (with_record * cold["us_per_lookup_with_record"] + without * per_miss) / len(raws)
    return {
        "hits_with_cold_record_pct": round(100 * with_record / len(raws), 1),
        "hits_with_cold_miss_pct": round(100 * without / len(raws), 1),
        "floor_us_per_hit": round(floor_us, 2),
        "ceiling_events_per_s": round(1e6 / floor_us),
    }


def profile_shares(raws: Sequence[bytes]) -> dict[str, Any]:
    """Where the per-hit time goes (cProfile over ``raws``; its overhead inflates everything alike): the
    repository's functions by cumulative share, and the time spent inside the standard library's
    ``ipaddress`` module and the MaxMind reader, wherever they were called from."""
    import cProfile
    import pstats

    from processors.rows import row
    from schemas.events import decode_hit

    processor = make_processor()
    profiler = cProfile.Profile()
    profiler.enable()
    for raw in raws:
        p = processor.process(decode_hit(raw), "bench")
        row(p, p.classification, "truncate")
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in stats.values())
    ours = []
    for (file, _, func), (_, _, _, cumulative, _) in stats.items():
        rel = Path(file).resolve()
        if rel.is_relative_to(ROOT / "processors") or rel.is_relative_to(ROOT / "schemas"):
            ours.append((f"{rel.relative_to(ROOT)}:{func}", round(100 * cumulative / total, 1)))
    ours.sort(key=lambda item: -item[1])
    ipaddress_own = sum(
        tt for (file, _, _), (_, _, tt, _, _) in stats.items() if file.endswith("/ipaddress.py")
    )
    maxmind_own = sum(tt for (file, _, func), (_, _, tt, _, _) in stats.items() if "maxminddb" in file + func)
    return {
        "functions_cumulative_pct": ours[:14],
        "ipaddress_module_pct": round(100 * ipaddress_own / total, 1),
        "maxminddb_reader_pct": round(100 * maxmind_own / total, 1),
    }


def load_rate(raws: Sequence[bytes], rows_wanted: int, *, without_views: bool = False) -> dict[str, Any]:
    """Rows/s into a fresh embedded ClickHouse, ``LOAD_BATCH`` rows per insert. ``without_views``: drop the
    schema's materialized views first, to see what the rollups they feed cost each insert."""
    from processors.rows import plan_inserts, row
    from schemas.events import decode_hit
    from schemas.store import Store, parse_store_url

    processor = make_processor()
    batches: list[dict[str, list[list[Any]]]] = []
    n = 0
    while n < rows_wanted:
        by_table: dict[str, list[list[Any]]] = {}
        for raw in raws[n % len(raws) : n % len(raws) + LOAD_BATCH]:
            p = processor.process(decode_hit(raw), "bench")
            table, values = row(p, p.classification, "truncate")
            values[0] = f"{values[0]}{n:08x}"  # rows beyond len(raws) repeat hits: keep hit ids distinct
            by_table.setdefault(table, []).append(values)
            n += 1
        batches.append(by_table)
    with tempfile.TemporaryDirectory(prefix="pixelpipe-load-") as tmp:
        store = Store.connect(parse_store_url(f"chdb://{tmp}/ch"))
        try:
            mvs = (
                "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'"
            )
            views = [name for (name,) in store.query(mvs, {"db": store.database})]
            if without_views:
                for name in views:
                    store.command(f"DROP VIEW {store.database}.{name}")
            plans = [plan_inserts(b) for b in batches]
            start = time.perf_counter()
            for batch in plans:
                for plan in batch:
                    store.insert(plan.table, plan.columns, plan.rows, dedup_token=plan.dedup_token)
            took = time.perf_counter() - start
            stored = store.query(
                f"SELECT (SELECT count() FROM {store.database}.events) + "  # noqa: S608 - our own database name
                f"(SELECT count() FROM {store.database}.filtered_hits)"
            )[0][0]
        finally:
            store.close()
    return {
        "materialized_views": [] if without_views else views,
        "rows": n,
        "stored": stored,
        "batches": len(plans),
        "batch_rows": LOAD_BATCH,
        "seconds": round(took, 3),
        "rows_per_s": round(n / took),
        "ms_per_batch": round(1000 * took / len(plans), 1),
    }


def main() -> None:
    from bench.common import argparser

    parser = argparser(__doc__)
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="leave Python's collector at its defaults (pixelpipe's processes tune it at start-up)",
    )
    args = parser.parse_args()
    hits = 1_000_000 if args.full else 200_000
    rows_wanted = 1_000_000 if args.full else 100_000
    cpu = int(SERVER_CPU)
    os.sched_setaffinity(0, {cpu})
    result: dict[str, Any] = {"mode": "full" if args.full else "quick", "hits": hits, "pinned_cpu": cpu}
    print(f"building {hits:,} raw hits", flush=True)
    raws = build_hits(hits)
    if not args.default_gc:
        from pixelpipe.cli import tune_gc

        tune_gc()  # as every pixelpipe process does once started
    result["gc"] = "python's defaults" if args.default_gc else "tuned as in pixelpipe's processes (tune_gc)"
    result["conditions_start"] = wait_quiet(0.15, args.wait_quiet)
    stages = time_stages(raws)
    rates = {name: round(hits / cpu_s) for name, (cpu_s, _) in stages.items()}
    result["stages_cpu_s"] = {k: round(v[0], 3) for k, v in stages.items()}
    result["stages_wall_s"] = {k: round(v[1], 3) for k, v in stages.items()}
    result["stages_events_per_s"] = rates
    cpu_s = {k: v[0] for k, v in stages.items()}
    per_hit_us = {
        "decode": 1e6 * cpu_s["decode"] / hits,
        "enrich+classify": 1e6 * (cpu_s["decode+enrich+classify"] - cpu_s["decode"]) / hits,
        "row": 1e6 * (cpu_s["decode+enrich+classify+row"] - cpu_s["decode+enrich+classify"]) / hits,
    }
    result["per_hit_us"] = {k: round(v, 2) for k, v in per_hit_us.items()}
    result["events_per_s"] = rates["decode+enrich+classify+row"]
    result["events_per_s_warm_caches"] = round(process_rate(raws[: hits // 4] * 4, cpu))
    result["target_events_per_s"] = TARGET_EVENTS_S
    result["met"] = result["events_per_s"] >= TARGET_EVENTS_S
    share = sum(v[0] for v in stages.values()) / sum(v[1] for v in stages.values())
    result["own_cpu_share"] = round(share, 3)
    print(
        f"  worst case (every random address distinct, cold GeoIP cache; the headline): "
        f"{result['events_per_s']:,} events per CPU second on one core (target {TARGET_EVENTS_S:,}); "
        f"the loop had {share:.0%} of its core"
    )
    print(f"  microseconds per hit: {result['per_hit_us']}")
    print(f"  with warm caches (each address seen 4 times): {result['events_per_s_warm_caches']:,} events/s")
    result.update(repetition_and_geoip(raws, cpu))
    result["profile"] = profile_shares(raws[:20_000])
    print(
        f"  where the time goes (cProfile, cumulative %): {result['profile']['functions_cumulative_pct'][:8]}"
    )
    print(
        f"  inside the stdlib ipaddress module: {result['profile']['ipaddress_module_pct']}%, "
        f"the MaxMind reader: {result['profile']['maxminddb_reader_pct']}%"
    )
    result["conditions_mid"] = {"cpu_busy": round(cpu_busy(), 3), "loadavg": os.getloadavg()}
    print(f"loading {rows_wanted:,} rows into chDB in batches of {LOAD_BATCH}", flush=True)
    result["loader"] = load_rate(raws, rows_wanted)
    print(f"  {result['loader']['rows_per_s']:,} rows/s ({result['loader']['ms_per_batch']} ms per batch)")
    if result["loader"]["materialized_views"]:
        result["loader_without_views"] = load_rate(raws, rows_wanted, without_views=True)
        views = ", ".join(result["loader"]["materialized_views"])
        print(
            f"  without the materialized views ({views}): {result['loader_without_views']['rows_per_s']:,} "
            f"rows/s ({result['loader_without_views']['ms_per_batch']} ms per batch)"
        )
    result["conditions_end"] = conditions()
    write_result("processors", result)
    _plot(result)


def _plot(result: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    parts = result["per_hit_us"]
    left = 0.0
    for (name, us), color in zip(parts.items(), ("#9cf", "#36c", "#2a7"), strict=True):
        ax.barh(["per hit"], [us], left=left, color=color, label=f"{name} {us:.1f} us")
        left += us
    ax.axvline(1e6 / TARGET_EVENTS_S, ls="--", c="r", lw=1, label="target: 50k/s = 20 us")
    ax.set_xlabel("microseconds per hit, one core")
    ax.set_title(f"Processor: {result['events_per_s']:,} events/s (cold GeoIP cache)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    save_plot(fig, "processors")
    plt.close(fig)


if __name__ == "__main__":
    main()
