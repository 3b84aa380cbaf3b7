"""A real pixel's latency while 2,000 slowloris connections hold on (issue 14): ``pixelpipe serve`` (every
role, in-process bus, embedded ClickHouse) on CPU 0, ``wrk`` at a paced rate on CPU 1, and an attacker on
CPU 1 that keeps N connections open, each sending a pixel request's head one byte a second and never
finishing it (reconnecting whenever the server closes one, as a slowloris does). The bytes are spread over
each second; ``--burst`` sends every connection's byte at the same moment (the worst case for an event
loop: the pixel that arrives then waits behind all of them).

Three phases, each a paced wrk run of the same length: no attacker (baseline); N slow connections under the
connection cap (the header timeout closes each after 10 s, and the attacker reopens it); N slow connections
with the cap at N / 2 (``PIXELPIPE_MAX_CONNECTIONS``, a second server), so the longest-waiting connection
is evicted for every new one, wrk's included. Reported: wrk's p50/p99/max and errors, the attacker's open
connections and reconnections, and the server's ``pixelpipe_http_connections_closed_total``.

    uv run python -m bench.edge_slowloris            # quick: 15 s per phase, 2,000 slow connections
    uv run python -m bench.edge_slowloris --full     # 30 s per phase
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
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
    ensure_tools,
    pinned,
    pixel_paths,
    role_env,
    run_wrk,
    scrape,
    scratch,
    wait_quiet,
    write_result,
)

WRK_CONNECTIONS = 16
_SETTLE_S = 12  # after the attacker's ramp, before measuring: past the first header timeouts (10 s)
REASONS = ("header_timeout", "body_timeout", "idle_timeout", "head_too_large", "evicted", "refused")


# -- the attacker (a subprocess: ``python -m bench.edge_slowloris --attack HOST PORT N SECONDS``)


_HEAD = b"GET /o/slowloris.gif HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\nX-Pad: " + b"a" * 10_000


class _Slow(asyncio.Protocol):
    """One slow connection: it sends the next byte of a head each time the attacker's ticker comes by, and
    says when the server closes it."""

    def __init__(self, closed: asyncio.Queue[_Slow]) -> None:
        self._closed = closed
        self.transport: asyncio.Transport | None = None
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tick()

    def tick(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_HEAD[self.sent % len(_HEAD) : self.sent % len(_HEAD) + 1])
            self.sent += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._closed.put_nowait(self)


async def _attack(host: str, port: int, count: int, seconds: float, *, burst: bool) -> dict[str, Any]:
    """Keep ``count`` slow connections open for ``seconds``: each sends one byte a second (a ticker walks
    over them all every second), and one the server closes is reopened."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    until = start + seconds
    closed: asyncio.Queue[_Slow] = asyncio.Queue()
    live: set[_Slow] = set()
    stats = {"opened": 0, "connect_errors": 0}
    samples: list[tuple[float, int]] = []  # (seconds since the start, connections open)

    async def open_one() -> None:
        try:
            _, conn = await loop.create_connection(lambda: _Slow(closed), host, port)
        except OSError:
            stats["connect_errors"] += 1
            return
        stats["opened"] += 1
        live.add(conn)

    async def reopen() -> None:
        while True:
            gone = await closed.get()
            live.discard(gone)
            if time.monotonic() < until:
                await open_one()

    reopener = asyncio.create_task(reopen())
    for _ in range(count):
        await open_one()
        await asyncio.sleep(0.002)  # 500 new connections a second while ramping up
    slices = 1 if burst else 20  # burst: every connection's byte at once; else spread over the second
    while time.monotonic() < until:
        conns = list(live)
        for at in range(slices):
            for conn in conns[at::slices]:
                conn.tick()
            await asyncio.sleep(1.0 / slices)
        missing = count - len(live) - closed.qsize()
        for _ in range(max(0, missing)):  # a connect that failed: try again
            await open_one()
        samples.append((round(time.monotonic() - start, 1), len(live)))
    reopener.cancel()
    for conn in list(live):
        if conn.transport is not None:
            conn.transport.close()
    return {**stats, "open_samples": samples}


def _attack_main(argv: list[str]) -> None:
    from pixelpipe.limits import raise_open_file_limit

    raise_open_file_limit()
    host, port, count, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    burst = argv[4:] == ["burst"]
    print(json.dumps(asyncio.run(_attack(host, port, count, seconds, burst=burst))), flush=True)


