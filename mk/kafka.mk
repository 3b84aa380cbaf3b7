# Local single-node Apache Kafka (KRaft) without Docker; see scripts/kafka.sh for the knobs
# (KAFKA_PORT, KAFKA_HOME_DIR, KAFKA_LIB_DIR, KAFKA_HEAP_OPTS, ...). Included from the top-level Makefile.

KAFKA_SH := $(dir $(lastword $(MAKEFILE_LIST)))../scripts/kafka.sh

.PHONY: kafka-up kafka-down kafka-clean kafka-status

kafka-up: ## start Kafka on 127.0.0.1:9092; returns once the broker accepts clients
	@bash $(KAFKA_SH) up

kafka-down: ## stop Kafka, keeping topics and committed offsets
	@bash $(KAFKA_SH) down

kafka-clean: ## stop Kafka and wipe its data
	@bash $(KAFKA_SH) clean

kafka-status: ## is the local broker up and answering clients?
	@bash $(KAFKA_SH) status
