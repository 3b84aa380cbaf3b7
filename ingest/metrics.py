"""The edge's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HITS = Counter("pixelpipe_edge_hits_total", "Requests answered by the edge", ["kind", "token"])
HITS_PUBLISHED = Counter("pixelpipe_bus_published_total", "Raw hits handed to the bus")
BUS_DROPPED = Counter(
    "pixelpipe_bus_dropped_total", "Raw hits dropped because the in-process bus was full (overflow)"
)
BUS_DEPTH = Gauge("pixelpipe_bus_depth", "Raw hits waiting on the in-process bus")
