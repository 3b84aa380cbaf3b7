"""The delivery path's Prometheus metrics: events published on the bus, and what the loader stored, matched,
left unmatched, dropped for do-not-track or sent to the dead letters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHED = Counter(
    "pixelpipe_delivery_events_published_total", "Delivery events made durable on the bus", ["provider"]
)
BUS_DEPTH = Gauge("pixelpipe_delivery_bus_depth", "Delivery events waiting on the in-process delivery bus")
BUS_REFUSED = Counter(
    "pixelpipe_delivery_bus_refused_total",
    "Delivery events the bus could not take (full or away): the ingest answered 503, the provider retries",
)
SPOOLED = Counter(
    "pixelpipe_delivery_events_spooled_total",
    "Delivery events taken into the edge's spool while Kafka was away",
)
SPOOL_REPLAYED = Counter(
    "pixelpipe_delivery_spool_replayed_total", "Spool records of delivery events replayed to Kafka"
)
STORED = Counter(
    "pixelpipe_delivery_events_stored_total",
    "Delivery events stored, by provider and event",
    ["provider", "event"],
)
UNMATCHED = Counter(
    "pixelpipe_delivery_events_unmatched_total",
    "Delivery events stored without a matching send, by provider and why",
    ["provider", "reason"],
)
SUPPRESSED = Counter(
    "pixelpipe_delivery_events_suppressed_total", "Delivery events of do-not-track recipients, not stored"
)
BATCHES = Counter("pixelpipe_delivery_batches_total", "Batches of delivery events inserted")
DEAD_LETTERS = Counter(
    "pixelpipe_delivery_dead_letters_total",
    "Delivery records that were not delivery events, or whose rows the store refused for good",
)
STORE_UP = Gauge("pixelpipe_delivery_store_up", "1 while the delivery loader's last insert succeeded")
LAG = Histogram(
    "pixelpipe_delivery_received_to_stored_seconds",
    "From the edge receiving a delivery event to its row being stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
