"""The connection bounds' settings (`pixelpipe.settings`, `ingest.connection_bounds`): defaults, ranges, and
the connection cap held under the open-file limit less the descriptors kept for the store and the bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.connection_bounds import ConnectionBounds
from pixelpipe import limits
from pixelpipe.settings import load
from tests.settings_env import GOOD, refusal


@pytest.fixture
def open_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "open_file_limit", lambda: 20_000)


@pytest.mark.usefixtures("open_files")
def test_the_defaults(tmp_path: Path) -> None:
    s = load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)})
    assert (s.header_timeout_ms, s.idle_timeout_ms, s.max_head_bytes) == (10_000, 5_000, 32_768)
    assert (s.max_connections, s.fd_reserve) == (10_000, 1_024)
    assert s.connection_bounds == ConnectionBounds(
        header_timeout_s=10.0, idle_timeout_s=5.0, max_head_bytes=32_768, max_connections=10_000
    )


@pytest.mark.usefixtures("open_files")
def test_each_bound_is_read(tmp_path: Path) -> None:
    s = load(
        {
            **GOOD,
            "PIXELPIPE_DATA_DIR": str(tmp_path),
            "PIXELPIPE_HEADER_TIMEOUT_MS": "2500",
            "PIXELPIPE_IDLE_TIMEOUT_MS": "750",
            "PIXELPIPE_MAX_HEAD_BYTES": "16384",
            "PIXELPIPE_MAX_CONNECTIONS": "18000",
            "PIXELPIPE_FD_RESERVE": "2000",
        }
    )
    assert s.connection_bounds == ConnectionBounds(
        header_timeout_s=2.5, idle_timeout_s=0.75, max_head_bytes=16_384, max_connections=18_000
    )
    assert s.fd_reserve == 2_000


@pytest.mark.parametrize(
    ("open_files", "reserve", "cap"), [(4_096, 1_024, 3_072), (1_024, 256, 768), (256, 64, 192)]
)
def test_the_defaults_fit_under_a_low_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_files: int, reserve: int, cap: int
) -> None:
    monkeypatch.setattr(limits, "open_file_limit", lambda: open_files)
    s = load({**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)})
    assert (s.fd_reserve, s.max_connections) == (reserve, cap)


@pytest.mark.usefixtures("open_files")
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PIXELPIPE_HEADER_TIMEOUT_MS", "soon", "'soon' is not a whole number"),
        ("PIXELPIPE_HEADER_TIMEOUT_MS", "0", "0 is outside 100..600000"),
        ("PIXELPIPE_IDLE_TIMEOUT_MS", "99", "99 is outside 100..3600000"),
        ("PIXELPIPE_MAX_HEAD_BYTES", "512", "512 is outside 1024..1048576"),
        ("PIXELPIPE_MAX_CONNECTIONS", "0", "0 is outside 1..10000000"),
        (
            "PIXELPIPE_MAX_CONNECTIONS",
            "19000",
            "19000 connections and the 1024 file descriptors kept for the store and the bus "
            "(PIXELPIPE_FD_RESERVE) exceed the open-file limit 20000",
        ),
        (
            "PIXELPIPE_FD_RESERVE",
            "20000",
            "20000 file descriptors kept for the store and the bus leave none for connections under the "
            "open-file limit 20000",
        ),
        ("PIXELPIPE_FD_RESERVE", "8", "8 is outside 16..1000000"),
    ],
)
def test_a_malformed_bound_names_its_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    assert str(refusal(tmp_path, variable, value)) == f"{variable}: {message}"


@pytest.mark.usefixtures("open_files")
def test_read_time_holders_and_held_pixels(tmp_path: Path) -> None:
    env = {**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)}
    s = load(env)
    assert (s.read_time_holders, s.read_time_max_held, s.read_time_cap_s) == (1, 5_000, 25)
    # Held by holder processes, held pixels are the holders' descriptors: over the edge's connection cap.
    s = load({**env, "PIXELPIPE_READ_TIME_HOLDERS": "2", "PIXELPIPE_READ_TIME_MAX_HELD": "20000"})
    assert (s.read_time_holders, s.read_time_max_held, s.max_connections) == (2, 20_000, 10_000)
    s = load({**env, "PIXELPIPE_READ_TIME_HOLDERS": "0", "PIXELPIPE_READ_TIME_MAX_HELD": "10000"})
    assert (s.read_time_holders, s.read_time_max_held) == (0, 10_000)


@pytest.mark.usefixtures("open_files")
@pytest.mark.parametrize(
    ("base", "variable", "value"),
    [
        ({"PIXELPIPE_READ_TIME_HOLDERS": "0"}, "PIXELPIPE_READ_TIME_MAX_HELD", "10001"),
        ({}, "PIXELPIPE_READ_TIME_HOLDERS", "65"),
        ({}, "PIXELPIPE_READ_TIME_HOLDERS", "-1"),
        ({}, "PIXELPIPE_READ_TIME_HOLDERS", "two"),
    ],
)
def test_malformed_read_time_holding_stops_start_up_naming_it(
    tmp_path: Path, base: dict[str, str], variable: str, value: str
) -> None:
    refusal(tmp_path, variable, value, {**GOOD, **base})


@pytest.mark.usefixtures("open_files")
def test_the_holders_cpus_are_read_as_taskset_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    env = {**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path)}
    assert load(env).read_time_holder_cpus == frozenset()
    assert load({**env, "PIXELPIPE_READ_TIME_HOLDER_CPUS": "1"}).read_time_holder_cpus == {1}
    assert load({**env, "PIXELPIPE_READ_TIME_HOLDER_CPUS": "1, 3-5"}).read_time_holder_cpus == {1, 3, 4, 5}
    for bad in ("8", "x", "3-1", "1,,2", "-1"):
        refusal(tmp_path, "PIXELPIPE_READ_TIME_HOLDER_CPUS", bad, env)
