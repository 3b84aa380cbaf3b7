"""Notice latency: how long after a pixel's request its open reaches a webhook endpoint, and the live feed.

The README promises a counted open within 1 s; the tests only wait for the exact outcome (tests/integration/
test_webhooks_http.py, test_live_sse.py), and this is where the speed is measured.

How:

- ``pixelpipe serve`` (every role, the in-process bus, the embedded ClickHouse) as a process, as a user
  starts it, trusting 127.0.0.1 as a proxy so each hit carries a residential address in ``X-Forwarded-For``
  and a desktop browser's user agent (human: counted and notified).
- A webhook for ``open`` pointing at a receiver in this process (``PIXELPIPE_WEBHOOK_ALLOW_PRIVATE``: it is
  on 127.0.0.1), answering 204 at once; and one ``GET /v1/live`` stream read in a thread.
- One pixel per registered message at a fixed rate (``--rate``); for each, the time from sending the
  request to the webhook's arrival and to the live event's arrival (both matched by message id). The
  first-open flag makes no difference to the path, so every message is opened once.

Benchmarks never fail for being slow. Not a test.

    uv run python -m bench.notice_latency              # quick: 200 opens at 20/s
    uv run python -m bench.notice_latency --full       # 2000 opens at 50/s
"""

from __future__ import annotations

import contextlib
import http.server
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    API_KEY,
    BROWSER,
    Role,
    argparser,
    cleanup,
    conditions,
    free_ports,
    role_env,
    scratch,
    wait_quiet,
    write_result,
)

RESIDENTIAL = "81.2.69.160"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TARGET_S = 1.0  # the README's "visible within 1 s"; nothing fails past it


class _Arrivals:
    """Arrival times (monotonic) by message id, from any thread."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, message_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.at.setdefault(message_id, now)

    def __len__(self) -> int:
        with self._lock:
            return len(self.at)


@contextlib.contextmanager
def _receiver(arrivals: _Arrivals) -> Iterator[str]:
    """A webhook endpoint on 127.0.0.1 answering 204; yields its URL."""

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrivals.add(orjson.loads(body)["data"]["message_id"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    port = free_ports(1)[0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _listen(base: str, arrivals: _Arrivals, connected: threading.Event, stop: threading.Event) -> None:
    """Read ``/v1/live`` until ``stop`` (or the server goes); each ``data:`` line of an open is an arrival."""
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/v1/live", headers=AUTH) as response,
    ):
        connected.set()
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("data:"):
                arrivals.add(orjson.loads(line[5:])["message_id"])


def _stats(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"count": 0}
    ordered = sorted(latencies)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) >= 2 else ordered * 99
    return {
        "count": len(ordered),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "within_target": sum(x <= TARGET_S for x in ordered) / len(ordered),
    }


def measure(opens: int, rate: float, work: Path) -> dict[str, Any]:
    webhooks, live = _Arrivals(), _Arrivals()
    with _receiver(webhooks) as hook_url:
        env = role_env(
            work / "data",
            PIXELPIPE_TRUSTED_PROXIES="127.0.0.1/32",
            PIXELPIPE_WEBHOOK_ALLOW_PRIVATE="true",
        )
        serve = Role(["serve"], env, work / "serve.log", cpus=None).start()
        stop_listening = threading.Event()
        try:
            with httpx.Client(base_url=serve.base, headers=AUTH, timeout=30) as api:
                r = api.post("/v1/webhooks", json={"url": hook_url, "events": ["open"]})
                r.raise_for_status()
                pixels: dict[str, str] = {}
                for i in range(opens):
                    body = {"campaign_id": "notices", "recipient": f"r{i}@example.com", "message_id": f"m{i}"}
                    r = api.post("/v1/messages", json=body)
                    r.raise_for_status()
                    pixels[f"m{i}"] = httpx.URL(r.json()["pixel_url"]).path
            connected = threading.Event()
            listener = threading.Thread(
                target=_listen, args=(serve.base, live, connected, stop_listening), daemon=True
            )
            listener.start()
            connected.wait(30)
            time.sleep(2.0)  # past the dispatcher's directory refresh (1 s): the new webhook is known

            sent: dict[str, float] = {}
            headers = {"User-Agent": BROWSER, "X-Forwarded-For": RESIDENTIAL}
            with httpx.Client(base_url=serve.base, timeout=10) as edge:
                next_at = time.monotonic()
                for message_id, path in pixels.items():
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    sent[message_id] = time.monotonic()
                    edge.get(path, headers=headers)
                    next_at += 1 / rate
            deadline = time.monotonic() + 30
            while (len(webhooks) < opens or len(live) < opens) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop_listening.set()
            serve.stop()

    def latencies(arrivals: _Arrivals) -> list[float]:
        return [arrivals.at[m] - t for m, t in sent.items() if m in arrivals.at]

    return {
        "opens": opens,
        "rate_per_s": rate,
        "target_s": TARGET_S,
        "webhook": {**_stats(latencies(webhooks)), "missing": opens - len(webhooks)},
        "live": {**_stats(latencies(live)), "missing": opens - len(live)},
    }


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument("--opens", type=int, default=None, help="opens to send (quick 200, full 2000)")
    parser.add_argument("--rate", type=float, default=None, help="opens per second (quick 20, full 50)")
    args = parser.parse_args()
    opens = args.opens or (2000 if args.full else 200)
    rate = args.rate or (50.0 if args.full else 20.0)
    quiet = wait_quiet(0.15, args.wait_quiet) if args.wait_quiet else None
    work = scratch("notices")
    try:
        print(f"notice latency: {opens} opens at {rate:g}/s", flush=True)
        result = measure(opens, rate, work)
    finally:
        cleanup(work)
    for name in ("webhook", "live"):
        s = result[name]
        if s["count"]:
            print(
                f"  {name:7s} p50 {s['p50_ms']:.0f} ms  p95 {s['p95_ms']:.0f} ms  p99 {s['p99_ms']:.0f} ms  "
                f"max {s['max_ms']:.0f} ms  within {TARGET_S:g} s: {s['within_target']:.1%}  "
                f"missing {s['missing']}",
                flush=True,
            )
        else:
            print(f"  {name}: nothing arrived", flush=True)
    write_result("notice_latency", {**result, "conditions": conditions(), "waited_for_quiet": quiet})


if __name__ == "__main__":
    main()
