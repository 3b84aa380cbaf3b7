"""Delivery events per second into the store: the mail services' events (delivered, bounces, complaints,
...) sent as providers send them, in batches (a SendGrid Event Webhook request carries up to about a
thousand), matched to their sends and stored exactly once by the delivery loader.

Three runs per batch size (500 and 1000 events a request by default):

- ``http``: signed requests over real HTTP. ``pixelpipe serve`` as a process (every role, the in-process
  delivery bus, embedded chDB), pinned to CPU 0; ``SENDS`` messages registered through
  ``POST /v1/messages/batch`` and a SendGrid account through ``PUT /v1/mail-services/sendgrid`` (a fresh
  P-256 key); SendGrid Event Webhook requests, each signed (ECDSA over timestamp + body, as SendGrid
  signs), ``CONCURRENCY`` in flight from this process (on CPU 1), a 503 retried after 50 ms as a provider
  retries. The events carry our ids in custom args as the README says: 80 % our message id, 15 % only the
  campaign (matched by recipient), 5 % a message id of no send (matched by the recipient, their
  campaign's custom arg and address being right); 75 % delivered, 10 %
  deferred, 10 % bounces, 3 % dropped, 2 % spam reports. Rate = events from the first request until the
  server's ``pixelpipe_delivery_events_stored_total`` reaches them all, per wall second; the server's CPU
  seconds are recorded too.
- ``memory``: the path behind the ingest alone, in this process: requests' events (already read) handed
  to the in-process `MemoryDeliveryBus` (``pixelpipe serve``'s bound), and the `DeliveryLoader` in the same
  event loop. 70 % of the events carry our message id, 15 % only the provider's message id (registered), 10 %
  only campaign and recipient, 5 % a message id of no send.
- ``kafka`` (with ``--kafka HOST:PORT`` or ``PIXELPIPE_TEST_KAFKA_BOOTSTRAP``): the same through
  `KafkaDeliveryPublisher` (every record acknowledged, ``acks=all``) to a fresh topic, read by
  `processors.kafka_source.KafkaSource` in a fresh group, the loader in the same process.

The loaders run with ``pixelpipe serve``'s flush interval (250 ms) and batch (5000); no notice path in the
``memory`` and ``kafka`` runs. Each run checks what was stored (distinct delivery ids, matched).

    uv run python -m bench.deliveries_throughput                        # quick: 50k events a run
    uv run python -m bench.deliveries_throughput --full                 # 500k events a run
    uv run python -m bench.deliveries_throughput --kafka 127.0.0.1:9092  # on Kafka too
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    API_KEY,
    LOAD_CPU,
    SERVER_CPU,
    Role,
    argparser,
    cleanup,
    conditions,
    fmt_rate,
    metric,
    process_cpu_seconds,
    role_env,
    scrape,
    scratch,
    wait_quiet,
    write_result,
)

SENDS = 20_000
CONCURRENCY = 4  # requests in flight at once, as a provider posts them
OCCURRED_MS = 1_764_000_000_000
KINDS = (  # (event, bounce type, share)
    ("delivered", "", 0.70), ("deferred", "", 0.10), ("bounce", "hard", 0.08), ("bounce", "soft", 0.04),
    ("dropped", "", 0.03), ("complaint", "", 0.02), ("unsubscribe", "", 0.03),
)  # fmt: skip


def register(store: Any) -> None:
    rows = [
        ["bench", f"campaign-{i % 20}", f"msg-{i:06d}", f"r{i}@example.com", f"pm-{i:06d}",
         OCCURRED_MS - 3_600_000, OCCURRED_MS - 3_600_000, []]
        for i in range(SENDS)
    ]  # fmt: skip
    columns = ["account", "campaign_id", "message_id", "recipient", "provider_message_id", "sent_at",
               "registered_at", "links"]  # fmt: skip
    for start in range(0, len(rows), 10_000):
        store.insert("sends", columns, rows[start : start + 10_000])


def build_events(count: int, seed: int = 16) -> list[Any]:
    from schemas.delivery_events import DeliveryEvent, delivery_id

    rng = random.Random(seed)
    kinds, weights = [(k, b) for k, b, _ in KINDS], [w for _, _, w in KINDS]
    events = []
    for i in range(count):
        n = rng.randrange(SENDS)
        event, bounce = rng.choices(kinds, weights)[0]
        ids: dict[str, str]
        way = rng.random()
        if way < 0.70:
            ids = {"message_id": f"msg-{n:06d}", "campaign_id": f"campaign-{n % 20}"}
        elif way < 0.85:
            ids = {"provider_message_id": f"pm-{n:06d}"}
        elif way < 0.95:
            ids = {"campaign_id": f"campaign-{n % 20}"}
        else:
            ids = {"message_id": f"gone-{n:06d}"}
        failed = event in ("bounce", "dropped", "deferred")
        events.append(
            DeliveryEvent(
                delivery_id=delivery_id("bench", "sendgrid", f"sg-{seed}-{i}"),
                account="bench",
                provider="sendgrid",
                provider_event_id=f"sg-{seed}-{i}",
                event=event,  # type: ignore[arg-type]  # one of KINDS
                occurred_at_ms=OCCURRED_MS + i,
                received_at_ms=int(time.time() * 1000),
                recipient=f"r{n}@example.com",
                bounce_type=bounce,  # type: ignore[arg-type]
                smtp_status="5.1.1" if bounce == "hard" else "4.2.2" if failed else "2.0.0",
                smtp_code=550 if bounce == "hard" else 452 if failed else 250,
                diagnostic="550 5.1.1 <r@example.com>: Recipient address rejected: User unknown"
                if failed
                else "",
                provider_type=event,
                **ids,
            )
        )
    return events


def stored_total() -> float:
    from prometheus_client import REGISTRY

    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "pixelpipe_delivery_events_stored"
        for s in metric.samples
        if s.name.endswith("_total")
    )


async def _run(store: Any, events: Sequence[Any], batch: int, kafka: str | None) -> dict[str, Any]:
    from deliveries.bus import MemoryDeliveryBus
    from deliveries.loader import DeliveryLoader
    from deliveries.port import BusUnavailable

    publisher: Any
    source: Any
    if kafka is None:
        publisher = source = MemoryDeliveryBus(100_000)  # pixelpipe serve's PIXELPIPE_BUS_CAPACITY
    else:
        from bus.kafka_config import KafkaConfig
        from deliveries.bus import KafkaDeliveryPublisher
        from processors.kafka_source import KafkaSource
        from schemas.topics import Topics

        prefix = f"bench{uuid.uuid4().hex[:8]}"
        config, topics = KafkaConfig(kafka), Topics.with_prefix(prefix)
        publisher = KafkaDeliveryPublisher(config, topics)
        source = KafkaSource(
            config, topics, f"{prefix}-deliveries", topic=topics.deliveries, role="delivery-loader"
        )
    loader = DeliveryLoader(source=source, store=store, flush_interval_s=0.25, max_batch=5000)
    await publisher.start()
    running = asyncio.create_task(loader.run())
    requests = [events[i : i + batch] for i in range(0, len(events), batch)]
    refused = 0

    async def provider(mine: list[Sequence[Any]]) -> None:
        nonlocal refused
        for request in mine:
            while True:
                try:
                    await publisher.publish(request)
                    break
                except BusUnavailable:
                    refused += 1
                    await asyncio.sleep(0.05)  # the provider retries the 503

    before = stored_total()
    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(provider(requests[k::CONCURRENCY]) for k in range(CONCURRENCY)))
    published_s = time.perf_counter() - started
    while stored_total() - before < len(events):
        await asyncio.sleep(0.01)
        if running.done():
            running.result()  # raises what stopped it
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    loader.stop()
    await running
    await publisher.stop()
    return {
        "events": len(events),
        "batch": batch,
        "published_s": round(published_s, 3),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(len(events) / elapsed),
        "cpu_s": round(cpu_s, 3),
        "events_per_cpu_s": round(len(events) / cpu_s),
        "requests_refused_503": refused,
    }


def run_one(chdb: Path, count: int, batch: int, kafka: str | None) -> dict[str, Any]:
    from schemas.store import Store, parse_store_url

    store = Store.connect(parse_store_url(f"chdb://{chdb}?database=d{uuid.uuid4().hex[:10]}"))
    try:
        register(store)
        events = build_events(count)
        result = asyncio.run(_run(store, events, batch, kafka))
        db = store.database
        [(unique, matched)] = store.query(
            f"SELECT uniqExact(delivery_id), uniqExactIf(delivery_id, matched_by != '') FROM {db}.deliveries"  # noqa: S608
        )
        result.update(stored_unique=int(unique), matched=int(matched), conditions=conditions())
        return result
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


# -- over HTTP, into `pixelpipe serve`

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SENDGRID_KINDS = (
    ("delivered", 0.75),
    ("deferred", 0.10),
    ("bounce", 0.10),
    ("dropped", 0.03),
    ("spamreport", 0.02),
)


def sendgrid_requests(count: int, batch: int, seed: int) -> tuple[str, list[tuple[bytes, dict[str, str]]]]:
    """The account's public key, and ``count`` SendGrid events as signed requests of ``batch`` events."""
    from tests.mail_services import sendgrid_event, sendgrid_keys, sign_sendgrid

    private, public = sendgrid_keys()
    rng = random.Random(seed)
    kinds, weights = [k for k, _ in SENDGRID_KINDS], [w for _, w in SENDGRID_KINDS]
    now = int(time.time())
    events = []
    for i in range(count):
        n = rng.randrange(SENDS)
        way = rng.random()
        message_id = f"msg-{n:06d}" if way < 0.80 else "" if way < 0.95 else f"gone-{n:06d}"
        kind = rng.choices(kinds, weights)[0]
        events.append(
            sendgrid_event(
                kind, f"sg-{seed}-{i}", message_id=message_id, campaign_id=f"campaign-{n % 20}",
                email=f"r{n}@example.com", timestamp=now, sg_message_id=f"pm{n:06d}.filter0001.1",
            )
        )  # fmt: skip
    requests = []
    for start in range(0, count, batch):
        body = orjson.dumps(events[start : start + batch])
        headers = {"content-type": "application/json", **sign_sendgrid(private, body, now)}
        requests.append((body, headers))
    return public, requests


