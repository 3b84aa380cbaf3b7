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

# -- read time (ingest.read_time)
READ_TIME_HELD = Gauge(
    "pixelpipe_read_time_held", "Read-time pixels held open now (timed opens being measured)"
)
READ_TIME_RECORDS = Counter(
    "pixelpipe_read_time_records_total",
    "Read records published, by how the measurement ended: closed (the client closed the connection), cap "
    "(the whole animation was sent), stopped (the edge stopped first), busy and proxy (not held: sent whole)",
    ["end"],
)
READ_TIME_UNHELD = Counter(
    "pixelpipe_read_time_unheld_total",
    "Timed opens answered with the whole GIF at once, nothing measured, by reason: busy (at "
    "PIXELPIPE_READ_TIME_MAX_HELD), proxy (a client known to fetch whole images), asgi (served by the ASGI "
    "path: pipelined behind another request, a peer not reading, or another server than the edge's)",
    ["reason"],
)
READ_TIME_HANDED = Gauge(
    "pixelpipe_read_time_handed_over",
    "Of the read-time pixels held, those whose frames a holder process writes (PIXELPIPE_READ_TIME_HOLDERS)",
)
READ_TIME_HOLDERS_LOST = Counter(
    "pixelpipe_read_time_holders_lost_total",
    "Read-time holder processes that exited while this edge ran (their held pixels ended stopped)",
)
