# pixelpipe — two commands on a fresh machine: `make run` runs the product, `make test` passes the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv is bootstrapped with pip when it is missing.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_PYTHON_PREFERENCE ?= system
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help uv install run test lint typecheck unit integration e2e bench fmt clean browser

help:
	@echo "make run       install and run pixelpipe serve on $(HOST):$(PORT)"
	@echo "make test      install, start what the tests need, lint, type-check and run every test"
	@echo "make kafka-up / kafka-down / kafka-clean   a local Apache Kafka (KRaft) on 127.0.0.1:9092"
	@echo "make test-docker   the integration tests through testcontainers (a Docker engine; images built if missing)"
	@echo "make bench     the quick benchmarks"
	@echo "make browser   install Debian's chromium for the browser tests (apt-get) when it is missing"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# The edge's native fast path (native/, Rust) is built from source: without cargo it is left out, and the
# edge serves every request in Python.
NATIVE_GROUP := $(if $(shell command -v cargo 2>/dev/null),,--no-group native)

install: uv dashboard
	@$(if $(NATIVE_GROUP),echo "cargo not found: installing without the edge's native fast path (native/)")
	$(UV) sync --locked $(NATIVE_GROUP)

# `make run` installs what running needs (the package, and the native fast path when cargo is there), not the
# linters, type checker, test or benchmark tools; `--inexact` removes nothing a `make install` put there, and
# `uv run --no-sync` keeps uv from installing the default groups on its own.
RUN_GROUPS := --no-default-groups $(if $(NATIVE_GROUP),,--group native)

run: uv dashboard
	@$(if $(NATIVE_GROUP),echo "cargo not found: installing without the edge's native fast path (native/)")
	$(UV) sync --locked --inexact $(RUN_GROUPS)
	$(UV) run --no-sync pixelpipe serve --host $(HOST) --port $(PORT)

# The native fast path (native/, Rust) is held to what the Python is: cargo fmt, clippy with warnings as errors
# (the Python module's shell included: --all-features) and its crate's unit tests, wherever cargo is. Without
# cargo it is not built, so these are skipped with a message; under CI=true, where it must be built, missing
# cargo is an error. $(call native_cargo,what,commands) runs the commands in native/.
native_cargo = $(if $(NATIVE_GROUP),$(if $(filter true,$(CI)),echo "cargo not found: CI=true requires $(1) of native/" >&2; exit 1,echo "cargo not found: $(1) of native/ skipped"),cd native && $(2))
NATIVE_TEST = $(call native_cargo,cargo test,cargo test --quiet)

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(call native_cargo,cargo fmt and clippy,cargo fmt --check && cargo clippy --quiet --all-targets --all-features -- -D warnings)

typecheck: install
	$(UV) run mypy

fmt: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

# The dashboard's browser tests (tests/browser) drive Debian's Chromium through Playwright, never a browser
# Playwright downloads: scripts/chromium.sh installs it with `apt-get install -y chromium` when missing (as
# root); without it they skip, and under CI=true the run fails naming that command.
browser:
	@bash scripts/chromium.sh

test: install lint typecheck browser
	$(NATIVE_TEST)
	$(UV) run pytest

unit: install
	$(NATIVE_TEST)
	$(UV) run pytest tests/unit

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

include mk/kafka.mk
include mk/bench.mk
include mk/docker.mk
include mk/web.mk
