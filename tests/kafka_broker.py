"""Pytest plugin: one real Kafka broker per test session; fresh topics and a fresh consumer group per test.

Where the session's broker comes from, the first that works:

1. ``PIXELPIPE_TEST_KAFKA_BOOTSTRAP``: a broker someone else runs; nothing is started or stopped.
2. A reachable Docker engine: testcontainers' ``KafkaContainer`` (KRaft).
3. ``scripts/kafka.sh``: a private single-node broker on free ports in a temporary directory, with the jars
   already resolved in ``.cache/kafka/lib`` (``KAFKA_LIB_DIR``); stopped at the end of the session.

If none works, the tests that need Kafka fail under ``CI=true`` and are skipped otherwise.

`kafka_local_broker` gives a test a local ``scripts/kafka.sh`` broker that it may stop and start (outage
tests): the session's broker when it is a local one, else one started for that purpose. Fixtures for
everyone: `kafka_bootstrap`, `kafka_topics`, `kafka_group`. Registered in tests/conftest.py through
``pytest_plugins``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
BOOTSTRAP_ENV = "PIXELPIPE_TEST_KAFKA_BOOTSTRAP"
# Cold start resolves the jars with Maven first; warm starts take a few seconds.
START_TIMEOUT_S = 300


def unavailable(reason: str) -> NoReturn:
    """Kafka tests never skip in CI: a missing broker there is a broken pipeline, not an optional extra."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Kafka is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


def free_ports(count: int) -> list[int]:
    """Ports free right now (held open together so they differ from each other)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@dataclass
class LocalKafka:
    """A broker run by scripts/kafka.sh with its own ports and home directory."""

    home: Path
    port: int
    controller_port: int

    @classmethod
    def in_dir(cls, home: Path) -> LocalKafka:
        port, controller_port = free_ports(2)
        return cls(home=home, port=port, controller_port=controller_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HOME_DIR": str(self.home),
        }
        return subprocess.run(
            ["bash", str(KAFKA_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def up(self) -> None:
        result = self._run("up", START_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka.sh up failed ({result.returncode}): {result.stderr.strip()}")

    def down(self) -> None:
        self._run("down", 60)


def _docker_reachable() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False  # the usual case here; skips importing the client at all
    # A failed ping leaves the client's unix socket for the garbage collector, which pytest (warnings are
    # errors) would report against whichever test happens to run then; collect it here instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env()
            try:
                client.ping()
            finally:
                client.close()
        except Exception:  # no engine, no permission, a dead socket: all mean "not here"
            return False
        finally:
            gc.collect()
    return True


def _start_local(home: Path) -> LocalKafka:
    broker = LocalKafka.in_dir(home)
    try:
        broker.up()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        broker.down()  # it may be running and just slow to answer
        unavailable(str(exc))
    return broker


@dataclass(frozen=True)
class SessionKafka:
    bootstrap: str
    local: LocalKafka | None  # set when this session runs the broker with scripts/kafka.sh


@pytest.fixture(scope="session")
def kafka_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionKafka]:
    """The session's broker (see the module docstring for where it comes from)."""
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        yield SessionKafka(configured, None)
        return
    if _docker_reachable():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield SessionKafka(container.get_bootstrap_server(), None)
        return
    broker = _start_local(tmp_path_factory.mktemp("kafka"))
    try:
        yield SessionKafka(broker.bootstrap, broker)
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_session: SessionKafka) -> str:
    """Bootstrap servers of the session's broker."""
    return kafka_session.bootstrap


@pytest.fixture(scope="session")
def _restartable_kafka(
    kafka_session: SessionKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalKafka]:
    # The session's own scripts/kafka.sh broker when there is one (one JVM start for the whole run; tests
    # run one at a time, and every test gets its own topics); else one started for the outage tests.
    if kafka_session.local is not None:
        yield kafka_session.local
        return
    broker = _start_local(tmp_path_factory.mktemp("kafka-own"))
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture
def kafka_local_broker(_restartable_kafka: LocalKafka) -> Iterator[LocalKafka]:
    """A local broker this test may `down` and `up` (data is kept in between); it is up again afterwards."""
    yield _restartable_kafka
    _restartable_kafka.up()  # a no-op when the test left it running


@pytest.fixture
def kafka_topics() -> Topics:
    """Topic names no other test uses."""
    return Topics.with_prefix(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def kafka_group() -> str:
    """A consumer group no other test uses."""
    return f"g-{uuid.uuid4().hex[:12]}"