def _register_over_http(client: httpx.Client, public_key: str) -> str:
    for start in range(0, SENDS, 1000):
        body = {
            "messages": [
                {
                    "campaign_id": f"campaign-{i % 20}",
                    "recipient": f"r{i}@example.com",
                    "message_id": f"msg-{i:06d}",
                }
                for i in range(start, min(start + 1000, SENDS))
            ]
        }
        r = client.post("/v1/messages/batch", json=body, headers=AUTH)
        r.raise_for_status()
    r = client.put(
        "/v1/mail-services/sendgrid", json={"credentials": {"public_key": public_key}}, headers=AUTH
    )
    r.raise_for_status()
    return httpx.URL(r.json()["ingest_url"]).path


async def _post_all(base: str, path: str, requests: list[tuple[bytes, dict[str, str]]]) -> int:
    refused = 0

    async def provider(client: httpx.AsyncClient, mine: list[tuple[bytes, dict[str, str]]]) -> None:
        nonlocal refused
        for body, headers in mine:
            while True:
                r = await client.post(path, content=body, headers=headers)
                if r.status_code == 200:
                    break
                if r.status_code != 503:
                    raise RuntimeError(f"the ingest answered {r.status_code}: {r.text[:300]}")
                refused += 1
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(provider(client, requests[k::CONCURRENCY]) for k in range(CONCURRENCY)))
    return refused


