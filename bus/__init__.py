"""What the roles share about the bus: the port and its in-memory adapter, and Kafka's configuration, topics,
partitioner, self-renewing producer and privacy-change feed. Role-specific adapters stay with their role."""
