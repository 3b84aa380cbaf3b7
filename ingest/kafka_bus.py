"""The Kafka adapters of the bus port (`ingest.bus`), in one place to import from.

- `ingest.kafka_publisher`: `KafkaPublisher`, the edge's side, with its on-disk spool for outages (its
  docstring writes down the delivery order);
- `ingest.kafka_source`: `KafkaSource` and `DeadLetterPublisher`, the processors' side;
- `ingest.kafka_admin`: topic creation, compression, closing producers.
"""

from __future__ import annotations

from ingest.kafka_admin import close_producer, default_compression, ensure_topics
from ingest.kafka_publisher import DeliveryMode, KafkaPublisher, PublisherState, pack_keyed, unpack_keyed
from ingest.kafka_source import DeadLetterPublisher, KafkaSource, PartitionsCallback

__all__ = [
    "DeadLetterPublisher",
    "DeliveryMode",
    "KafkaPublisher",
    "KafkaSource",
    "PartitionsCallback",
    "PublisherState",
    "close_producer",
    "default_compression",
    "ensure_topics",
    "pack_keyed",
    "unpack_keyed",
]