def run_http(workdir: Path, count: int, batch: int) -> dict[str, Any]:
    data = workdir / f"serve-{batch}"
    server = Role(["serve"], role_env(data), workdir / f"serve-{batch}.log", cpus=SERVER_CPU).start()
    try:
        public, requests = sendgrid_requests(count, batch, seed=batch)
        with httpx.Client(base_url=server.base, timeout=120) as client:
            path = _register_over_http(client, public)
        state = conditions()
        cpu = process_cpu_seconds(server.pid)
        started = time.perf_counter()
        refused = asyncio.run(_post_all(server.base, path, requests))
        posted_s = time.perf_counter() - started
        while (stored := metric(scrape(server.base), "pixelpipe_delivery_events_stored_total")) < count:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        series = scrape(server.base)
        cpu_s = process_cpu_seconds(server.pid) - cpu
    finally:
        server.stop()
    unmatched = metric(series, "pixelpipe_delivery_events_unmatched_total")
    return {
        "events": count,
        "batch": batch,
        "requests": len(requests),
        "posted_s": round(posted_s, 3),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(count / elapsed),
        "server_cpu_s": round(cpu_s, 3),
        "events_per_server_cpu_s": round(count / cpu_s),
        "requests_refused_503": refused,
        "stored": int(stored),
        "matched": int(stored - unmatched),
        "conditions": state,
    }


def main() -> None:
    parser = argparser(__doc__)
    parser.add_argument(
        "--batch", type=int, action="append", help="events per request (default: 500 and 1000)"
    )
    parser.add_argument(
        "--kafka",
        default=os.environ.get("PIXELPIPE_TEST_KAFKA_BOOTSTRAP"),
        help="a Kafka bootstrap to run on Kafka too (default: $PIXELPIPE_TEST_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--only", choices=["http", "memory", "kafka"], action="append", help="these runs only"
    )
    args = parser.parse_args()
    count = 500_000 if args.full else 50_000
    batches = args.batch or [500, 1000]
    runs_of = args.only or ["http", "memory", *(["kafka"] if args.kafka else [])]
    if args.wait_quiet:
        wait_quiet(0.15, args.wait_quiet)
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the server under test has CPU 0
    work = scratch("deliveries")
    runs = []
    try:
        for bus in runs_of:
            for batch in batches:
                print(f"  {bus}, {count} events in requests of {batch}...", flush=True)
                if bus == "http":
                    result = run_http(work, count, batch)
                    cpu = f"{fmt_rate(result['events_per_server_cpu_s'])} per server CPU s"
                else:
                    result = run_one(work / "chdb", count, batch, args.kafka if bus == "kafka" else None)
                    cpu = f"{fmt_rate(result['events_per_cpu_s'])} per CPU s"
                result["bus"] = bus
                runs.append(result)
                r = result
                print(
                    f"    {fmt_rate(r['events_per_s'])} stored ({cpu}; {r['requests_refused_503']} requests "
                    f"answered 503 and retried); {r.get('stored', r.get('stored_unique'))} stored, "
                    f"{r['matched']} matched",
                    flush=True,
                )
    finally:
        cleanup(work)
    write_result("deliveries_throughput", {"runs": runs})


if __name__ == "__main__":
    main()
