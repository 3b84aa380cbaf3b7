"""Scaling: how edge throughput and processor throughput change from 1 to 2 workers, and how query latency
grows from 1 M to 10 M events.

How (issue 7, benchmark 5), on a 2-core machine, where "2 workers" leaves nothing for anything else:

- **Edge, 1 -> 2 workers.** ``pixelpipe edge`` has no ``--workers`` flag, so a second worker is a second
  ``pixelpipe edge`` process on its own port (as a deployment behind a load balancer would run them), both
  publishing to the same private Kafka broker; wrk drives each with its own process (32 connections each).
  Three configurations: (a) 1 edge pinned to CPU 0, wrk and the broker on CPU 1 (benchmark 1's setup);
  (b) 1 edge, nothing pinned; (c) 2 edges, nothing pinned. (b) -> (c) is the scaling step; with wrk and the
  broker needing most of a core themselves, the second edge mostly takes CPU from them.
- **Processor, 1 -> 2 processes.** Two ``pixelpipe process`` in one consumer group need a ClickHouse server
  (the embedded chDB allows one process per data directory) and none is available here, so this measures the
  pure per-hit processing rate (decode -> enrich -> classify -> row, as `bench.processors`) in 1 vs. 2 OS
  processes, each pinned to its own core, started together, each given half of the hits; the aggregate rate
  is all hits over the wall time from the first start to the last finish.
- **Queries, 1 M -> 10 M events.** For each size: ``bench/generate.py`` fills a fresh chDB directory, then
  ``bench/query_latency.py`` (both maintained with the query benchmark) measures p50/p99 of campaign stats,
  breakdowns and best-send-time; the curve is plotted.

    uv run python -m bench.scaling            # quick: 10 s wrk runs, 200k hits, queries at 1 M and 2 M
    uv run python -m bench.scaling --full     # 30 s runs, 1 M hits, queries at 1, 2, 5, 10 M
    uv run python -m bench.scaling --only queries --query-sizes 1e6,10e6 --query-runs 50
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LOAD_CPU,
    PYTHON,
    ROOT,
    SERVER_CPU,
    BenchError,
    Role,
    argparser,
    cleanup,
    conditions,
    kafka,
    kafka_pid,
    per_cpu_busy,
    per_cpu_times,
    pin,
    pixel_paths,
    pyplot,
    role_env,
    run_wrk,
    save_plot,
    scratch,
    tree_cpu_seconds,
    wait_quiet,
    write_result,
)

QUERY_SCRIPT = ROOT / "bench" / "query_latency.py"
GENERATE_SCRIPT = ROOT / "bench" / "generate.py"


# -- edge ---------------------------------------------------------------------------------------------------


def edge_scaling(duration_s: float, tmp: Path) -> list[dict[str, Any]]:
    paths = pixel_paths(1000)
    out: list[dict[str, Any]] = []
    with kafka(tmp / "kafka", LOAD_CPU) as bootstrap:
        broker = kafka_pid(tmp / "kafka")
        env = {"PIXELPIPE_KAFKA_BOOTSTRAP": bootstrap, "PIXELPIPE_TOPIC_PREFIX": f"scale{time.time_ns()}"}
        edges = [
            Role(["edge"], role_env(tmp / f"edge{i}", **env), tmp / f"edge{i}.log", cpus=SERVER_CPU)
            for i in range(2)
        ]
        try:
            for edge in edges:
                edge.start()
            pids = [e.pid for e in edges]
            run_wrk([e.base for e in edges], paths, duration_s=3, cpus=None)  # warm both
            configs = (
                ("1 worker, pinned: edge CPU 0, wrk + Kafka CPU 1", 1, SERVER_CPU, LOAD_CPU),
                ("1 worker, nothing pinned", 1, "0,1", None),
                ("2 workers, nothing pinned", 2, "0,1", None),
            )
            for label, workers, edge_cpus, load_cpus in configs:
                for edge in edges:
                    pin(edge.pid, edge_cpus)
                pin(broker, load_cpus or "0,1")
                time.sleep(1)
                run = _edge_run(
                    [e.base for e in edges[:workers]], paths, duration_s, load_cpus, [broker, *pids]
                )
                print(
                    f"  edge, {label}: {run['rps']:,.0f} px/s, p99 {run['p99_ms']:.1f} ms, "
                    f"non-2xx {run['non_2xx']}, others {run['others_cores']} cores",
                    flush=True,
                )
                out.append({"config": label, "workers": workers, **run})
        finally:
            for edge in edges:
                edge.stop()
    return out


def _edge_run(
    bases: list[str], paths: list[str], duration_s: float, load_cpus: str | None, pids: list[int]
) -> dict[str, Any]:
    """wrk against ``bases``, and the cores other work on the machine took meanwhile (all busy time but that
    of ``pids`` and of wrk); repeated, twice at most, when that was over a quarter of a core."""
    attempts = []
    for _ in range(3):
        cpus, ours = per_cpu_times(), sum(tree_cpu_seconds(pid) for pid in pids)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = run_wrk(bases, paths, duration_s=duration_s, cpus=load_cpus)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_s = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
        ours = sum(tree_cpu_seconds(pid) for pid in pids) - ours + wrk_s
        busy = per_cpu_busy(cpus)
        others = round(max(0.0, sum(busy.values()) - ours / r.duration_s), 2)
        attempts.append({**r.as_dict(), "cpu_busy": busy, "others_cores": others, "disturbed": others > 0.25})
        if others <= 0.25:
            break
        wait_quiet(0.15, 60)
    return {**max(attempts, key=lambda a: (not a["disturbed"], a["rps"])), "attempts": len(attempts)}


# -- processor ----------------------------------------------------------------------------------------------

_RAWS: list[bytes] = []  # set before forking, so children inherit the hits instead of pickling them


def _worker(cpu: int, lo: int, hi: int, barrier: Any, results: Any) -> None:
    import os

    from bench.processors import make_processor
    from processors.rows import row
    from schemas.events import decode_hit

    os.sched_setaffinity(0, {cpu})
    processor = make_processor()
    barrier.wait()
    start = time.time()
    for raw in _RAWS[lo:hi]:
        p = processor.process(decode_hit(raw), "bench")
        row(p, p.classification, "truncate")
    results.put((cpu, start, time.time(), hi - lo))


def _processor_run(procs: int, hits: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    share = hits // procs
    children = [
        ctx.Process(target=_worker, args=(cpu, cpu * share, (cpu + 1) * share, barrier, results))
        for cpu in range(procs)
    ]
    cpus = per_cpu_times()
    for child in children:
        child.start()
    done = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    busy = per_cpu_busy(cpus)
    first, last = min(d[1] for d in done), max(d[2] for d in done)
    total = sum(d[3] for d in done)
    return {
        "processes": procs,
        "events_per_s": round(total / (last - first)),
        "per_process": [round(d[3] / (d[2] - d[1])) for d in done],
        "hits": total,
        "cpu_busy": busy,
    }


def processor_scaling(hits: int) -> list[dict[str, Any]]:
    """1 and 2 processes, each the better of two runs (the less disturbed one on a shared machine)."""
    from bench.processors import build_hits

    _RAWS[:] = build_hits(hits)
    out = []
    for procs in (1, 2):
        runs = []
        for _ in range(2):
            wait_quiet(0.15, 60)
            runs.append(_processor_run(procs, hits))
        best = max(runs, key=lambda r: r["events_per_s"])
        rates = f"{best['events_per_s']:,} events/s (per process {best['per_process']})"
        print(f"  processor, {procs} process(es): {rates}", flush=True)
        out.append({**best, "runs": [r["events_per_s"] for r in runs]})
    _RAWS.clear()
    return out


# -- queries ------------------------------------------------------------------------------------------------


def _one_size(events: int, tmp: Path, runs: int) -> dict[str, Any]:
    path, report = tmp / f"q{events}", tmp / f"q{events}.json"
    started = time.monotonic()
    # As modules (-m): run as scripts, bench/ would shadow the `processors` package.
    gen = [PYTHON, "-m", "bench.generate", str(path), "--events", str(events)]
    query = [PYTHON, "-m", "bench.query_latency", str(path), "--json", str(report), "--runs", str(runs)]
    try:
        subprocess.run(gen, cwd=ROOT, check=True)
        generated_s = time.monotonic() - started
        subprocess.run(query, cwd=ROOT, check=True)
    finally:
        cleanup(path)
    if not report.exists():
        raise BenchError(f"bench/query_latency.py wrote no report to {report}")
    return {"events": events, "generate_s": round(generated_s, 1), **json.loads(report.read_text())}


def query_scaling(sizes: list[int], tmp: Path, runs: int) -> list[dict[str, Any]] | str:
    """Generate each size and run the query benchmark on it; a TODO string when its scripts are missing.
    A size whose scripts fail is recorded with the error, and the next size still runs."""
    if not QUERY_SCRIPT.exists() or not GENERATE_SCRIPT.exists():
        return "TODO: bench/query_latency.py (the query benchmark) is not in the tree yet"
    out: list[dict[str, Any]] = []
    for events in sizes:
        try:
            out.append(_one_size(events, tmp, runs))
        except (subprocess.CalledProcessError, BenchError) as exc:
            print(f"  {events:,} events: the query benchmark failed: {exc}", flush=True)
            out.append({"events": events, "error": str(exc)})
    return out


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument("--only", choices=["edge", "processor", "queries"], action="append")
    parser.add_argument("--query-sizes", help="comma-separated event counts (default: by mode)")
    parser.add_argument("--query-runs", type=int, help="requests per query (default: 30 quick, 200 full)")
    args = parser.parse_args()
    only = set(args.only or ["edge", "processor", "queries"])
    duration = 30.0 if args.full else 10.0
    hits = 1_000_000 if args.full else 200_000
    sizes = [1_000_000, 2_000_000, 5_000_000, 10_000_000] if args.full else [1_000_000, 2_000_000]
    if args.query_sizes:
        sizes = [int(float(n)) for n in args.query_sizes.split(",")]
    query_runs = args.query_runs or (200 if args.full else 30)
    previous = _previous()
    result: dict[str, Any] = {"mode": "full" if args.full else "quick", **previous}
    result["conditions_start"] = wait_quiet(0.15, args.wait_quiet)
    tmp = scratch("scaling")
    try:
        if "edge" in only:
            print("edge: 1 -> 2 workers", flush=True)
            result["edge"] = edge_scaling(duration, tmp)
            result["conditions_after_edge"] = conditions()
        if "processor" in only:
            print("processor: 1 -> 2 processes", flush=True)
            result["processor"] = processor_scaling(hits)
            result["conditions_after_processor"] = conditions()
        if "queries" in only:
            print(f"queries: {', '.join(f'{s:,}' for s in sizes)} events", flush=True)
            result["queries"] = query_scaling(sizes, tmp, runs=query_runs)
            if isinstance(result["queries"], str):
                print(f"  {result['queries']}")
    finally:
        cleanup(tmp)
    result["conditions_end"] = conditions()
    write_result("scaling", result)
    _plot(result)
    if isinstance(result.get("queries"), list) and any("error" in q for q in result["queries"]):
        raise SystemExit("bench.scaling: the query benchmark failed for some sizes (see above)")


def _previous() -> dict[str, Any]:
    """Parts not re-run this time (``--only``) are kept from the last result, so the plot stays whole."""
    path = ROOT / "bench" / "results" / "scaling.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return {k: old[k] for k in ("edge", "processor", "queries") if k in old}


def _plot(result: dict[str, Any]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax1, ax2, ax3 = axes
    if result.get("edge"):
        edge = result["edge"]
        labels = ["1 pinned\n(wrk+Kafka CPU 1)", "1 floating", "2 floating"][: len(edge)]
        bars = ax1.bar(labels, [e["rps"] for e in edge], color=["#2a7", "#9cf", "#36c"][: len(edge)])
        for bar, e in zip(bars, edge, strict=True):
            ax1.annotate(f"{e['rps']:,.0f}", (bar.get_x() + bar.get_width() / 2, e["rps"]), ha="center")
        ax1.set_ylabel("pixels/s")
        ax1.set_title("Edge workers (2 cores, wrk + Kafka included)")
    if result.get("processor"):
        proc = result["processor"]
        xs = [p["processes"] for p in proc]
        ax2.plot(xs, [p["events_per_s"] for p in proc], "o-", label="measured")
        ax2.plot(xs, [proc[0]["events_per_s"] * x for x in xs], ":", c="gray", label="linear")
        ax2.axhline(50_000, ls="--", c="r", lw=1, label="target 50k/s (one core)")
        ax2.set_xticks(xs)
        ax2.set_xlabel("processes (one core each)")
        ax2.set_ylabel("events/s")
        ax2.set_title("Processing (decode+enrich+classify+row)")
        ax2.legend(fontsize=8)
    queries = [q for q in result.get("queries") or [] if isinstance(q, dict) and "queries" in q]
    if queries:
        _plot_queries(ax3, queries)
    else:
        ax3.text(0.5, 0.5, "query benchmark: TODO\n(bench/query_latency.py)", ha="center", va="center")
        ax3.set_axis_off()
    save_plot(fig, "scaling")
    plt.close(fig)


# The queries (campaign stats, a breakdown, best send time), largest campaign: the worst case.
PLOTTED = (
    "campaign stats, raw (api.sql.reference) [largest]",
    "campaign stats, rollups (/summary) [largest]",
    "breakdown by country, rollups [largest]",
    "best time, campaign [largest]",
)


def _plot_queries(ax: Any, queries: list[dict[str, Any]]) -> None:
    """One line per query (p50 solid, p99 dashed) over the number of events."""
    xs = [q["events"] / 1e6 for q in queries]
    names = [n for n in PLOTTED if all(n in q.get("queries", {}) for q in queries)]
    for name in names:
        line = ax.plot(xs, [q["queries"][name]["p50_ms"] for q in queries], "o-", label=f"{name} p50")[0]
        ax.plot(xs, [q["queries"][name]["p99_ms"] for q in queries], "x--", color=line.get_color())
    ax.axhline(50, ls="--", c="r", lw=1, label="campaign stats p99 target 50 ms")
    ax.set_yscale("log")
    ax.set_xlabel("million events")
    ax.set_ylabel("ms (p50 solid, p99 dashed)")
    ax.set_title("Query latency vs. data size")
    ax.legend(fontsize=7)


if __name__ == "__main__":
    main()
