"""End to end: pixels through ``pixelpipe edge`` -> Kafka -> ``pixelpipe serve --roles process,api`` (the
processor and the API sharing the embedded ClickHouse), driven at fixed rates by the load generator
(`pixelpipe.loadgen`); hit -> visible-in-the-API latency, and the highest rate sustained with zero loss.

How (issue 7, benchmark 3):

- A private Kafka broker (``scripts/kafka.sh`` on free ports) and the two roles as processes, exactly as an
  operator starts them; nothing is pinned: on two cores the edge, the broker, the processor, the API and the
  generator all compete, and the scheduler places them better than a fixed split would.
- Pixels carry a desktop browser's user agent and, in ``X-Forwarded-For`` (the edge trusts the generator's
  127.0.0.1), an address in one of `CLIENT_NETWORKS` residential /24s; the generator spreads them over as
  many messages as keep each (message, network) pair within 5 hits a minute, so none is a replay flood and
  each is enriched, classified human and counted, with its notice, as a person's; 1 % are clicks (held 1.5 s
  in the burst window before they are stored, like any click).
- Each step is one `run_loadgen` run in a fresh campaign: the answered pixels must all be counted (opens ==
  pixels answered 200, clicks == clicks answered 302, no hit filtered as a replay flood); visibility is
  sampled through ``GET /v1/messages``; and the core's ``pixelpipe_hit_to_stored_seconds`` histogram gives
  hit -> stored for every hit of the step.
- A step is *sustained* when the generator achieved >= 95 % of the asked rate, every request was answered
  2xx/3xx, every answered hit was counted once, and the sampled visibility p99 stayed within the contract's
  hard limit (3 s), i.e. the processor kept up rather than building a backlog.
- The ramp goes up until a step is not sustained. Last, one more 2k/s run (not a measured step) with py-spy
  on the core process says where its Python time goes (`CORE_AREAS`).

    uv run python -m bench.end_to_end            # quick: 2k/s for 30 s, then a ramp of 15 s steps
    uv run python -m bench.end_to_end --full     # 2k/s, then ramp steps of 10 minutes each
    uv run python -m bench.end_to_end --target-seconds 600 --ramp ''    # only 10 minutes at 2k/s
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    API_KEY,
    PYTHON,
    Role,
    argparser,
    cleanup,
    conditions,
    histogram_quantile,
    kafka,
    kafka_pid,
    per_cpu_busy,
    per_cpu_times,
    process_cpu_seconds,
    pyplot,
    role_env,
    save_plot,
    scrape,
    scratch,
    thread_cpu_seconds,
    wait_quiet,
    write_result,
)
from bench.edge_vs_nginx import summarize_stacks
from pixelpipe.loadgen import LoadResult, run_loadgen

TARGET_P99_S = 1.0
TARGET_RATE = 2000.0
TARGET_SUSTAINED = 10_000.0
HARD_LIMIT_S = 3.0
# Client /24s the generator rotates over: one registration batch of messages (469) is enough at 10k/s.
CLIENT_NETWORKS = 256
LAG = "pixelpipe_hit_to_stored_seconds"
# Where the core process's Python time goes (py-spy --gil: only the thread holding the GIL is sampled, so the
# shares follow Python CPU; time inside chDB's C++ with the GIL released is not in them).
CORE_AREAS = (
    ("processing: decode, enrich, classify, rows", ("HitRunner._process",)),
    ("ClickHouse inserts (clickhouse-connect -> chDB)", ("Store.insert",)),
    (
        "API requests (the generator's polls, registration)",
        ("api/messages.py", "api/campaigns.py", "litestar/"),
    ),
    ("notifications (notices topic, hub, webhooks, live)", ("notice", "Notice", "notify", "webhook")),
    ("Kafka consumer: fetch and decode (aiokafka)", ("aiokafka/", "kafka_source")),
    ("event loop and the rest", ("",)),
)
PROFILE_S = 10.0


def sustained(r: LoadResult, stored_p99_s: float | None) -> bool:
    """The rate achieved, every request answered, nothing lost, and the p99 latency within the hard limit:
    the sampled visibility's, or (sampling off: ``--no-sampling``) the core's hit -> stored histogram's."""
    errors = sum(n for status, n in r.statuses.items() if status not in ("200", "302"))
    p99 = r.visible_p99_s if r.samples else stored_p99_s
    return (
        r.achieved_rate >= 0.95 * r.rate
        and errors == 0
        and r.zero_loss
        and p99 is not None
        and p99 <= HARD_LIMIT_S
    )


