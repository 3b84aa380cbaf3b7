"""Run pixelpipe roles as real processes (as an operator would), for fault and end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.serving import free_port

DATA = Path(__file__).parent / "data"


def role_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELPIPE_")}
    env.update(
        PIXELPIPE_SECRET="fault-secret-0123456789abcdef",
        PIXELPIPE_API_KEYS="acme=acme-key-123",
        PIXELPIPE_GEOIP_CITY_DB=str(DATA / "GeoIP2-City-Test.mmdb"),
        PIXELPIPE_TRUSTED_PROXIES="127.0.0.1/32",
        PIXELPIPE_FLUSH_INTERVAL_MS="100",
    )
    env.update(settings)
    return env


@dataclass
class Role:
    """One `pixelpipe` process; restartable with the same arguments."""

    args: list[str]
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 60) -> Role:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pixelpipe.cli", *self.args, "--port", str(self.port)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.args} exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.args} not up within {ready_timeout_s}s: {self.log.read_text()[-3000:]}")

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.args} not ready within {timeout_s}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 10) -> tuple[int, float]:
        """SIGTERM; return the exit status and how long the process took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
