"""The edge's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HITS = Counter("pixelpipe_edge_hits_total", "Requests answered by the edge", ["kind", "token"])

# -- Kafka publisher and its on-disk spool (ingest.kafka_publisher, ingest.spool)
KAFKA_REACHABLE = Gauge(
    "pixelpipe_kafka_broker_reachable", "1 while the edge delivers hits straight to Kafka, 0 while it spools"
)
KAFKA_ACKED = Counter("pixelpipe_kafka_acked_total", "Raw hits acknowledged by the Kafka broker (acks=all)")
KAFKA_PUBLISH_FAILED = Counter(
    "pixelpipe_kafka_publish_failed_total",
    "Raw hits the broker rejected for good (not retriable, e.g. too large); logged and not retried",
)
SPOOL_DEPTH = Gauge("pixelpipe_spool_depth", "Raw hits in the on-disk spool not yet acknowledged by Kafka")
SPOOL_BYTES = Gauge("pixelpipe_spool_bytes", "Bytes of spool segment files on disk")
SPOOL_FULL = Gauge("pixelpipe_spool_full", "1 while the spool is at its size bound and new hits are dropped")
SPOOL_WRITTEN = Counter("pixelpipe_spool_written_total", "Raw hits written to the on-disk spool")
SPOOL_DROPPED = Counter(
    "pixelpipe_spool_dropped_total", "Raw hits dropped because the on-disk spool was at its size bound"
)
SPOOL_REPLAYED = Counter(
    "pixelpipe_spool_replayed_total", "Spooled raw hits replayed to Kafka and acknowledged by the broker"
)
SPOOL_CORRUPT = Counter(
    "pixelpipe_spool_corrupt_bytes_total",
    "Bytes of spool segments skipped at start because a record was truncated or failed its CRC",
)

# -- connections (ingest.http_protocol.BoundedHttpProtocol, every role's HTTP server)
CONNECTIONS_OPEN = Gauge("pixelpipe_http_connections", "Open HTTP connections")
CONNECTIONS_CLOSED = Counter(
    "pixelpipe_http_connections_closed_total",
    "HTTP connections closed by a bound (ingest.connection_bounds): header_timeout, idle_timeout, "
    "head_too_large (answered 431), body_timeout (a body still unread long after its answer), evicted (the "
    "longest waiting, beyond the connection cap), refused (beyond the cap, none waiting)",
    ["reason"],
)
