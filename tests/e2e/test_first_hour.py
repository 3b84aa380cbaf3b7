"""The first hour of a new user, with the real `pixelpipe` command: plain --help, start-up errors that name a
setting without echoing a secret, a warning when links would point where no mail client reaches, and a
generated dev API key that still works after a restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import wait_for
from tests.serving import free_port

DATA = Path(__file__).parent.parent / "data"
SECRET_KEY = "sk_live_Qm7vR2xK9pL4"
CH_PASSWORD = "chpw-Hd8sW3nJ6t"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELPIPE_")}
    env.update(
        PIXELPIPE_DATA_DIR=str(tmp_path / "data"), PIXELPIPE_GEOIP_CITY_DB=str(DATA / "GeoIP2-City-Test.mmdb")
    )
    env.update(extra)
    return env


def _pixelpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "pixelpipe.cli", *args]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _pixelpipe(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_help_is_plain_text(tmp_path: Path) -> None:
    done = _run(["--help"], _env(tmp_path))
    assert done.returncode == 0
    assert done.stdout.startswith("usage: pixelpipe [-h] {serve,edge,process,api,loadgen,ranges} ...\n")
    assert "\x1b[" not in done.stdout  # no terminal colours
    assert "`" not in done.stdout  # no reST or Markdown from a docstring
    assert "PIXELPIPE_PUBLIC_URL" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIXELPIPE_API_KEYS", f"alpha:{SECRET_KEY}"),  # ':' for '='
        ("PIXELPIPE_API_KEYS", f"alpha={SECRET_KEY};beta=other-key-123"),  # ';' for ','
        ("PIXELPIPE_SECRET", f"{SECRET_KEY}:{SECRET_KEY}-and-more"),
        ("PIXELPIPE_CLICKHOUSE_URL", f"http://bob:{CH_PASSWORD}@127.0.0.1:notaport/db"),
    ],
)
def test_a_malformed_secret_stops_start_up_without_being_printed(
    tmp_path: Path, variable: str, value: str
) -> None:
    done = _run(["serve", "--port", str(free_port())], _env(tmp_path, **{variable: value}))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"pixelpipe: {variable}: ")
    for secret in (SECRET_KEY, CH_PASSWORD):
        assert secret not in done.stdout + done.stderr


def test_a_store_that_cannot_be_reached_is_reported_without_its_password(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        PIXELPIPE_CLICKHOUSE_URL=f"http://bob:{CH_PASSWORD}@127.0.0.1:{free_port()}/db",
        PIXELPIPE_API_KEYS="acme=acme-key-1234",
    )
    done = _run(["api", "--port", str(free_port())], env)
    assert done.returncode == 1
    assert "pixelpipe: PIXELPIPE_CLICKHOUSE_URL: cannot open the store: " in done.stderr
    assert CH_PASSWORD not in done.stdout + done.stderr


def _serve_once(env: dict[str, str], port: int, key: str | None = None) -> tuple[str, int | None]:
    """Start `serve` on every interface, wait until ready, ask the API with ``key``, stop; its output, and
    the status the API answered."""
    proc = subprocess.Popen(
        _pixelpipe("serve", "--host", "0.0.0.0", "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    status = None
    try:
        wait_for(lambda: _ready(base), bool, timeout_s=90, every_s=0.2)
        if key is not None:
            status = httpx.get(f"{base}/v1/campaigns", headers={"Authorization": f"Bearer {key}"}).status_code
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    return output, status


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


GENERATED_KEY = re.compile(
    r"API key \(account demo, generated and kept in \S+; set PIXELPIPE_API_KEYS to choose\): (\S+)"
)


def test_serving_on_every_interface_warns_and_the_dev_key_survives_a_restart(tmp_path: Path) -> None:
    env = _env(tmp_path)
    port = free_port()
    first, _ = _serve_once(env, port)
    assert (
        f"PIXELPIPE_PUBLIC_URL is not set: pixel and click links point at http://0.0.0.0:{port}, and 0.0.0.0 "
        "means 'every interface' to a server and no address at all to a client, so they will not work in an "
        "email" in first
    )
    keys = GENERATED_KEY.findall(first)
    assert len(keys) == 1, first
    again, status = _serve_once(env, port, key=keys[0])
    assert GENERATED_KEY.findall(again) == keys
    assert status == 200
    data = tmp_path / "data"
    assert (data.stat().st_mode & 0o777, (data / "api_keys").stat().st_mode & 0o777) == (0o700, 0o600)