# -- the benchmark


def _closed(base: str) -> dict[str, float]:
    series = scrape(base)
    return {r: series.get(f'pixelpipe_http_connections_closed_total{{reason="{r}"}}', 0.0) for r in REASONS}


def _phase(
    name: str, server: Role, paths: list[str], seconds: float, attackers: int, *, rate: int, burst: bool
) -> dict[str, Any]:
    print(f"  {name}: {attackers} slow connections, wrk at {rate}/s for {seconds:g} s", flush=True)
    before = _closed(server.base)
    attacker = None
    ramp_s = attackers / 500 + _SETTLE_S  # ramp up, then a header timeout: the attacker is reconnecting
    if attackers:
        attacker = subprocess.Popen(
            pinned(
                [PYTHON, "-m", "bench.edge_slowloris", "--attack", "127.0.0.1", str(server.port),
                 str(attackers), str(ramp_s + seconds + 2), *(["burst"] if burst else [])],
                LOAD_CPU,
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        time.sleep(ramp_s)
    state = conditions()
    wrk = run_wrk(server.base, paths, duration_s=seconds, connections=WRK_CONNECTIONS, paced_rps=rate)
    attack: dict[str, Any] = {}
    if attacker is not None:
        out, _ = attacker.communicate(timeout=120)
        if attacker.returncode != 0:
            raise BenchError(f"the attacker failed ({attacker.returncode}): {out[-2000:]}")
        attack = json.loads(out.strip().splitlines()[-1])
    after = _closed(server.base)
    closed = {r: int(after[r] - before[r]) for r in REASONS if after[r] != before[r]}
    result = {"phase": name, "conditions": state, "wrk": wrk.as_dict(), "attack": attack, "closed": closed}
    # The attacker's open connections, sampled each second while wrk ran (after the ramp).
    samples = [n for at, n in attack.get("open_samples") or [] if at >= ramp_s] or [0]
    result["attack_open_while_measured"] = [min(samples), max(samples)]
    print(
        f"    p50 {wrk.p50_ms:.2f} ms  p99 {wrk.p99_ms:.2f} ms  max {wrk.max_ms:.1f} ms  {wrk.rps:,.0f}/s  "
        f"non-2xx {wrk.non_2xx}  socket errors {wrk.socket_errors}; slow connections open "
        f"{min(samples)}-{max(samples)}, opened {attack.get('opened', 0)}; closed by the server {closed}",
        flush=True,
    )
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        _attack_main(sys.argv[2:])
        return
    parser = argparser(__doc__)
    parser.add_argument("--connections", type=int, default=2_000, help="slow connections (default 2000)")
    parser.add_argument(
        "--burst", action="store_true", help="every slow connection sends its byte at the same moment"
    )
    parser.add_argument("--rate", type=int, default=1_000, help="wrk's paced pixels a second (default 1000)")
    args = parser.parse_args()
    if ensure_tools("wrk"):
        raise BenchError("wrk is needed")
    seconds = 30.0 if args.full else 15.0
    quiet = wait_quiet(0.15, args.wait_quiet) if args.wait_quiet else conditions()
    paths = pixel_paths(1000)
    work = scratch("slowloris")
    phases = []
    try:
        for cap, label in ((None, "under the cap"), (args.connections // 2, "over the cap")):
            extra = {"PIXELPIPE_MAX_CONNECTIONS": str(cap)} if cap else {}
            data = work / f"data-{cap or 'default'}"
            server = Role(["serve"], role_env(data, **extra), work / f"serve-{cap}.log", SERVER_CPU).start()
            try:
                run_wrk(server.base, paths, duration_s=5, connections=WRK_CONNECTIONS, paced_rps=args.rate)
                if cap is None:
                    phases.append(_phase("baseline", server, paths, seconds, 0, rate=args.rate, burst=False))
                name = f"{args.connections} slow, {label}"
                slow = args.connections
                phases.append(_phase(name, server, paths, seconds, slow, rate=args.rate, burst=args.burst))
            finally:
                server.stop()
    finally:
        cleanup(work)
    path = write_result(
        "edge_slowloris",
        {"conditions": quiet, "paced_rps": args.rate, "burst": args.burst, "phases": phases},
    )
    print(f"  written to {path}")


if __name__ == "__main__":
    main()
