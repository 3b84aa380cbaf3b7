"""`pixelpipe ranges refresh` as a user runs it: files downloaded from the cloud platforms in, the kept lists
out where the processors read them, or a one-line error and nothing replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.cloud_ranges import (
    CLOUD_ROLE,
    load_classification_ranges,
    load_cloud_lists,
    write_cloud_lists,
)
from processors.ranges import RangeMatch

SAMPLES = Path(__file__).parents[1] / "data" / "cloud"
DOWNLOADED_AT = datetime(2026, 12, 1, 8, 30, tzinfo=UTC).timestamp()
FLAGS = {
    "--aws": "ip-ranges.json",
    "--gcp": "cloud.json",
    "--azure": "ServiceTags_Public_20261130.json",
    "--oracle": "public_ip_ranges.json",
    "--digitalocean": "digitalocean-google.csv",
    "--linode": "linode-geofeed.csv",
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELPIPE_")}
    env["PIXELPIPE_DATA_DIR"] = str(tmp_path / "data")
    return env


def _refresh(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pixelpipe.cli", "ranges", "refresh", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """The samples as a user's downloads, dated 2026-12-01."""
    where = tmp_path / "downloads"
    where.mkdir()
    for name in FLAGS.values():
        shutil.copy(SAMPLES / name, where / name)
        os.utime(where / name, (DOWNLOADED_AT, DOWNLOADED_AT))
    return where


def _kept(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_every_list_is_read_reported_and_kept_where_the_processors_read_it(
    tmp_path: Path, downloads: Path
) -> None:
    args = [arg for flag, name in FLAGS.items() for arg in (flag, str(downloads / name))]
    done = _refresh(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    today = datetime.now(UTC).date().isoformat()
    kept = tmp_path / "data" / "cloud_ranges"
    assert done.stdout.splitlines() == [
        f'aws 4 ranges (3 IPv4, 1 IPv6; service "EC2"), published 2026-11-30T16:33:07Z, refreshed {today}, '
        f"from {downloads}/ip-ranges.json -> {kept}/aws.json (replacing the bundled sample: 4 ranges)",
        f"gcp 5 ranges (4 IPv4, 1 IPv6; every prefix (customers' resources)), published "
        f"2026-11-30T09:00:00.000000, refreshed {today}, from {downloads}/cloud.json -> {kept}/gcp.json "
        "(replacing the bundled sample: 5 ranges)",
        f'azure 4 ranges (4 IPv4, 0 IPv6; service tag "AzureCloud"), published 2026-11-30 (cloud Public, '
        f"change 401), refreshed {today}, from {downloads}/ServiceTags_Public_20261130.json -> "
        f"{kept}/azure.json (replacing the bundled sample: 4 ranges)",
        f'oracle 2 ranges (2 IPv4, 0 IPv6; tag "OCI"), published 2026-11-30T19:55:47.204985, '
        f"refreshed {today}, from {downloads}/public_ip_ranges.json -> {kept}/oracle.json "
        "(replacing the bundled sample: 2 ranges)",
        f"digitalocean 4 ranges (3 IPv4, 1 IPv6; every line (RFC 8805 geofeed)), published not stated (file "
        f"date 2026-12-01), refreshed {today}, from {downloads}/digitalocean-google.csv -> "
        f"{kept}/digitalocean.json (replacing the bundled sample: 4 ranges)",
        f"linode 3 ranges (2 IPv4, 1 IPv6; every line (RFC 8805 geofeed)), published not stated (file date "
        f"2026-12-01), refreshed {today}, from {downloads}/linode-geofeed.csv -> {kept}/linode.json "
        "(replacing the bundled sample: 3 ranges)",
        "classification table: 73 ranges (51 curated, 22 from the cloud lists, 0 left out inside curated "
        "ranges); restart the processors to use it",
    ]
    assert list(_kept(kept)) == [
        "aws.json",
        "azure.json",
        "digitalocean.json",
        "gcp.json",
        "linode.json",
        "oracle.json",
    ]
    table, lists = load_classification_ranges(kept)
    assert all(cloud.complete and cloud.origin.startswith(str(kept)) for cloud in lists)
    assert table.match("2600:1f18:41f0::7") == RangeMatch("aws", CLOUD_ROLE, "2600:1f18::/33")


def test_a_bad_file_is_named_and_nothing_is_replaced(tmp_path: Path, downloads: Path) -> None:
    """A good AWS list with a bad Google one: neither is written. (More bad files, in-process:
    tests/unit/test_ranges_command.py.)"""
    kept = tmp_path / "data" / "cloud_ranges"
    write_cloud_lists(load_cloud_lists(), kept)  # what an earlier refresh left
    was = _kept(kept)
    newer = (downloads / "ip-ranges.json").read_text().replace("2026-11-30-16-33-07", "2026-12-02-10-00-00")
    (downloads / "ip-ranges.json").write_text(newer)
    goog = '{"syncToken": "1", "creationTime": "t", "prefixes": [{"ipv4Prefix": "66.249.80.0/20"}]}'
    (downloads / "goog.json").write_text(goog)

    done = _refresh(
        tmp_path, "--aws", str(downloads / "ip-ranges.json"), "--gcp", str(downloads / "goog.json")
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"pixelpipe ranges refresh: --gcp: {downloads}/goog.json: prefixes[0]: no 'service': this is not "
        "cloud.json (goog.json lists all of Google's addresses, Gmail's image proxies included; pixelpipe "
        "takes cloud.json only); nothing was replaced\n"
    )
    assert _kept(kept) == was
