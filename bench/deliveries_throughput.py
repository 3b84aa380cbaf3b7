"""Delivery events per second through the bus into the store: the mail services' events (delivered, bounces,
complaints, ...) published as providers send them, in batches (a SendGrid Event Webhook request carries up
to about a thousand), then matched to their sends and stored exactly once by the delivery loader.

How:

- A fresh embedded ClickHouse (chDB) database with ``SENDS`` registered sends (20 campaigns, each with a
  provider message id), inserted as `POST /v1/messages/batch` stores them.
- The events: 70 % carry our message id (matched by it), 15 % only the provider's message id, 10 % only the
  campaign and recipient, 5 % a message id of no send (stored unmatched). Kinds: 70 % delivered, 10 %
  deferred, 12 % bounces (hard and soft), 3 % dropped, 2 % complaints, 3 % unsubscribes; each with the
  fields a provider gives (SMTP status and code, diagnostic text for bounces).
- Requests of ``--batch`` events (500 and 1000 by default), ``CONCURRENCY`` at a time, are handed to the
  ingest's `DeliveryPublisher` as the ingest does once a request is verified and read: in one process the
  in-process queue (`MemoryDeliveryBus`, the bound ``pixelpipe serve`` uses: a request it refuses when full
  is retried after 50 ms, as a provider retries a 503), on Kafka `KafkaDeliveryPublisher` (every record
  acknowledged, ``acks=all``) to a fresh topic, read by `processors.kafka_source.KafkaSource` in a fresh
  group. The `DeliveryLoader` runs in the same process and event loop, with ``pixelpipe serve``'s flush
  interval (250 ms) and batch (5000): so the rate is of the whole path on one core, as a one-process
  deployment runs it. No notice path (the loader hands matched events to nothing).
- The rate is events from the first publish until the last event is stored (the loader's
  ``pixelpipe_delivery_events_stored_total``), per wall second; then the stored rows are checked
  (``uniqExact(delivery_id)`` and the matched share).

Not over HTTP: the provider's signature check and reading its JSON (d1's readers, measured at about 37 µs a
SendGrid event by the ingest's author) come on top, on the edge's cores.

    uv run python -m bench.deliveries_throughput                       # quick: 50k events a run
    uv run python -m bench.deliveries_throughput --full                # 500k events a run
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

from bench.common import argparser, cleanup, conditions, fmt_rate, scratch, wait_quiet, write_result

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
            config, topics, f"{prefix}-deliveries", topic=topics.deliveries, role="deliveries"
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
    args = parser.parse_args()
    count = 500_000 if args.full else 50_000
    batches = args.batch or [500, 1000]
    if args.wait_quiet:
        wait_quiet(0.15, args.wait_quiet)
    chdb = scratch("deliveries") / "chdb"
    runs = []
    try:
        for bus in ["memory", *(["kafka"] if args.kafka else [])]:
            for batch in batches:
                print(f"  {bus}, {count} events in requests of {batch}...", flush=True)
                result = run_one(chdb, count, batch, args.kafka if bus == "kafka" else None)
                result["bus"] = bus
                runs.append(result)
                r = result
                print(
                    f"    {fmt_rate(r['events_per_s'])} stored ({fmt_rate(r['events_per_cpu_s'])} per CPU s; "
                    f"published in {r['published_s']} s, {r['requests_refused_503']} requests answered 503 "
                    f"and retried); {r['stored_unique']} stored, {r['matched']} matched",
                    flush=True,
                )
    finally:
        cleanup(chdb.parent)
    write_result("deliveries_throughput", {"runs": runs})


if __name__ == "__main__":
    main()
