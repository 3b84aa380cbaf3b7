"""The processors' Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HITS = Counter("pixelpipe_processed_hits_total", "Hits classified", ["kind", "verdict"])
ROWS = Counter("pixelpipe_rows_inserted_total", "Rows stored in ClickHouse", ["table"])
INSERT_FAILURES = Counter(
    "pixelpipe_insert_failures_total",
    "Failed inserts (retriable=true: retried; false: the hits go to the dead letters)",
    ["retriable"],
)
DEAD_LETTERS = Counter("pixelpipe_dead_letters_total", "Bus records that were not raw hits")
HELD_CLICKS = Gauge("pixelpipe_held_clicks", "Clicks held in the burst window")
FLOOD_BUCKETS = Gauge(
    "pixelpipe_flood_buckets", "Pixel and link buckets (message, network) the replay-flood rule keeps"
)
VISIBLE_LAG = Histogram(
    "pixelpipe_hit_to_stored_seconds",
    "From the edge receiving a hit to its row being stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
SUPPRESSED = Counter("pixelpipe_suppressed_hits_total", "Hits of do-not-track recipients, not stored")
STORE_UP = Gauge("pixelpipe_store_up", "1 while the last insert succeeded")
UNSETTLED_FLUSHES = Gauge(
    "pixelpipe_flushes_awaiting_notices",
    "Stored flushes whose offsets are not committed yet because their notices are not durable yet",
)
STORE_REFUSED = Counter(
    "pixelpipe_store_rejected_hits_total",
    "Hits whose rows the store refused for good (a schema mismatch, a value a column refuses): sent to the "
    "dead letters, not retried; by table and ClickHouse's error code and name (none: refused by the client)",
    ["table", "code", "name"],
)

# -- the processors on Kafka (processors.kafka_source)
DEAD_LETTERED = Counter("pixelpipe_dead_letter_total", "Records sent to the dead-letter topic")
COMMIT_FAILURES = Counter(
    "pixelpipe_commit_failures_total",
    "Offset commits the group refused (a rebalance or an evicted member); the partitions' next owner replays",
)
READS = Counter(
    "pixelpipe_reads_total",
    "Read records (issue 18): stored in reads, or dropped for a do-not-track recipient (suppressed)",
    ["outcome"],
)
