"""Broker outage: how fast the edge answers pixels before, during and after a Kafka outage, while it spools.

tests/integration/test_kafka_faults.py checks that an outage loses and doubles nothing (every request
answered 200, every hit counted once); whether the edge stays as fast while it writes to its spool is a speed
question, measured here.

How:

- A private Kafka broker (``scripts/kafka.sh`` on free ports), ``pixelpipe edge`` and ``pixelpipe serve
  --roles process,api`` as processes, as an operator starts them; nothing is pinned.
- One client sends pixels of 40 registered messages at a fixed rate (``--rate``), one request at a time
  on a kept-alive connection, recording each request's latency; the broker is stopped after the first phase
  and started again after the second: three timed phases, ``before``, ``during`` (broker down: the edge
  spools), ``after`` (it replays while new hits queue behind), and between them ``stopping`` and
  ``starting``, while ``scripts/kafka.sh`` stops and starts the broker.
- Per phase: requests, non-200 answers, latency p50/p99/max. At the end: the edge's peak spool depth and
  whether the API counted every answered pixel once.

Benchmarks never fail for being slow. Not a test.

    uv run python -m bench.broker_outage               # quick: 20 s, 15 s down, 15 s, at 200/s
    uv run python -m bench.broker_outage --full        # 60 s, 60 s down, 60 s
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    API_KEY,
    BROWSER,
    PrivateKafka,
    Role,
    argparser,
    cleanup,
    conditions,
    metric,
    role_env,
    scrape,
    scratch,
    wait_quiet,
    write_result,
)

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MESSAGES = 40
PHASES = ("before", "stopping", "during", "starting", "after")
RESIDENTIAL = "81.2.69.160"


class _Stream:
    """Pixels at ``rate`` per second, one at a time, each request's (phase, seconds, status) recorded."""

    def __init__(self, base: str, pixels: list[str], rate: float) -> None:
        self.base, self.pixels, self.rate = base, pixels, rate
        self.phase = "before"
        self.samples: list[tuple[str, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixel-stream", daemon=True)

    def start(self) -> _Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        headers = {"User-Agent": BROWSER, "X-Forwarded-For": RESIDENTIAL}
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i, next_at = 0, time.monotonic()
            while not self._stop.is_set():
                phase, sent = self.phase, time.monotonic()
                try:
                    status = client.get(self.pixels[i % len(self.pixels)], headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((phase, time.monotonic() - sent, status))
                i += 1
                # Behind schedule (a slow answer): go on from now rather than send a burst to catch up, so
                # the phases see the asked rate at most, never a backlog's spike.
                next_at = max(next_at + 1 / self.rate, time.monotonic())
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _phase(samples: list[tuple[str, float, int]], phase: str, seconds: float) -> dict[str, Any]:
    latencies = sorted(s for p, s, _ in samples if p == phase)
    if len(latencies) < 2:
        return {"requests": len(latencies)}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 1),
        "not_200": sum(1 for p, _, status in samples if p == phase and status != 200),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def _opens(core: Role) -> int:
    r = httpx.get(f"{core.base}/v1/campaigns/outage/stats", headers=AUTH, timeout=10)
    return int(r.json()["opens"]) if r.status_code == 200 else -1


def measure(work: Path, rate: float, phases_s: tuple[float, float, float]) -> dict[str, Any]:
    broker = PrivateKafka(work / "kafka")
    broker.up()
    common = {
        "PIXELPIPE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PIXELPIPE_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    edge = Role(["edge"], role_env(work / "edge", **common), work / "edge.log", cpus=None)
    core_env = role_env(work / "core", **common)
    core = Role(["serve", "--roles", "process,api"], core_env, work / "core.log", cpus=None)
    try:
        edge.start()
        core.env["PIXELPIPE_PUBLIC_URL"] = edge.base
        core.start()
        with httpx.Client(base_url=core.base, headers=AUTH, timeout=30) as api:
            pixels = []
            for i in range(MESSAGES):
                r = api.post("/v1/messages", json={"campaign_id": "outage", "recipient": f"r{i}@example.com"})
                r.raise_for_status()
                pixels.append(httpx.URL(r.json()["pixel_url"]).path)
        stream = _Stream(edge.base, pixels, rate).start()
        peak_spool = 0.0
        began: dict[str, float] = {}
        for phase, seconds in zip(("before", "during", "after"), phases_s, strict=True):
            # Stopping and starting the broker take a while (seconds to a minute on a busy machine): the
            # requests meanwhile are phases of their own, so each named phase has its stated length.
            if phase == "during":
                stream.phase, began["stopping"] = "stopping", time.monotonic()
                broker.down()
            elif phase == "after":
                stream.phase, began["starting"] = "starting", time.monotonic()
                broker.up()
            stream.phase, began[phase] = phase, time.monotonic()
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                peak_spool = max(peak_spool, metric(scrape(edge.base), "pixelpipe_spool_depth"))
                time.sleep(0.5)
        stream.stop()
        began["end"] = time.monotonic()
        order = ["before", "stopping", "during", "starting", "after", "end"]
        took = {p: began[n] - began[p] for p, n in itertools.pairwise(order)}
        answered = sum(1 for _, _, status in stream.samples if status == 200)
        deadline, opens = time.monotonic() + 300, -1
        while time.monotonic() < deadline and (opens := _opens(core)) < answered:
            time.sleep(1)
        return {
            "rate_per_s": rate,
            "phases_s": dict(zip(("before", "during", "after"), phases_s, strict=True)),
            "phases": {p: _phase(stream.samples, p, took[p]) for p in PHASES},
            "peak_spool_depth": peak_spool,
            "answered_200": answered,
            "counted_opens": opens,
        }
    finally:
        edge.stop()
        core.stop()
        broker.down()


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="pixels per second (default 200)")
    args = parser.parse_args()
    phases_s = (60.0, 60.0, 60.0) if args.full else (20.0, 15.0, 15.0)
    quiet = wait_quiet(0.15, args.wait_quiet) if args.wait_quiet else None
    work = scratch("outage")
    try:
        print(f"broker outage: {args.rate:g} pixels/s, phases {phases_s} s", flush=True)
        result = measure(work, args.rate, phases_s)
    finally:
        cleanup(work)
    for phase, s in result["phases"].items():
        if "p99_ms" in s:
            print(
                f"  {phase:8s} {s['seconds']:5.1f} s {s['requests']:6d} requests ({s['not_200']} not 200)  "
                f"p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  max {s['max_ms']:.1f} ms",
                flush=True,
            )
    print(
        f"  peak spool depth {result['peak_spool_depth']:.0f}; answered {result['answered_200']}, "
        f"counted {result['counted_opens']}",
        flush=True,
    )
    write_result("broker_outage", {**result, "conditions": conditions(), "waited_for_quiet": quiet})


if __name__ == "__main__":
    main()
