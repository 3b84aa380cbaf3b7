"""compose.yaml cannot run here (no Docker engine), so it is kept correct by reading it: the services, the
official images, the ports, and every setting it passes checked against what the code reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pixelpipe.app import ROLES
from pixelpipe.settings import DEFAULT_DASHBOARD_DIR, load

ROOT = Path(__file__).parent.parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PIXELPIPE = {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("pixelpipe")}
READ_BY_CODE = set(re.findall(r'"(PIXELPIPE_[A-Z_]+)"', (ROOT / "pixelpipe" / "settings.py").read_text()))


def _interpolate(value: str) -> str:
    """Compose's ${VAR:?msg} / ${VAR:-default}, with stand-ins for what the operator must supply."""
    stand_ins = {"PIXELPIPE_SECRET": "s" * 32, "PIXELPIPE_API_KEYS": "acme=acme-key-123"}

    def one(m: re.Match[str]) -> str:
        name, op, rest = m.group(1), m.group(2) or "", m.group(3) or ""
        if op == ":-":
            return rest
        return stand_ins[name]

    return re.sub(r"\$\{([A-Z_]+)(:[-?])?([^}]*)\}", one, str(value))


def test_the_deployment_has_its_services() -> None:
    assert set(SERVICES) == {"kafka", "clickhouse", "edge-1", "edge-2", "processor", "api"}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for service in SERVICES.values():
        assert "healthcheck" in service


@pytest.mark.parametrize("name", sorted(PIXELPIPE))
def test_each_role_is_a_real_command_with_settings_the_code_reads(name: str, tmp_path: Path) -> None:
    service = PIXELPIPE[name]
    role = service["command"][0]
    assert role in ROLES
    env = {k: _interpolate(v) for k, v in service["environment"].items()}
    assert set(env) <= READ_BY_CODE, set(env) - READ_BY_CODE
    env["PIXELPIPE_DATA_DIR"] = str(tmp_path)  # the image's path does not exist here
    settings = load(env)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert not settings.store.embedded
    assert (settings.store.host, settings.store.port, settings.store.database) == (
        "clickhouse",
        8123,
        SERVICES["clickhouse"]["environment"]["CLICKHOUSE_DB"],
    )
    assert settings.store.username == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert set(service["depends_on"]) == {"kafka", "clickhouse"}


def test_edges_and_api_publish_ports_processors_do_not() -> None:
    assert PIXELPIPE["edge-1"]["ports"] == ["8081:8000"]
    assert PIXELPIPE["edge-2"]["ports"] == ["8082:8000"]
    assert PIXELPIPE["api"]["ports"] == ["8080:8000"]
    assert "ports" not in PIXELPIPE["processor"]
    # the Kafka address every role uses is the listener the broker advertises
    advertised = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == "PLAINTEXT://" + PIXELPIPE["api"]["environment"]["PIXELPIPE_KAFKA_BOOTSTRAP"]


def test_the_image_builds_every_package_and_the_native_path_without_dev_tools() -> None:
    """The Dockerfile cannot be built here either: it copies every package the wheel ships and native/
    (which needs cargo in the build stage), syncs without the dev and bench groups, and requires the native
    path at run time."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    shipped = re.search(r"packages = \[([^\]]*)\]", (ROOT / "pyproject.toml").read_text())
    assert shipped is not None
    for package in re.findall(r'"([a-z_]+)"', shipped.group(1)):
        assert f"COPY {package} {package}" in dockerfile, package
    assert "COPY native native" in dockerfile
    build_stage, runtime_stage = dockerfile.split("\nFROM ")[-2:]  # after the dashboard's stage
    assert "/usr/local/cargo" in build_stage
    assert "cargo" not in runtime_stage
    assert "gcc" not in runtime_stage
    syncs = re.findall(r"uv sync [^\n]*", dockerfile)
    assert syncs
    assert all("--locked" in s and "--no-dev" in s and "--no-group bench" in s for s in syncs)
    assert "PIXELPIPE_NATIVE_EDGE=on" in dockerfile
    assert "native/target" in (ROOT / ".dockerignore").read_text()


def test_the_image_builds_the_dashboard_from_its_lock_file_and_serves_it() -> None:
    """The dashboard's stage (no Docker engine here either): Node installs the packages the lock file pins
    (`npm ci`), every file of web/ the build reads is copied in, and the runtime stage takes only the build's
    output, where the API role looks for it by default; no Node in the runtime."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    _, web_stage, *_, runtime_stage = dockerfile.split("\nFROM ")
    assert re.match(r"node:\d+-slim AS web\n", web_stage)
    assert "COPY web/package.json web/package-lock.json ./" in web_stage
    assert "RUN npm ci " in web_stage
    assert "npm install" not in web_stage
    assert "RUN npm run build" in web_stage
    copied = {
        Path(name).name
        for line in re.findall(r"^COPY (web/[^\n]+)$", web_stage, re.MULTILINE)
        for name in line.split()[:-1]
    }
    sources = {p.name for p in (ROOT / "web").iterdir() if not p.name.startswith(".")}
    assert sources - {"node_modules", "dist"} <= copied, sources - copied
    dist = DEFAULT_DASHBOARD_DIR.relative_to(ROOT)
    assert f"COPY --from=web /web/dist /app/{dist.as_posix()}" in runtime_stage
    assert "node" not in runtime_stage.split("COPY --from=web")[0].lower()
    assert {"web/node_modules", "web/dist"} <= set((ROOT / ".dockerignore").read_text().split())
