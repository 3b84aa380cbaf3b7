"""The Docker path's broker (tests/kafka_broker.py) is configured as scripts/kafka.sh configures its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.kafka_broker import IMAGE_ENV, broker_environment, kafka_image

ROOT = Path(__file__).resolve().parents[2]


def _kafka_sh_properties(port: int, controller_port: int) -> dict[str, str]:
    script = (ROOT / "scripts" / "kafka.sh").read_text()
    body = script.split('cat >"$CONFIG" <<EOF\n', 1)[1].split("\nEOF\n", 1)[0]
    body = body.replace("$KAFKA_CONTROLLER_PORT", str(controller_port)).replace("$KAFKA_PORT", str(port))
    lines = [line for line in body.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _as_properties(env: dict[str, str]) -> dict[str, str]:
    """The apache/kafka image's documented rule: KAFKA_FOO_BAR is foo.bar, '__' stands for '_'."""
    properties = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name == "KAFKA_HEAP_OPTS":
            continue
        parts = name.removeprefix("KAFKA_").lower().split("__")
        properties["_".join(part.replace("_", ".") for part in parts)] = value
    return properties


def test_the_container_broker_has_the_local_brokers_configuration() -> None:
    local = _kafka_sh_properties(40001, 40002)
    container = _as_properties(broker_environment(40001, 40002))
    assert container.pop("log.dirs") == "/var/lib/kafka/data"
    local.pop("log.dirs")
    assert container == local


def test_names_follow_the_images_rule() -> None:
    env = broker_environment(40001, 40002)
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:40001"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@127.0.0.1:40002"
    assert env["KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len(env["CLUSTER_ID"]) == 22  # 16 bytes in URL-safe base64, as kafka-storage wants


def test_the_image_is_the_official_one_at_the_pinned_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    pinned = re.search(r"<kafka\.version>4\.1\.1</kafka\.version>", (ROOT / "kafka" / "pom.xml").read_text())
    assert pinned is not None  # bump this test with the pom
    assert kafka_image() == "apache/kafka:4.1.1"
    monkeypatch.setenv(IMAGE_ENV, "pixelpipe/kafka-local:4.1.1")
    assert kafka_image() == "pixelpipe/kafka-local:4.1.1"
