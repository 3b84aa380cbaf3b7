"""What a new user meets at the first start: the data dir and the generated secret and dev API key (private,
and kept across restarts), the warning about links a mail client cannot reach, and the start banner."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixelpipe.cli import _banner, public_url_warning
from pixelpipe.settings import _kept, load, unreachable_from_a_mail_client


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask: without care, files are 0644 and directories 0755
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_the_data_dir_and_the_generated_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    load({"PIXELPIPE_DATA_DIR": str(data)})
    assert _mode(data) == 0o700
    assert _mode(data / "secret") == 0o600
    assert _mode(data / "api_keys") == 0o600
    assert sorted(p.name for p in data.iterdir()) == ["api_keys", "secret"]  # no temporary file left


def test_of_two_processes_generating_a_value_at_once_the_first_one_wins(tmp_path: Path) -> None:
    kept = tmp_path / "secret"

    def make_while_another_process_writes_first() -> str:
        kept.write_text("written-by-the-other-process\n")
        return "made-here-too-late"

    assert _kept(kept, make_while_another_process_writes_first) == "written-by-the-other-process"
    assert kept.read_text() == "written-by-the-other-process\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


@pytest.mark.usefixtures("loose_umask")
def test_the_data_dir_is_private_even_when_nothing_is_generated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    load({"PIXELPIPE_DATA_DIR": str(data), "PIXELPIPE_SECRET": "s" * 32, "PIXELPIPE_API_KEYS": "a=key-1234"})
    assert _mode(data) == 0o700
    assert sorted(p.name for p in data.iterdir()) == []


def test_an_existing_data_dir_others_can_read_is_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="pixelpipe.settings"):
        load({"PIXELPIPE_DATA_DIR": str(data)})
    assert _mode(data) == 0o755  # perhaps a mount point shared on purpose: not ours to change
    assert [r.getMessage() for r in caplog.records] == [
        f"PIXELPIPE_DATA_DIR {data} is readable by others (mode 755): it holds secrets and personal data; "
        "chmod 700 it"
    ]


def test_the_generated_dev_api_key_survives_a_restart(tmp_path: Path) -> None:
    env = {"PIXELPIPE_DATA_DIR": str(tmp_path)}
    first = load(env)
    (key, account), *_ = first.api_keys.items()
    assert account == "demo"
    assert first.api_keys_generated
    assert (tmp_path / "api_keys").read_text() == f"demo={key}\n"
    again = load(env)
    assert dict(again.api_keys) == {key: "demo"}
    assert again.api_keys_generated  # still announced as generated: the banner prints it
    assert again.keyring == first.keyring


def test_set_api_keys_win_over_the_kept_dev_key(tmp_path: Path) -> None:
    load({"PIXELPIPE_DATA_DIR": str(tmp_path)})
    chosen = load({"PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_API_KEYS": "acme=key-12345678"})
    assert dict(chosen.api_keys) == {"key-12345678": "acme"}
    assert not chosen.api_keys_generated


_UNSPECIFIED = "means 'every interface' to a server and no address at all to a client"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://0.0.0.0:8000", f"0.0.0.0 {_UNSPECIFIED}"),
        ("http://[::]:8000", f":: {_UNSPECIFIED}"),
        ("http://127.0.0.1:8000", "127.0.0.1 is this machine (loopback)"),
        ("http://127.8.9.1:8000", "127.8.9.1 is this machine (loopback)"),
        ("http://[::1]:8000", "::1 is this machine (loopback)"),
        ("http://localhost:8000", "localhost is this machine (loopback)"),
        ("http://LOCALHOST.:8000", "localhost is this machine (loopback)"),
        ("http://169.254.10.20:8000", "169.254.10.20 is link-local (reachable only on this network segment)"),
        ("http://[fe80::1]:8000", "fe80::1 is link-local (reachable only on this network segment)"),
        ("http://192.168.1.10:8000", None),  # a reader on the same network reaches it
        ("http://203.0.113.7:8000", None),
        ("https://t.example.com", None),
    ],
)
def test_which_public_urls_a_mail_client_cannot_reach(url: str, expected: str | None) -> None:
    assert unreachable_from_a_mail_client(url) == expected


def test_serving_on_every_interface_without_a_public_url_warns(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path)}, host="0.0.0.0", port=8000)
    assert public_url_warning(s, frozenset({"edge", "process", "api"})) == (
        "PIXELPIPE_PUBLIC_URL is not set: pixel and click links point at http://0.0.0.0:8000, and 0.0.0.0 "
        "means 'every interface' to a server and no address at all to a client, so they will not work in an "
        "email; "
        "set PIXELPIPE_PUBLIC_URL to the address readers reach (fine for trying pixelpipe on this machine)"
    )


def test_a_chosen_public_url_or_a_reachable_host_does_not_warn(tmp_path: Path) -> None:
    all_roles = frozenset({"edge", "process", "api"})
    chosen = load(
        {"PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_PUBLIC_URL": "http://127.0.0.1:8000"}, host="0.0.0.0"
    )
    assert public_url_warning(chosen, all_roles) is None
    reachable = load({"PIXELPIPE_DATA_DIR": str(tmp_path)}, host="203.0.113.7")
    assert public_url_warning(reachable, all_roles) is None


def test_an_edge_alone_makes_no_links_so_it_does_not_warn(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_KAFKA_BOOTSTRAP": "k:9092"}, host="0.0.0.0")
    assert public_url_warning(s, frozenset({"edge"})) is None
    assert public_url_warning(s, frozenset({"process"})) is None


def test_an_api_without_an_edge_and_without_a_public_url_warns_that_links_point_at_it(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path)}, host="10.0.0.5", port=8080)
    assert public_url_warning(s, frozenset({"process", "api"})) == (
        "PIXELPIPE_PUBLIC_URL is not set: pixel and click links point at this API process "
        "(http://10.0.0.5:8080), which does not answer them; set it to the edges (or their load balancer)"
    )


def test_a_store_less_edge_banner_names_no_store(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path), "PIXELPIPE_KAFKA_BOOTSTRAP": "k:9092"})
    edge = _banner(s, frozenset({"edge"}), "127.0.0.1", 8000)
    assert "store" not in edge
    assert "  bus     kafka k:9092" in edge.splitlines()
    core = _banner(s, frozenset({"process", "api"}), "127.0.0.1", 8000)
    assert f"  store   chdb://{(tmp_path / 'clickhouse').resolve()} (database pixelpipe)" in core.splitlines()


def test_the_banner_says_where_the_generated_key_is_kept(tmp_path: Path) -> None:
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path)})
    (key, _), *_ = s.api_keys.items()
    banner = _banner(s, frozenset({"api"}), "127.0.0.1", 8000).splitlines()
    assert (
        f"  API key (account demo, generated and kept in {tmp_path / 'api_keys'}; set PIXELPIPE_API_KEYS to "
        f"choose): {key}"
    ) in banner


def test_the_banner_says_where_the_dashboard_is_or_how_to_build_it(tmp_path: Path) -> None:
    build = tmp_path / "dist"
    build.mkdir()
    s = load({"PIXELPIPE_DATA_DIR": str(tmp_path / "data"), "PIXELPIPE_DASHBOARD_DIR": str(build)})
    not_built = f"  dashboard not built ({build}): make install with Node 20+, then restart"
    assert not_built in _banner(s, frozenset({"api"}), "127.0.0.1", 8000).splitlines()
    (build / "index.html").write_text("<!doctype html>")
    banner = _banner(s, frozenset({"api"}), "127.0.0.1", 8000).splitlines()
    assert "  dashboard http://127.0.0.1:8000/  (sign in with an API key)" in banner
    assert not any(
        "dashboard" in line for line in _banner(s, frozenset({"edge"}), "127.0.0.1", 8000).splitlines()
    )
