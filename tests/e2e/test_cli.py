"""The CLI as a user runs it: a real `pixelpipe serve` process, its own embedded ClickHouse, real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import hit, wait_for
from tests.roles import Role, role_env
from tests.serving import free_port

DATA = Path(__file__).parent.parent / "data"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELPIPE_")}
    env.update(
        PIXELPIPE_DATA_DIR=str(tmp_path / "data"),
        PIXELPIPE_GEOIP_CITY_DB=str(DATA / "GeoIP2-City-Test.mmdb"),
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.1/32",
    )
    env.update(extra)
    return env


def _pixelpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "pixelpipe.cli", *args]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIXELPIPE_API_KEYS", "no-equals-sign"),
        ("PIXELPIPE_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("PIXELPIPE_CLICKHOUSE_URL", "postgres://x"),
        ("PIXELPIPE_SECRET", "tiny"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_it(tmp_path: Path, variable: str, value: str) -> None:
    done = subprocess.run(
        _pixelpipe("serve", "--port", str(free_port())),
        env=_env(tmp_path, **{variable: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"pixelpipe: {variable}: ")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        _pixelpipe("serve", "--port", str(port)),
        env=_env(tmp_path, PIXELPIPE_API_KEYS="demo=demo-key-1234"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), bool, timeout_s=60, every_s=0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_counts_an_open_and_stops_cleanly_on_sigterm(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    base, proc = served
    auth = {"Authorization": "Bearer demo-key-1234"}
    with httpx.Client(base_url=base, timeout=5) as client:
        sent = client.post(
            "/v1/messages", json={"campaign_id": "c1", "recipient": "a@example.com"}, headers=auth
        )
        assert sent.status_code == 201
        body = sent.json()
        assert body["pixel_url"].startswith(f"{base}/o/")
        assert hit(client, body["pixel_url"]).status_code == 200
        stats, _ = wait_for(
            lambda: client.get(f"/v1/messages/{body['message_id']}", headers=auth).json(),
            lambda m: m["opens"] == 1,
        )
        assert stats["opens"] == 1
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=10)  # the README's "exits 0 within 10 s": fails past it
    assert proc.returncode == 0
    assert "pixelpipe: roles api,edge,process on" in output


@pytest.mark.parametrize(("trusted", "country"), [("", None), ("127.0.0.1/32", "GB")])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, trusted: str, country: str
) -> None:
    role = Role(
        ["serve"],
        role_env(PIXELPIPE_DATA_DIR=str(tmp_path / "data"), PIXELPIPE_TRUSTED_PROXIES=trusted),
        tmp_path / "serve.log",
    )
    auth = {"Authorization": "Bearer acme-key-123"}
    try:
        role.start()
        role.wait_ready()
        with httpx.Client(base_url=role.base, timeout=5) as client:
            sent = client.post(
                "/v1/messages", json={"campaign_id": "c", "recipient": "a@x.com"}, headers=auth
            )
            message_id = sent.json()["message_id"]
            hit(client, sent.json()["pixel_url"], ip="81.2.69.160")  # London, if it were believed
            timeline, _ = wait_for(
                lambda: client.get(f"/v1/messages/{message_id}/timeline", headers=auth).json(),
                lambda t: len(t["timeline"]) == 1,
            )
        assert timeline["timeline"][0]["country"] == country
    finally:
        role.stop()
