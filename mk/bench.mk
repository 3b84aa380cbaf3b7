# Benchmarks (issue 7; BENCHMARKS.md has the results and what each one measures). Included from the Makefile.
#
#   make bench        the quick versions: about 15 minutes in all
#   make bench-full   the issue's durations (10-minute end-to-end steps, 1-10 M events): about 1.5 hours
#
# Each prints its numbers and writes bench/results/NAME.json (gitignored) and bench/plots/NAME.png. They never
# fail for being slow, only when something is broken. wrk and nginx are installed with apt-get when missing
# (as root; otherwise the command to run is printed). BENCH_FLAGS is passed to each, e.g.
# BENCH_FLAGS="--wait-quiet 120" waits up to two minutes for an idle machine before each measurement.

BENCH_RUN := $(UV) run python -m
BENCH_FLAGS ?=

.PHONY: bench bench-full bench-processors bench-edge bench-slowloris bench-e2e bench-queries bench-scaling \
	bench-notices bench-outage bench-deliveries bench-dashboard bench-read-time

bench: install ## the quick benchmarks
	$(BENCH_RUN) bench.processors $(BENCH_FLAGS)
	$(BENCH_RUN) bench.edge_vs_nginx $(BENCH_FLAGS)
	$(BENCH_RUN) bench.end_to_end $(BENCH_FLAGS)
	$(BENCH_RUN) bench.scaling $(BENCH_FLAGS)
	$(BENCH_RUN) bench.notice_latency $(BENCH_FLAGS)
	$(BENCH_RUN) bench.broker_outage $(BENCH_FLAGS)
	$(BENCH_RUN) bench.deliveries_throughput $(BENCH_FLAGS)
	$(BENCH_RUN) bench.dashboard_draw $(BENCH_FLAGS)

bench-full: install ## the benchmarks at the issue's full durations
	$(BENCH_RUN) bench.processors --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.edge_vs_nginx --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.end_to_end --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.scaling --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.notice_latency --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.broker_outage --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.deliveries_throughput --full $(BENCH_FLAGS)
	$(BENCH_RUN) bench.dashboard_draw --full $(BENCH_FLAGS)

bench-processors: install
	$(BENCH_RUN) bench.processors $(BENCH_FLAGS)

bench-edge: install
	$(BENCH_RUN) bench.edge_vs_nginx $(BENCH_FLAGS)

# A real pixel's latency while 2,000 slowloris connections hold on (issue 14): about 3 minutes.
bench-slowloris: install
	$(BENCH_RUN) bench.edge_slowloris $(BENCH_FLAGS)

# Plain pixels' rate and p99 while 20,000 read-time pixels are held open, and the memory per held one
# (issue 18; BENCH_FLAGS="--held 5000" on a busy machine): about 6 minutes.
bench-read-time: install
	$(BENCH_RUN) bench.read_time $(BENCH_FLAGS)

bench-e2e: install
	$(BENCH_RUN) bench.end_to_end $(BENCH_FLAGS)

bench-scaling: install
	$(BENCH_RUN) bench.scaling $(BENCH_FLAGS)

# The query latencies at 1 M and 2 M events (1, 2, 5 and 10 M with bench-full) are part of bench.scaling.
bench-queries: install
	$(BENCH_RUN) bench.scaling --only queries $(BENCH_FLAGS)

# The speed targets the tests no longer assert (issue 14): open -> webhook and -> live feed; the edge during
# a broker outage.
bench-notices: install
	$(BENCH_RUN) bench.notice_latency $(BENCH_FLAGS)

bench-outage: install
	$(BENCH_RUN) bench.broker_outage $(BENCH_FLAGS)

# Delivery events per second, bus -> matched -> stored (issue 16): in one process, and on Kafka when
# PIXELPIPE_TEST_KAFKA_BOOTSTRAP (or --kafka in BENCH_FLAGS) names a broker.
bench-deliveries: install
	$(BENCH_RUN) bench.deliveries_throughput $(BENCH_FLAGS)

# The dashboard's campaign report drawn in Chromium, navigation -> fully drawn, for the largest campaign of the
# generated set (issue 17): 1 M events (10 M with --full; BENCH_FLAGS="--data PATH" reuses a generated set).
# Needs the built dashboard (web/dist) and /usr/bin/chromium (`make browser` installs it).
bench-dashboard: install browser
	$(BENCH_RUN) bench.dashboard_draw $(BENCH_FLAGS)