def _lag_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(LAG)}


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = process_cpu_seconds(pid)
        except OSError:
            out[name] = 0.0
    return out


def _spy(pid: int, out: Path, delay_s: float) -> subprocess.Popen[bytes]:
    """py-spy on ``pid`` for `PROFILE_S` seconds, from ``delay_s`` on (when registration is over)."""
    spy = Path(PYTHON).parent / "py-spy"
    record = f"{spy} record --gil --nonblocking -r 100 -d {PROFILE_S:g} -f raw -o {out} --pid {pid}"
    cmd = f"sleep {delay_s:g} && exec {record}"
    return subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def step(
    rate: float,
    duration_s: float,
    edge: Role,
    core: Role,
    pids: dict[str, int],
    *,
    profile: Path | None = None,
    sample_every: int = 100,
) -> dict[str, Any]:
    """One fixed-rate run; its loadgen result, hit -> stored from the core's histogram, CPU per process; with
    ``profile``, a py-spy profile of the core in the middle of it."""
    spy = _spy(core.pid, profile, 8.0 + duration_s / 4) if profile is not None else None
    before, cpu_before, cpus = scrape(core.base), _cpu(pids), per_cpu_times()
    threads_before = thread_cpu_seconds(core.pid)
    started = time.monotonic()
    result = run_loadgen(
        edge.base,
        core.base,
        API_KEY,
        rate,
        duration_s,
        networks=CLIENT_NETWORKS,
        settle_timeout_s=max(60.0, duration_s),
        sample_every=sample_every,
    )
    wall = time.monotonic() - started
    lag = _lag_delta(before, scrape(core.base))
    cpu_after = _cpu(pids)
    threads_after = thread_cpu_seconds(core.pid)
    by_thread = {k: v - threads_before.get(k, 0.0) for k, v in threads_after.items()}
    stored_p99_s = histogram_quantile(lag, LAG, 0.99)
    out: dict[str, Any] = {
        "loadgen": result.as_dict(),
        "sustained": sustained(result, stored_p99_s),
        "stored_p50_s": histogram_quantile(lag, LAG, 0.5),
        "stored_p99_s": stored_p99_s,
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 1) for k in pids},
        # The core's CPU by thread name: its Python thread(s) apart from chDB's (py-spy --gil sees only the
        # former).
        "core_cpu_by_thread": {
            k: round(v, 2) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v >= 0.05
        },
        "cpu_busy": per_cpu_busy(cpus),
        "wall_s": round(wall, 1),
    }
    # CPU that other work on the machine took meanwhile, in cores: all busy time minus ours.
    ours = sum(out["cpu_seconds"].values()) / wall
    out["others_cores"] = round(max(0.0, sum(out["cpu_busy"].values()) - ours), 2)
    out["disturbed"] = out["others_cores"] > 0.25
    if spy is not None and profile is not None:
        spy.wait(timeout=60)
        if profile.exists():
            out["core_profile"] = summarize_stacks(profile.read_text(), areas_table=CORE_AREAS)
    print(
        f"  {rate:>7,.0f}/s: achieved {result.achieved_rate:,.0f}/s, visible p50 {_s(result.visible_p50_s)} "
        f"p99 {_s(result.visible_p99_s)}, stored p99 <= {_s(out['stored_p99_s'])}, "
        f"counted {result.counted}/{result.answered}, replay floods {result.replay_floods}: "
        f"{'' if out['sustained'] else 'NOT '}sustained; {result.messages} messages, "
        f"wait for a connection <= {result.max_lag_ms:,.0f} ms, "
        f"generator late <= {result.schedule_lag_ms:,.0f} ms; CPU s {out['cpu_seconds']}, "
        f"others {out['others_cores']} cores",
        flush=True,
    )
    print(f"    the core's CPU seconds by thread: {out['core_cpu_by_thread']}", flush=True)
    return out


