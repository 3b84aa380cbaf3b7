# The tests' Docker path (testcontainers), on purpose: `make test-docker`. The default `make test` and CI never
# need Docker; on a machine with an engine, `make test` takes this path by itself (tests/kafka_broker.py).
#
# scripts/docker-tests.sh finds the engine (or starts a private dockerd, as root) and gets the Kafka image:
# apache/kafka at kafka/pom.xml's version when it can be pulled, else a stand-in built here once and cached.
# Ryuk (testcontainers' clean-up container) is off: its image may not be pullable either, and the fixtures
# remove their containers themselves.
DOCKER_TESTS ?= tests/integration

.PHONY: test-docker docker-down

test-docker: install
	@set -euo pipefail; \
	host="$$(bash scripts/docker-tests.sh engine)"; \
	image="$$(DOCKER_HOST="$$host" bash scripts/docker-tests.sh kafka-image)"; \
	echo "test-docker: engine $$host, Kafka image $$image"; \
	env -u PIXELPIPE_TEST_KAFKA_BOOTSTRAP -u PIXELPIPE_TEST_CLICKHOUSE_URL DOCKER_HOST="$$host" \
		PIXELPIPE_TEST_KAFKA_IMAGE="$$image" TESTCONTAINERS_RYUK_DISABLED=true \
		$(UV) run pytest $(DOCKER_TESTS) -rs

# Stops the private dockerd that test-docker may have started (never another engine); images stay cached.
docker-down:
	bash scripts/docker-tests.sh engine-down
