"""Pytest plugin: one real Kafka broker per test session; fresh topics and a fresh consumer group per test.

Where the session's broker comes from, the first that works:

1. ``PIXELPIPE_TEST_KAFKA_BOOTSTRAP``: a broker someone else runs; nothing is started or stopped.
2. A reachable Docker engine: a testcontainers container of the official ``apache/kafka`` image at the version
   kafka/pom.xml pins (``PIXELPIPE_TEST_KAFKA_IMAGE`` names another image with the same contract, such as the
   stand-in that ``scripts/docker-tests.sh`` builds where no registry is reachable). It runs on the host
   network and listens on 127.0.0.1 only, on free ports, configured as ``scripts/kafka.sh`` configures its
   broker; stopping and starting the container is an outage with the data kept. (Docker Desktop needs host
   networking turned on.) An engine that has not got the image and cannot pull it counts as no engine.
3. ``scripts/kafka.sh``: a private single-node broker on free ports in a temporary directory, with the jars
   already resolved in ``.cache/kafka/lib`` (``KAFKA_LIB_DIR``); stopped at the end of the session.

If none works, the tests that need Kafka fail under ``CI=true`` and are skipped otherwise.

`kafka_local_broker` gives a test a broker that it may stop and start (outage tests): the session's broker
when this session runs it (in a container or with ``scripts/kafka.sh``), else a ``scripts/kafka.sh`` broker
started for that purpose. Fixtures for
everyone: `kafka_bootstrap`, `kafka_topics`, `kafka_group`. Registered in tests/conftest.py through
``pytest_plugins``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

import pytest

from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
BOOTSTRAP_ENV = "PIXELPIPE_TEST_KAFKA_BOOTSTRAP"
IMAGE_ENV = "PIXELPIPE_TEST_KAFKA_IMAGE"
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


class RestartableKafka(Protocol):
    """A broker this session runs, so a test may stop it and start it again with its data kept."""

    @property
    def bootstrap(self) -> str: ...

    def up(self) -> None: ...

    def down(self) -> None: ...


def kafka_image() -> str:
    """The image of the Docker path: the official one at the version kafka/pom.xml pins, unless overridden."""
    configured = os.environ.get(IMAGE_ENV, "").strip()
    if configured:
        return configured
    pom = (ROOT / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if found is None:
        raise RuntimeError("kafka/pom.xml pins no <kafka.version>")
    return f"apache/kafka:{found.group(1)}"


def broker_environment(port: int, controller_port: int) -> dict[str, str]:
    """The apache/kafka image's KAFKA_* variables for the broker scripts/kafka.sh runs, on loopback ports."""
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": "/var/lib/kafka/data",  # the image's data volume, writable by its user
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "offsets.topic.num.partitions": "10",
        "auto.create.topics.enable": "false",
        "num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    # The image's naming: foo.bar_baz is KAFKA_FOO_BAR__BAZ.
    env = {"KAFKA_" + key.replace("_", "__").replace(".", "_").upper(): v for key, v in properties.items()}
    env["KAFKA_HEAP_OPTS"] = "-Xms256m -Xmx1g"
    env["CLUSTER_ID"] = "pixelpipe-tests-000000"  # any 22 URL-safe base64 characters (16 bytes)
    return env


async def _lists_brokers(bootstrap: str) -> bool:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:  # not listening yet, or not answering metadata yet
        return False
    finally:
        await client.close()


def accepts_clients(bootstrap: str) -> bool:
    """A client gets a metadata answer that lists the broker (an open port alone is not ready)."""
    # Its own thread and loop: callers may be inside a running event loop (async tests) or not.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _lists_brokers(bootstrap)).result()


@dataclass
class DockerKafka:
    """A broker in a container on the host network (every connection stays on loopback)."""

    container: DockerContainer
    port: int

    @classmethod
    def start(cls, image: str) -> DockerKafka:
        from testcontainers.core.container import DockerContainer

        port, controller_port = free_ports(2)
        container = DockerContainer(image).with_kwargs(network_mode="host")
        container.with_envs(**broker_environment(port, controller_port))
        broker = cls(container=container, port=port)
        try:
            container.start()
            broker.wait_ready()
        except BaseException:
            broker.remove()  # a container that was created but never got ready is not left behind
            raise
        return broker

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _logs_tail(self) -> str:
        stdout, stderr = self.container.get_logs()
        lines = (stdout + stderr).decode(errors="replace").splitlines()
        return "\n".join(lines[-30:])

    def wait_ready(self) -> None:
        wrapped = self.container.get_wrapped_container()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                raise RuntimeError(f"the Kafka container exited during start-up:\n{self._logs_tail()}")
            if accepts_clients(self.bootstrap):
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"the Kafka container did not accept clients on {self.bootstrap} within {START_TIMEOUT_S} s "
            f"(with Docker Desktop, turn host networking on):\n{self._logs_tail()}"
        )

    def up(self) -> None:
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status != "running":
            wrapped.start()
        self.wait_ready()

    def down(self) -> None:
        # SIGTERM, then SIGKILL after 30 s, as scripts/kafka.sh's down does; the data stays in the container.
        self.container.get_wrapped_container().stop(timeout=30)

    def remove(self) -> None:
        self.container.stop()


def image_missing(image: str) -> str | None:
    """Why the Docker engine cannot run `image` (it has none and cannot pull it), or None when it can."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    client = docker.from_env()
    try:
        client.images.get(image)
    except ImageNotFound:
        try:
            client.images.pull(image)
        except DockerException as exc:
            # The engine's own words when it gave some.
            why = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
            return f"the Docker engine has no {image} and cannot pull it: {why}"
    finally:
        client.close()
    return None


def _start_docker(image: str) -> DockerKafka:
    try:
        return DockerKafka.start(image)
    except Exception as exc:  # the image is there, so this is a broken Docker path: say so, never hide it
        unavailable(f"the Docker path could not start {image}: {exc}")


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
    local: RestartableKafka | None  # set when this session runs the broker (a container or scripts/kafka.sh)


@pytest.fixture(scope="session")
def kafka_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionKafka]:
    """The session's broker (see the module docstring for where it comes from)."""
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        yield SessionKafka(configured, None)
        return
    if _docker_reachable() and image_missing(image := kafka_image()) is None:
        container = _start_docker(image)
        try:
            yield SessionKafka(container.bootstrap, container)
        finally:
            container.remove()
        return
    # No engine, or one that cannot get the image (no registry): the local broker, as without Docker.
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
) -> Iterator[RestartableKafka]:
    # The session's own broker when it runs one (one JVM start for the whole run; tests run one at a time,
    # and every test gets its own topics); else a scripts/kafka.sh one started for the outage tests.
    if kafka_session.local is not None:
        yield kafka_session.local
        return
    broker = _start_local(tmp_path_factory.mktemp("kafka-own"))
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture
def kafka_local_broker(_restartable_kafka: RestartableKafka) -> Iterator[RestartableKafka]:
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
