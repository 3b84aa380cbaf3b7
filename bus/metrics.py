"""The bus's Prometheus metrics: hits handed to it (by either adapter), and the in-memory bus's depth and
overflow."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HITS_PUBLISHED = Counter("pixelpipe_bus_published_total", "Raw hits handed to the bus")
BUS_DROPPED = Counter(
    "pixelpipe_bus_dropped_total", "Raw hits dropped because the in-process bus was full (overflow)"
)
BUS_DEPTH = Gauge("pixelpipe_bus_depth", "Raw hits waiting on the in-process bus")
