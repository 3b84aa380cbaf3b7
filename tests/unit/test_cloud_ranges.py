"""The cloud lists as kept, and the one table the classifier looks in: curated plus cloud ranges."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest

from processors.cloud_formats import PLATFORM_BY_NAME, PLATFORMS
from processors.cloud_ranges import (
    BUNDLED,
    CLOUD_ROLE,
    CloudList,
    cloud_summary,
    load_classification_ranges,
    load_cloud_lists,
    read_published,
    with_cloud,
    write_cloud_lists,
)
from processors.ranges import RangeFileError, RangeMatch, RangeTable, load_ranges

SAMPLES = Path(__file__).parents[1] / "data" / "cloud"
SAMPLE_OF = {
    "aws": "ip-ranges.json",
    "gcp": "cloud.json",
    "azure": "ServiceTags_Public_20261130.json",
    "oracle": "public_ip_ranges.json",
    "digitalocean": "digitalocean-google.csv",
    "linode": "linode-geofeed.csv",
}
CORPUS = Path(__file__).parents[1] / "data" / "corpus_hits.jsonl"


@pytest.fixture(scope="module")
def table() -> RangeTable:
    return load_classification_ranges()[0]


def _cloud(platform: str, *networks: str) -> CloudList:
    nets = tuple((ipaddress.ip_network(n), "") for n in networks)
    return CloudList(platform, f"https://{platform}.example/", "all", "p", "2026-12-04", True, nets)


def test_every_bundled_list_is_a_sample_that_says_so_with_its_source() -> None:
    lists = load_cloud_lists()
    assert [c.platform for c in lists] == [p.name for p in PLATFORMS]
    for cloud in lists:
        assert cloud.origin == BUNDLED
        assert cloud.complete is False
        assert cloud.source == PLATFORM_BY_NAME[cloud.platform].source
        assert cloud.published == "sample, not a download (processors/data/cloud/README.md)"
        assert cloud.refreshed == "2026-12-04"
    assert {c.platform: c.counts for c in lists} == {
        "aws": (3, 1),
        "gcp": (4, 1),
        "azure": (4, 0),
        "oracle": (2, 0),
        "digitalocean": (3, 1),
        "linode": (2, 1),
    }


@pytest.mark.parametrize("platform", list(SAMPLE_OF))
def test_each_bundled_list_is_what_its_reader_keeps_of_the_sample_in_the_published_format(
    platform: str,
) -> None:
    bundled = {c.platform: c for c in load_cloud_lists()}[platform]
    raw = (SAMPLES / SAMPLE_OF[platform]).read_bytes()
    read = read_published(PLATFORM_BY_NAME[platform], raw, SAMPLE_OF[platform], "2026-12-04", "2026-12-04")
    assert bundled.networks == read.networks


@pytest.mark.parametrize(
    ("ip", "platform", "network"),
    [
        ("3.85.1.2", "aws", "3.80.0.0/12"),
        ("18.215.255.255", "aws", "18.208.0.0/13"),
        ("2600:1f18:41f0::7", "aws", "2600:1f18::/33"),
        ("34.77.5.6", "gcp", "34.76.0.0/14"),
        ("2600:1900:4001::5", "gcp", "2600:1900:4000::/44"),
        ("13.82.10.10", "azure", "13.82.0.0/16"),
        ("::ffff:13.64.1.1", "azure", "13.64.0.0/16"),
        ("129.146.1.1", "oracle", "129.146.0.0/21"),
        ("159.203.10.10", "digitalocean", "159.203.0.0/16"),
        ("2604:a880:800:10::1", "digitalocean", "2604:a880::/32"),
        ("45.79.1.1", "linode", "45.79.0.0/16"),
        ("2600:3c03::f03c:91ff:fe00:1", "linode", "2600:3c03::/32"),
    ],
)
def test_an_address_in_a_platforms_compute_range(
    table: RangeTable, ip: str, platform: str, network: str
) -> None:
    assert table.match(ip) == RangeMatch(platform, CLOUD_ROLE, network)


@pytest.mark.parametrize(
    "ip",
    [
        "3.96.0.0",  # just past 3.80.0.0/12
        "52.95.245.10",  # AMAZON only (Amazon's own), not EC2
        "13.32.1.1",  # CloudFront
        "2600:9000:2000::1",  # CloudFront IPv6
        "2600:1f18:8000::1",  # past 2600:1f18::/33
        "4.145.74.53",  # Azure's ActionGroup tag, not AzureCloud
        "134.70.8.5",  # Oracle Services Network, not OCI
        "2600:1900:4010::1",  # past 2600:1900:4000::/44
        "172.224.226.1",  # an iCloud Private Relay egress (Akamai): a person, no cloud's compute
        "104.28.0.1",  # Cloudflare WARP / Private Relay egress: no list of Cloudflare is read
        "24.6.101.33",
    ],
)
def test_an_address_outside_every_compute_range_is_not_a_clouds(table: RangeTable, ip: str) -> None:
    assert table.match(ip) is None


def test_the_curated_ranges_are_unchanged_in_the_classification_table(table: RangeTable) -> None:
    curated = load_ranges()
    for entry in curated.entries:
        assert table.match(str(entry.network.network_address)) == curated.match(
            str(entry.network.network_address)
        )
    assert len(table) == len(curated) + sum(len(c.networks) for c in load_cloud_lists())


def test_the_shared_corpus_addresses_are_in_no_cloud_list() -> None:
    """Held out: the cloud lists do not name a shared corpus address, so the corpus cannot pass by them."""
    networks = [n for cloud in load_cloud_lists() for n, _ in cloud.networks]
    for line in CORPUS.read_text().splitlines():
        ip = ipaddress.ip_address(json.loads(line)["ip"])
        assert not [n for n in networks if ip.version == n.version and ip in n], ip


def test_a_curated_range_wins_over_a_cloud_range_around_or_equal_to_it() -> None:
    curated = load_ranges()
    table = with_cloud(
        curated,
        [
            _cloud("azure", "40.0.0.0/8"),  # holds EOP's 40.107.0.0/16 and 40.92.0.0/15
            _cloud("aws", "148.163.150.0/24", "2a01:111:f403:c000::/64"),  # inside Proofpoint's, EOP's v6
            _cloud("gcp", "205.139.110.0/24"),  # equal to Mimecast's
        ],
    )
    assert table.match("40.107.8.77") == RangeMatch("microsoft_eop", "security_gateway", "40.107.0.0/16")
    assert table.match("40.1.2.3") == RangeMatch("azure", CLOUD_ROLE, "40.0.0.0/8")
    assert table.match("148.163.150.10") == RangeMatch("proofpoint", "security_gateway", "148.163.128.0/19")
    assert table.match("2a01:111:f403:c000::1") == RangeMatch(
        "microsoft_eop", "security_gateway", "2a01:111:f403::/48"
    )
    assert table.match("205.139.110.30") == RangeMatch("mimecast", "security_gateway", "205.139.110.0/24")
    assert len(table) == len(curated) + 1


def test_the_same_network_from_two_platforms_is_an_error() -> None:
    with pytest.raises(RangeFileError, match=r"^192\.0\.2\.0/24 is listed by both aws and gcp$"):
        with_cloud(load_ranges(), [_cloud("aws", "192.0.2.0/24"), _cloud("gcp", "192.0.2.0/24")])


def test_a_refreshed_list_replaces_only_its_own_platforms_bundled_one(tmp_path: Path) -> None:
    write_cloud_lists([_cloud("aws", "192.0.2.0/24", "2001:db8::/32")], tmp_path)
    table, lists = load_classification_ranges(tmp_path)
    by_platform = {c.platform: c for c in lists}
    assert by_platform["aws"].origin == str(tmp_path / "aws.json")
    assert by_platform["aws"].complete is True
    assert all(c.origin == BUNDLED for name, c in by_platform.items() if name != "aws")
    assert table.match("192.0.2.9") == RangeMatch("aws", CLOUD_ROLE, "192.0.2.0/24")
    assert table.match("2001:db8::1") == RangeMatch("aws", CLOUD_ROLE, "2001:db8::/32")
    assert table.match("3.85.1.2") is None  # the bundled sample's range is gone with it
    assert table.match("34.77.5.6") == RangeMatch("gcp", CLOUD_ROLE, "34.76.0.0/14")


def test_a_kept_file_reads_back_as_written(tmp_path: Path) -> None:
    cloud = dataclasses.replace(_cloud("oracle", "129.146.0.0/21", "2603:c020::/35"), published="2026-11-30")
    [path] = write_cloud_lists([cloud], tmp_path)
    assert path == tmp_path / "oracle.json"
    assert path.stat().st_mode & 0o777 == 0o644
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    [read] = [c for c in load_cloud_lists(tmp_path) if c.platform == "oracle"]
    assert read == dataclasses.replace(cloud, origin=str(path))


def test_a_failed_write_replaces_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cloud_lists([_cloud("aws", "192.0.2.0/24"), _cloud("gcp", "198.51.100.0/24")], tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(self: CloudList) -> bytes:
        if self.platform == "gcp":
            raise OSError(28, "No space left on device")
        return b"{}"

    monkeypatch.setattr(CloudList, "to_bytes", broken)
    with pytest.raises(OSError, match="No space left"):
        write_cloud_lists([_cloud("aws", "203.0.113.0/24"), _cloud("gcp", "203.0.113.128/25")], tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platform": "gcp"}, r"'platform' must be 'aws'"),
        ({"source": ""}, r"'source' must be a non-empty string"),
        ({"complete": "yes"}, r"'complete' must be true or false"),
        ({"ranges": []}, r"'ranges' must be a non-empty list"),
        (
            {"ranges": [{"network": "3.80.0.0/12"}]},
            r"ranges\[0\]: must be an object with 'network' and 'scope'",
        ),
        ({"ranges": [{"network": "3.80.0.1/12", "scope": ""}]}, r"ranges\[0\]: 3\.80\.0\.1/12 has host bits"),
        (
            {"ranges": [{"network": "3.80.0.0/12", "scope": ""}, {"network": "3.80.0.0/12", "scope": ""}]},
            r"ranges\[1\]: 3\.80\.0\.0/12 is listed twice",
        ),
    ],
)
def test_a_malformed_kept_file_stops_the_start_naming_it(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    doc = json.loads((Path(__file__).parents[2] / "processors" / "data" / "cloud" / "aws.json").read_text())
    (tmp_path / "aws.json").write_text(json.dumps(doc | change))
    with pytest.raises(RangeFileError, match=message) as caught:
        load_cloud_lists(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / "aws.json"))


def test_the_summary_of_a_list_for_the_start_log_and_the_refresh_report(tmp_path: Path) -> None:
    bundled = {c.platform: c for c in load_cloud_lists()}
    assert cloud_summary(bundled["aws"]) == (
        'aws 4 ranges (3 IPv4, 1 IPv6; service "EC2"), the bundled sample of 2026-12-04'
    )
    refreshed = dataclasses.replace(
        _cloud("oracle", "129.146.0.0/21"), published="2026-11-30T19:55:47", origin="/d/oracle.json"
    )
    assert cloud_summary(refreshed) == (
        "oracle 1 range (1 IPv4, 0 IPv6; all), published 2026-11-30T19:55:47, refreshed 2026-12-04, "
        "from /d/oracle.json"
    )
