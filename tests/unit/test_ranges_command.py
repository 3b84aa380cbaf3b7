"""`pixelpipe ranges refresh` in-process (the real entry point, `pixelpipe.cli.main`): which files it
writes and which bad files it refuses, replacing nothing. tests/e2e/test_ranges_refresh.py runs it as a
process."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pixelpipe.cli import main
from processors.cloud_ranges import load_cloud_lists, write_cloud_lists

SAMPLES = Path(__file__).parents[1] / "data" / "cloud"


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(tmp_path / "data"))
    where = tmp_path / "downloads"
    shutil.copytree(SAMPLES, where)
    (where / "goog.json").write_text(
        '{"syncToken": "1", "creationTime": "t", "prefixes": [{"ipv4Prefix": "66.249.80.0/20"}]}'
    )
    (where / "same.csv").write_text("# DigitalOcean\n45.79.0.0/16,US,,,\n")
    (where / "truncated.json").write_text('{"last_updated_timestamp": "2026-11-30T19:55:47", "regi')
    (where / "empty.csv").write_text("")
    return where


def _kept(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


def test_one_list_alone_writes_that_platforms_file_only(
    downloads: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ranges", "refresh", "--gcp", str(downloads / "cloud.json")]) == 0
    kept = tmp_path / "data" / "cloud_ranges"
    assert list(_kept(kept)) == ["gcp.json"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gcp 5 ranges (4 IPv4, 1 IPv6; every prefix (customers' resources)), published ")
    assert out[0].endswith(f"-> {kept}/gcp.json (replacing the bundled sample: 5 ranges)")
    assert out[-1].startswith("classification table: 73 ranges (51 curated, 22 from the cloud lists, ")
    # Again: it replaces the refreshed list now, and says so (a much shorter list would show here).
    assert main(["ranges", "refresh", "--gcp", str(downloads / "cloud.json")]) == 0
    today = datetime.now(UTC).date().isoformat()
    again = capsys.readouterr().out.splitlines()[0]
    assert again.endswith(f"-> {kept}/gcp.json (replacing the list refreshed {today}: 5 ranges)")
    # --dir writes elsewhere (the bundled files' directory, for a maintainer) and leaves the data dir alone.
    assert (
        main(
            [
                "ranges",
                "refresh",
                "--oracle",
                str(downloads / "public_ip_ranges.json"),
                "--dir",
                str(tmp_path / "x"),
            ]
        )
        == 0
    )
    assert list(_kept(tmp_path / "x")) == ["oracle.json"]
    assert list(_kept(kept)) == ["gcp.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--aws", "{d}/ip-ranges.json", "--gcp", "{d}/goog.json"],
            "--gcp: {d}/goog.json: prefixes[0]: no 'service': this is not cloud.json",
        ),
        (
            ["--azure", "{d}/cloud.json"],
            "--azure: {d}/cloud.json: not Azure's Service Tags JSON: no 'changeNumber'",
        ),
        (
            ["--aws", "{d}/public_ip_ranges.json"],
            "--aws: {d}/public_ip_ranges.json: not AWS's ip-ranges.json: no",
        ),
        (["--aws", "{d}/missing.json"], "{d}/missing.json: No such file or directory"),
        (["--linode", "{d}"], "{d}: Is a directory"),
        (
            ["--linode", "{d}/linode-geofeed.csv", "--digitalocean", "{d}/same.csv"],
            "45.79.0.0/16 is listed by both digitalocean and linode",
        ),
        (["--oracle", "{d}/truncated.json"], "--oracle: {d}/truncated.json: not JSON (Oracle Cloud's"),
        (["--digitalocean", "{d}/empty.csv"], "--digitalocean: {d}/empty.csv: no geofeed range in it"),
        (
            ["--digitalocean", "{d}/cloud.json"],
            "--digitalocean: {d}/cloud.json: not a geofeed (RFC 8805 CSV)",
        ),
    ],
)
def test_a_bad_file_is_named_exit_1_and_nothing_is_replaced(
    downloads: Path,
    tmp_path: Path,
    capsys,
    args: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    kept = tmp_path / "data" / "cloud_ranges"
    write_cloud_lists(load_cloud_lists(), kept)  # what an earlier refresh left
    was = _kept(kept)
    assert main(["ranges", "refresh", *[a.format(d=downloads) for a in args]]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("pixelpipe ranges refresh: ")
    assert message.format(d=downloads) in line
    assert line.endswith("; nothing was replaced")
    assert _kept(kept) == was


def test_no_list_given_is_a_usage_error_and_writes_nothing(
    downloads: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ranges", "refresh"]) == 2
    assert capsys.readouterr().err == (
        "pixelpipe ranges refresh: give at least one list (--aws, --gcp, --azure, --oracle, --digitalocean, "
        "--linode)\n"
    )
    assert not (tmp_path / "data").exists()


def test_the_help_is_plain_text_in_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ranges", "refresh", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pixelpipe ranges refresh [-h] [--aws FILE] [--gcp FILE] [--azure FILE]")
    assert "`" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