def steady_step(
    rate: float,
    duration_s: float,
    edge: Role,
    core: Role,
    pids: dict[str, int],
    *,
    profile: Path | None = None,
    sample_every: int = 100,
) -> dict[str, Any]:
    """`step`, repeated (twice at most, after waiting for a quieter moment) when other work on the machine
    took more than a quarter of a core meanwhile and the step was not sustained; every attempt is kept."""
    attempts = []
    for _ in range(3):
        conditions_before = wait_quiet(0.15, 60)
        outcome = step(rate, duration_s, edge, core, pids, profile=profile, sample_every=sample_every)
        outcome["conditions_before"] = conditions_before
        attempts.append(outcome)
        if outcome["sustained"] or not outcome["disturbed"]:
            break
        print("    disturbed by other work on the machine; again", flush=True)
    best = max(attempts, key=lambda a: (a["sustained"], not a["disturbed"]))
    return {**best, "attempts": len(attempts), "all_attempts": [a["loadgen"] for a in attempts]}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def main() -> None:  # noqa: PLR0915 - one straight script: start, ramp, profile, stop
    parser = argparser(__doc__)
    parser.add_argument("--target-seconds", type=float, help="seconds at 2k/s (default: 30 quick, 600 full)")
    parser.add_argument(
        "--step-seconds", type=float, help="seconds per ramp step (default: 15 quick, 600 full)"
    )
    parser.add_argument("--ramp", default="1000,3000,4000,6000,8000,10000,12000", help="rates of the ramp")
    parser.add_argument(
        "--no-sampling",
        action="store_true",
        help="no visibility samples (their polls cost the core about 20 ms of CPU each): latency from the "
        "core's hit -> stored histogram only, which then decides whether a step is sustained",
    )
    args = parser.parse_args()
    sample_every = 0 if args.no_sampling else 100
    target_s = args.target_seconds or (600.0 if args.full else 30.0)
    step_s = args.step_seconds or (600.0 if args.full else 15.0)
    ramp = [float(r) for r in args.ramp.split(",") if r.strip()]
    tmp = scratch("e2e")
    result: dict[str, Any] = {
        "mode": "full" if args.full else "quick",
        "target_duration_s": target_s,
        "visibility_sampled": not args.no_sampling,
    }
    result["conditions_start"] = wait_quiet(0.15, args.wait_quiet)
    try:
        with kafka(tmp / "kafka", None) as bootstrap:
            prefix = f"e2e{time.time_ns()}"
            common = {
                "PIXELPIPE_KAFKA_BOOTSTRAP": bootstrap,
                "PIXELPIPE_TOPIC_PREFIX": prefix,
                "PIXELPIPE_CONSUMER_GROUP": f"{prefix}-processors",
                "PIXELPIPE_TRUSTED_PROXIES": "127.0.0.1/32",
            }
            edge = Role(["edge"], role_env(tmp / "edge", **common), tmp / "edge.log", cpus=None)
            edge.start()
            core_env = role_env(tmp / "core", **common, PIXELPIPE_PUBLIC_URL=edge.base)
            core = Role(["serve", "--roles", "process,api"], core_env, tmp / "core.log", cpus=None)
            try:
                core.start()
                # The generator runs in this process: its CPU says whether it was the limit.
                pids = {
                    "edge": edge.pid,
                    "core": core.pid,
                    "kafka": kafka_pid(tmp / "kafka"),
                    "loadgen": os.getpid(),
                }
                print("warm-up: 200/s for 5 s", flush=True)
                step(200, 5, edge, core, pids)
                print(f"target: {TARGET_RATE:,.0f}/s for {target_s:.0f} s", flush=True)
                result["at_target"] = steady_step(
                    TARGET_RATE, target_s, edge, core, pids, sample_every=sample_every
                )
                result["ramp"] = []
                print(f"ramp: {step_s:.0f} s per step until a step is not sustained", flush=True)
                for rate in ramp:
                    outcome = steady_step(rate, step_s, edge, core, pids, sample_every=sample_every)
                    result["ramp"].append({"rate": rate, **outcome})
                    if not outcome["sustained"]:
                        break
                # Profiled apart from the measured steps: even a non-blocking py-spy takes CPU from them.
                print("profiling the core at 2k/s (not a measured step)", flush=True)
                profiled = step(TARGET_RATE, 25.0, edge, core, pids, profile=tmp / "core-profile.txt")
                if "core_profile" in profiled:
                    result["core_profile"] = profiled["core_profile"]
                    print(
                        f"  where its Python time goes (%): {profiled['core_profile']['areas_pct']}",
                        flush=True,
                    )
            finally:
                core.stop()
                edge.stop()
                _keep_logs(tmp, result)
    finally:
        cleanup(tmp)
    result["conditions_end"] = conditions()
    result["targets"] = _verdicts(result)
    for name, v in result["targets"].items():
        print(f"  {name}: {v['value']} (target {v['target']}): {'met' if v['met'] else 'MISSED'}")
    write_result("end_to_end", result)
    _plot(result)


