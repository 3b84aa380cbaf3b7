"""The open-file limit is raised to the hard limit at start (`pixelpipe.limits`), by the CLI for every role:
a process started with a soft limit of 256 runs with its hard limit."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

LOW = 256


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


def _hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard <= LOW + 2_000:
        pytest.skip(f"the hard open-file limit here ({hard}) is too low to tell raised from not")
    return hard


def test_raise_open_file_limit_raises_the_soft_limit_to_the_hard_one() -> None:
    hard = _hard()
    code = "from pixelpipe.limits import open_file_limit as o, raise_open_file_limit as r\n"
    code += "print(o(), r(), o())"
    out = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=_low_soft_limit, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(LOW), str(hard), str(hard)]


@pytest.mark.parametrize("role", ["serve", "edge", "process", "api"])
def test_every_role_raises_it_before_reading_its_settings(role: str) -> None:
    """The cap check runs against the limit: a cap that fits under the hard limit but not under 256 is
    refused naming the hard limit, so the limit was raised first (and the process stops there, exit 2)."""
    hard = _hard()
    env = {"PIXELPIPE_SECRET": "s" * 32, "PIXELPIPE_MAX_CONNECTIONS": str(hard), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "pixelpipe.cli", role],
        preexec_fn=_low_soft_limit,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"pixelpipe: PIXELPIPE_MAX_CONNECTIONS: {hard} connections and the 1024 file descriptors kept for "
        f"the store and the bus (PIXELPIPE_FD_RESERVE) exceed the open-file limit {hard}"
    )
