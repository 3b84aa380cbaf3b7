"""Read time's cost at the edge (issue 18): plain pixels' rate and p99 with N read-time pixels held open, and
the memory per held connection.

How: as `bench.edge_vs_nginx` (its measuring functions, the same cores): ``pixelpipe edge`` on CPU 0
(``SERVER_CPU``) publishing to a private Kafka broker; ``wrk`` on CPU 1 with 64 connections over 1,000 plain
pixels, first at saturation, then paced at half the edge's saturation rate (latency at a given load); nginx's
``empty_gif`` on CPU 0 once, for the ratio. Then the same two edge runs again while clients (processes of
their own, on CPU 1) keep N timed opens' pixels held: each opens its share of the N connections, asks each for
a timed open's pixel, reads the frames every 5 s at the lowest priority (`_Held`), and asks again on the same
connection if a response ends. The cap is set past the phase (``PIXELPIPE_READ_TIME_CAP_SECONDS=300``), so
the N stay held while wrk runs; the held-connection cap is N.

The edge hands held pixels to its read-time holder processes (``PIXELPIPE_READ_TIME_HOLDERS``,
`ingest.holder_link`), which write the frames at the lowest priority; the benchmark moves them to CPU 1 as
they start (``--holder-cpu``; ``--holder-cpu 0``: the edge's core), as an operator gives them cores of
their own (``PIXELPIPE_READ_TIME_HOLDER_CPUS``), and their CPU and writes are reported apart.
``--holders 0`` measures the edge holding its pixels itself (its own core writes the frames).

Reported: both runs' rate, p50, p99, the ratio to nginx, the edge's CPU share (and the holders'), the edge's
and the holders' RSS idle and with N held ((with - idle) / N per connection), and the edge's own count of
held pixels and read records afterwards (every connection a client closed makes one ``closed`` record).

The open-file limit bounds one process's share of N: each held connection is a file descriptor in its holder
and in its client, and a process here may not raise its hard limit (20,000). So N is spread over as many
clients and holders as it takes (``hard limit - 1,000`` each at most); the edge itself keeps only the
connections in flight.

    uv run python -m bench.read_time                   # quick: 10 s per run, N = 20,000
    uv run python -m bench.read_time --held 5000       # a smaller N (a busy machine)
    uv run python -m bench.read_time --holders 0       # the edge holds them itself (N must fit its limit)
    uv run python -m bench.read_time --full            # 30 s per run
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    LOAD_CPU,
    PYTHON,
    ROOT,
    SECRET,
    SERVER_CPU,
    BenchError,
    Role,
    argparser,
    children,
    cleanup,
    conditions,
    ensure_tools,
    kafka,
    kafka_pid,
    metric,
    nginx,
    pin,
    pinned,
    pixel_paths,
    role_env,
    run_wrk,
    scrape,
    scratch,
    wait_quiet,
    write_result,
)
from bench.edge_vs_nginx import TARGET_P99_MS, measured, wait_acked, warm
from ingest.read_gif import FRAME

CAP_S = 300
FD_SPARE = 1_000  # file descriptors a process keeps beside the held connections (wrk's, Kafka's, the spool)
RAMP_PER_S = 1_000  # new held connections a second while a client ramps up
READ_EVERY_S = 5.0  # how often a client reads its held connections (see `_Held`)


# -- the clients (subprocesses: ``python -m bench.read_time --hold HOST PORT N SECONDS``)


class _Held:
    """One connection holding a timed open's pixel: it reads the response and, should the response end (the
    cap), asks again on the same connection. The client reads its connections in sweeps, every `READ_EVERY_S`
    (the frames wait in each socket's receive buffer meanwhile: a few hundred bytes), with plain non-blocking
    reads, and runs at the lowest priority (``SCHED_IDLE``): it stands for mail clients on other machines, and
    shares wrk's core here. Reading each frame the second it came (19,000 wake-ups a second), then reading
    every 5 s through asyncio transports (a resume, a wake-up and a pause per connection), took 10 % of that
    core, which wrk then lacked. The edge's work is the same either way: a write of each frame, a second
    apart, into the connection, and the client's kernel acknowledging it."""

    __slots__ = ("_buf", "_left", "_request", "sock")

    def __init__(self, sock: socket.socket, request: bytes) -> None:
        self.sock = sock
        self._request = request
        self._buf = b""
        self._left = -1  # body bytes still to come; -1 while reading a head

    def read(self, stats: dict[str, int]) -> bool:
        """Everything the connection has now; False once it is closed."""
        while True:
            try:
                data = self.sock.recv(65_536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            stats["bytes"] += len(data)
            self._take(data, stats)

    def _take(self, data: bytes, stats: dict[str, int]) -> None:
        while data:
            if self._left < 0:
                self._buf += data
                head, sep, body = self._buf.partition(b"\r\n\r\n")
                if not sep:
                    return
                self._buf = b""
                stats["heads"] += 1
                lines = head.lower().split(b"\r\n")
                self._left = next(int(line[15:]) for line in lines if line.startswith(b"content-length:"))
                data = body
            used = min(len(data), self._left)
            self._left -= used
            data = data[used:]
            if self._left == 0:
                stats["completed"] += 1
                self._left = -1
                with contextlib.suppress(OSError):
                    self.sock.sendall(self._request)


def _requests(count: int) -> list[bytes]:
    from pixelpipe.settings import parse_secret
    from schemas.tokens import Claim, TokenKind, sign

    keyring = parse_secret(SECRET)
    sent_at = int(time.time()) - 3600
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
    claims = [Claim(TokenKind.TIMED_OPEN, "bench", "read-time", f"h-{i:06d}", sent_at) for i in range(count)]
    return [
        f"GET /o/{sign(c, keyring)}.gif HTTP/1.1\r\nHost: bench\r\nUser-Agent: {ua}\r\n\r\n".encode()
        for c in claims
    ]


def _sweep(live: list[_Held], stats: dict[str, int]) -> list[_Held]:
    """Read every connection once; the ones still open."""
    still = []
    for held in live:
        if held.read(stats):
            still.append(held)
        else:
            stats["lost"] += 1
            held.sock.close()
    return still


def _hold(host: str, port: int, count: int, seconds: float) -> dict[str, Any]:
    """Open ``count`` held connections (`RAMP_PER_S` a second), then keep them for ``seconds`` or until
    SIGTERM; report what was held."""
    stats = {"opened": 0, "connect_errors": 0, "heads": 0, "completed": 0, "lost": 0, "bytes": 0}
    live: list[_Held] = []
    started = time.monotonic()
    for at, request in enumerate(_requests(count)):
        try:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(request)
            sock.setblocking(False)
        except OSError:
            stats["connect_errors"] += 1
            continue
        stats["opened"] += 1
        live.append(_Held(sock, request))
        ahead = started + (at + 1) / RAMP_PER_S - time.monotonic()
        if ahead > 0.01:
            time.sleep(ahead)
    ramp_s = time.monotonic() - started
    print(json.dumps({"ramped": True, "ramp_s": round(ramp_s, 1), "live": len(live)}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    live = _sweep(live, stats)  # every connection read once since the ramp: count from here
    counted_from, bytes_then = time.monotonic(), stats["bytes"]
    samples: list[tuple[float, int]] = []
    until = counted_from + seconds
    next_sweep = counted_from + READ_EVERY_S
    while not stop.is_set() and time.monotonic() < until:
        stop.wait(1.0)
        samples.append((round(time.monotonic() - started, 1), len(live)))
        if time.monotonic() >= next_sweep:
            live = _sweep(live, stats)
            next_sweep += READ_EVERY_S
    live = _sweep(live, stats)
    # Frames that arrived per held connection per second (one is the schedule): exact, both ends swept.
    frames = (stats["bytes"] - bytes_then) / len(FRAME)
    rate = frames / max(1, len(live)) / max(1e-9, time.monotonic() - counted_from)
    for held in live:
        held.sock.close()
    return {**stats, "ramp_s": round(ramp_s, 1), "live_samples": samples, "frames_per_held_s": round(rate, 3)}


def _hold_main(argv: list[str]) -> None:
    from ingest.read_holder import yield_to_everything
    from pixelpipe.limits import raise_open_file_limit

    raise_open_file_limit()
    yield_to_everything()
    host, port, count, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    print(json.dumps(_hold(host, port, count, seconds)), flush=True)


# -- the benchmark


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for {pid}")


def _held_now(edge: Role, timeout_s: float = 120) -> int:
    """The edge's held pixels now (its ``/metrics`` may answer slowly on a busy machine: asked again)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(metric(scrape(edge.base), "pixelpipe_read_time_held"))
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _holder_pids(edge: Role) -> list[int]:
    """The edge's read-time holder processes (its children running `ingest.read_holder`)."""
    pids = []
    for child in children(edge.pid):
        with contextlib.suppress(OSError):
            if b"ingest.read_holder" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(child)
    return pids


class _Placement:
    """Moves the edge's holder processes onto ``cpu`` as they appear (they start at the first hand-over)."""

    def __init__(self, edge: Role, cpu: str | None) -> None:
        self._edge = edge
        self.cpu = cpu
        self.pids: list[int] = []

    def update(self) -> list[int]:
        for pid in _holder_pids(self._edge):
            if pid not in self.pids:
                if self.cpu is not None:
                    pin(pid, self.cpu)
                self.pids.append(pid)
        return self.pids


def _writes(pids: list[int]) -> int:
    """Write system calls made so far by ``pids`` (``/proc/PID/io`` ``syscw``: a frame's write is one)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
    return total


def _edge_runs(
    edge: Role,
    paths: list[str],
    duration: float,
    broker: int,
    paced: float | None,
    *,
    holders: list[int],
    holders_on_server_cpu: bool,
    again: bool = False,
) -> dict[str, Any]:
    """A saturation run and a paced one (at ``paced``, else half the saturation rate), and with ``again``
    a second saturation run. ``holders``: the edge's holder processes, whose CPU is reported apart from the
    edge's (and counted as the server's own work, not a disturbance, when they share its CPU), and how many
    writes a second they made."""
    peers = holders if holders_on_server_cpu else []

    def run(**wrk: Any) -> dict[str, Any]:
        started, writes = time.monotonic(), _writes(holders)
        result = measured(edge.base, paths, duration, edge.pid, broker, peers=peers, apart=holders, **wrk)
        result["holder_writes_per_s"] = round((_writes(holders) - writes) / (time.monotonic() - started))
        return result

    saturated = run()
    rate = paced or max(500.0, round(saturated["rps"] / 2, -2))
    paced_run = run(paced_rps=rate)
    print(f"    saturated: {_line(saturated)}", flush=True)
    print(f"    paced at {rate:,.0f}/s: {_line(paced_run)}", flush=True)
    runs: dict[str, Any] = {"saturated": saturated, "paced": paced_run, "paced_rps": rate}
    if again:
        runs["saturated_again"] = run()
        print(f"    saturated again: {_line(runs['saturated_again'])}", flush=True)
    return runs


def _line(r: dict[str, Any]) -> str:
    holders = (
        f", the holders {r['apart_cpu_share']:.0%} ({r['holder_writes_per_s']:,} writes/s)"
        if r.get("apart_cpu_share")
        else ""
    )
    return (
        f"{r['rps']:,.0f} px/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, non-2xx {r['non_2xx']}, "
        f"socket errors {r['socket_errors']}, the edge used {r['server_cpu_share']:.0%} of a CPU{holders}"
    )


def _client(edge: Role, held: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A client process (on the load CPU) keeping ``held`` of ``edge``'s read-time pixels; its ramp report."""
    seconds = 3600  # after the ramp, at most: SIGTERM ends it once both runs (and their retries) are done
    where = ["127.0.0.1", str(edge.port)]
    command = [PYTHON, "-m", "bench.read_time", "--hold", *where, str(held), str(seconds)]
    client = subprocess.Popen(pinned(command, LOAD_CPU), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if client.stdout is None:
        raise BenchError("the client has no output")
    return client, json.loads(client.stdout.readline())


def _held_phase(
    edge: Role,
    shares: list[int],
    paths: list[str],
    duration: float,
    broker: int,
    *,
    paced: float,
    place: _Placement,
) -> dict[str, Any]:
    """The edge runs again while clients keep ``shares[i]`` pixels held; RSS with them held."""
    clients = []
    for share in shares:
        clients.append(_client(edge, share))
        place.update()
    deadline = time.monotonic() + 60
    while _held_now(edge) < sum(shares) * 0.99 and time.monotonic() < deadline:
        place.update()
        time.sleep(0.5)
    time.sleep(3)  # past the first frames of the last connections
    holders = place.update()
    rss_held = _rss_kib(edge.pid)
    rss_holders = [_rss_kib(pid) for pid in holders]
    held_before = _held_now(edge)
    handed = int(metric(scrape(edge.base), "pixelpipe_read_time_handed_over"))
    ramps = [ramp["ramp_s"] for _, ramp in clients]
    print(
        f"  {held_before:,} held ({handed:,} by {len(holders)} holders, in {max(ramps)} s); "
        f"edge RSS {rss_held / 1024:,.0f} MiB, holders' {sum(rss_holders) / 1024:,.0f} MiB",
        flush=True,
    )
    on_server_cpu = place.cpu in (None, SERVER_CPU)
    runs = _edge_runs(
        edge, paths, duration, broker, paced, holders=holders, holders_on_server_cpu=on_server_cpu, again=True
    )

    held_after = _held_now(edge)
    reports = []
    for client, _ in clients:
        client.terminate()
        out, _ = client.communicate(timeout=60)
        lines = [line for line in out.strip().splitlines() if line.startswith("{")]
        reports.append(
            json.loads(lines[-1]) if lines and "opened" in lines[-1] else {"no_report": out[-500:]}
        )
    return {
        **runs,
        "held_requested": sum(shares),
        "held_at_start": held_before,
        "held_at_end": held_after,
        "handed_over_at_start": handed,
        "holders": len(holders),
        "rss_kib_held": rss_held,
        "rss_kib_holders": rss_holders,
        "clients": reports,
        "client_ramp_s": max(ramps),
    }


_REASONS = ("busy", "proxy", "asgi")


def _afterwards(edge: Role) -> dict[str, Any]:
    """The edge's read-time counters once the clients left."""
    scraped = scrape(edge.base)
    ends = ("closed", "cap", "stopped", "busy", "proxy")
    return {
        "read_records": {e: metric(scraped, "pixelpipe_read_time_records_total", {"end": e}) for e in ends},
        "unheld": {r: metric(scraped, "pixelpipe_read_time_unheld_total", {"reason": r}) for r in _REASONS},
        "held_after_clients_left": metric(scraped, "pixelpipe_read_time_held"),
        "holders_lost": metric(scraped, "pixelpipe_read_time_holders_lost_total"),
    }


def _shares(held: int) -> list[int]:
    """``held`` spread evenly over as few processes as the open-file hard limit allows (each held connection
    is a file descriptor in its client and in its holder)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or held + FD_SPARE <= hard:
        return [held]
    count = -(-held // (hard - FD_SPARE))
    return [held // count + (1 if i < held % count else 0) for i in range(count)]


def main() -> None:  # noqa: PLR0915 - one straight script: start, measure, stop
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        _hold_main(sys.argv[2:])
        return
    parser = argparser(__doc__)
    parser.add_argument("--held", type=int, default=20_000, help="read-time pixels held (default 20,000)")
    parser.add_argument(
        "--holders", type=int, default=None, help="holder processes (default: as the open-file limit needs)"
    )
    parser.add_argument(
        "--holder-cpu",
        default=LOAD_CPU,
        help=f"the CPU the holders are moved to as they start (default {LOAD_CPU}; '': where they are)",
    )
    args = parser.parse_args()
    duration = 30.0 if args.full else 10.0
    missing = ensure_tools("wrk", "nginx")
    if "wrk" in missing:
        raise SystemExit("bench: wrk is needed (apt-get install -y wrk)")
    shares = _shares(args.held)
    holders = len(shares) if args.holders is None else args.holders
    if holders == 0 and len(shares) > 1:
        raise SystemExit(f"bench: {args.held:,} held do not fit the edge's open-file limit without holders")
    tmp = scratch("read-time")
    paths = pixel_paths(1000)
    result: dict[str, Any] = {
        "mode": "full" if args.full else "quick",
        "duration_s": duration,
        "held": args.held,
        "client_shares": shares,
        "holders": holders,
        "holder_cpu": args.holder_cpu,
    }
    result["conditions_start"] = wait_quiet(0.15, args.wait_quiet) if args.wait_quiet else conditions()
    try:
        with kafka(tmp / "kafka", LOAD_CPU) as bootstrap:
            env = role_env(
                tmp / "edge",
                PIXELPIPE_KAFKA_BOOTSTRAP=bootstrap,
                PIXELPIPE_TOPIC_PREFIX=f"bench{time.time_ns()}",
                PIXELPIPE_FD_RESERVE="256",
                PIXELPIPE_READ_TIME_MAX_HELD=str(args.held),
                PIXELPIPE_READ_TIME_HOLDERS=str(holders),
                PIXELPIPE_READ_TIME_CAP_SECONDS=str(CAP_S),
            )
            if holders == 0:
                env["PIXELPIPE_MAX_CONNECTIONS"] = str(args.held + 500)
            edge = Role(["edge"], env, tmp / "edge.log", cpus=SERVER_CPU).start()
            try:
                broker = kafka_pid(tmp / "kafka")
                result["broker_warmup_us_per_px"] = warm(edge, paths, broker)
                if "nginx" not in missing:
                    result["nginx"] = _nginx(tmp, paths, duration)
                print("  the edge, nothing held:", flush=True)
                before = wait_acked(edge)
                result["plain"] = _edge_runs(
                    edge, paths, duration, broker, None, holders=[], holders_on_server_cpu=False
                )
                time.sleep(2)
                result["rss_kib_idle"] = _rss_kib(edge.pid)
                print(f"  edge RSS idle {result['rss_kib_idle'] / 1024:,.0f} MiB", flush=True)
                print(f"  the edge, {args.held:,} read-time pixels held:", flush=True)
                paced = result["plain"]["paced_rps"]
                place = _Placement(edge, (args.holder_cpu or None) if holders else None)
                phase = _held_phase(edge, shares, paths, duration, broker, paced=paced, place=place)
                result["held_runs"] = phase
                time.sleep(3)
                after = wait_acked(edge)
                result.update(_afterwards(edge))
                result["kafka"] = {k: after[k] - before[k] for k in after}
                # This machine's rate drifts by 10-20 % over minutes: the plain runs and nginx again, after,
                # and the ratios from both.
                print("  the edge, nothing held again:", flush=True)
                result["plain_after"] = _edge_runs(
                    edge, paths, duration, broker, paced, holders=[], holders_on_server_cpu=False
                )
                if "nginx" not in missing:
                    result["nginx_after"] = _nginx(tmp, paths, duration)
            finally:
                edge.stop()
    finally:
        cleanup(tmp)
    result["conditions_end"] = conditions()
    _summarize(result)
    write_result("read_time", result)


def _nginx(tmp: Path, paths: list[str], duration: float) -> dict[str, Any]:
    with nginx(tmp / "nginx", SERVER_CPU) as (url, master):
        run_wrk(url, paths, duration_s=2)
        run = measured(url, paths, duration, master.pid)
    print(f"  nginx: {_line(run)}", flush=True)
    return run


def _mean(*values: float) -> float:
    return round(sum(values) / len(values), 1)


def _summarize(result: dict[str, Any]) -> None:
    held = result["held_runs"]
    count = max(1, held["held_at_start"])
    per_conn = ((held["rss_kib_held"] - result["rss_kib_idle"]) + sum(held["rss_kib_holders"])) * 1024 / count
    result["rss_bytes_per_held"] = round(per_conn)
    nginx_runs = [result[k]["rps"] for k in ("nginx", "nginx_after") if k in result]
    nginx_rps = _mean(*nginx_runs) if nginx_runs else None
    plain, after = result["plain"], result["plain_after"]
    summary = {
        "nginx_rps": nginx_rps,
        "plain_rps": _mean(plain["saturated"]["rps"], after["saturated"]["rps"]),
        "held_rps": _mean(held["saturated"]["rps"], held["saturated_again"]["rps"]),
        "plain_p99_paced_ms": max(plain["paced"]["p99_ms"], after["paced"]["p99_ms"]),
        "held_p99_paced_ms": held["paced"]["p99_ms"],
        "plain_p99_saturated_ms": max(plain["saturated"]["p99_ms"], after["saturated"]["p99_ms"]),
        "held_p99_saturated_ms": max(held["saturated"]["p99_ms"], held["saturated_again"]["p99_ms"]),
        "paced_rps": result["plain"]["paced_rps"],
        "holders_cpu_share_saturated": held["saturated"].get("apart_cpu_share"),
    }
    if nginx_rps:
        summary["ratio_plain"] = round(summary["plain_rps"] / nginx_rps, 3)
        summary["ratio_held"] = round(summary["held_rps"] / nginx_rps, 3)
    summary["p99_paced_target_met"] = summary["held_p99_paced_ms"] <= TARGET_P99_MS
    result["summary"] = summary
    print(
        f"\nread time: {held['held_at_start']:,} pixels held (asked {result['held']:,}), "
        f"{held['handed_over_at_start']:,} by {held['holders']} holder processes "
        f"on CPU {result['holder_cpu'] or SERVER_CPU}"
    )
    print("  (each rate the mean of two runs: nothing held before and after, held twice; nginx too)")
    for name, key in (("nothing held", "plain"), ("pixels held", "held")):
        print(
            f"  {name:>12}: {summary[f'{key}_rps']:,.0f} px/s"
            + (f" ({summary[f'ratio_{key}']:.2f} x nginx)" if nginx_rps else "")
            + f", p99 {summary[f'{key}_p99_saturated_ms']:.2f} ms saturated, "
            f"{summary[f'{key}_p99_paced_ms']:.2f} ms paced at {summary['paced_rps']:,.0f}/s"
        )
    print(
        f"  RSS per held connection: {per_conn:,.0f} bytes (the edge's growth and the holders' whole RSS; "
        f"the edge {result['rss_kib_idle'] / 1024:,.0f} MiB idle)"
    )
    print(f"  read records: {result['read_records']}; not held: {result['unheld']}")
    rates = [c.get("frames_per_held_s") for c in held["clients"]]
    print(f"  frames per held pixel per second (the schedule is 1): {rates}")


if __name__ == "__main__":
    main()