def _keep_logs(tmp: Path, result: dict[str, Any]) -> None:
    """The last lines of each role's log go into the result: warnings there explain odd numbers."""
    for name in ("edge", "core"):
        log = tmp / f"{name}.log"
        if log.exists():
            result[f"{name}_log_tail"] = log.read_text(errors="replace").splitlines()[-15:]


def _verdicts(result: dict[str, Any]) -> dict[str, Any]:
    at = result["at_target"]
    p99 = at["loadgen"]["visible_p99_s"]
    best = max((s["rate"] for s in result["ramp"] if s["sustained"]), default=0.0)
    if at["sustained"]:
        best = max(best, TARGET_RATE)
    result["highest_sustained_rate"] = best
    return {
        "visible_p99_at_2k_s": {
            "target": f"<= {TARGET_P99_S} s at 2k/s",
            "value": p99,
            "met": p99 is not None and p99 <= TARGET_P99_S and at["sustained"],
        },
        "zero_loss_at_2k": {
            "target": "counted == answered, no replay floods",
            "value": at["loadgen"]["zero_loss"],
            "met": at["loadgen"]["zero_loss"],
        },
        "highest_sustained_rate": {
            "target": f">= {TARGET_SUSTAINED:,.0f}/s",
            "value": best,
            "met": best >= TARGET_SUSTAINED,
        },
    }


def _plot(result: dict[str, Any]) -> None:
    plt = pyplot()
    steps = [{"rate": TARGET_RATE, **result["at_target"]}, *result["ramp"]]
    steps.sort(key=lambda s: s["rate"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    rates = [s["rate"] for s in steps]
    ax1.plot(rates, [s["loadgen"]["achieved_rate"] for s in steps], "o-", label="achieved")
    ax1.plot(rates, rates, ":", c="gray", label="asked")
    for s in steps:
        if not s["sustained"]:
            ax1.annotate("not sustained", (s["rate"], s["loadgen"]["achieved_rate"]), fontsize=8, color="r")
    ax1.axvline(TARGET_SUSTAINED, ls="--", c="r", lw=1, label="target 10k/s")
    ax1.set_xlabel("asked hits/s")
    ax1.set_ylabel("answered hits/s")
    ax1.set_title("Rate: edge -> Kafka -> processor -> ClickHouse")
    ax1.legend(fontsize=8)
    ax2.plot(rates, [s["loadgen"]["visible_p50_s"] or 0 for s in steps], "o-", label="visible p50 (sampled)")
    ax2.plot(rates, [s["loadgen"]["visible_p99_s"] or 0 for s in steps], "o-", label="visible p99 (sampled)")
    ax2.plot(rates, [s["stored_p99_s"] or 0 for s in steps], "x--", label="stored p99 (all hits, bucket)")
    ax2.axhline(TARGET_P99_S, ls="--", c="r", lw=1, label="target p99 1 s")
    ax2.set_xlabel("asked hits/s")
    ax2.set_ylabel("seconds from the pixel to the API")
    ax2.set_title("Hit -> visible latency")
    ax2.legend(fontsize=8)
    save_plot(fig, "end-to-end")
    plt.close(fig)


if __name__ == "__main__":
    main()
