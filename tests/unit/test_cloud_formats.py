"""Each cloud platform's published list, read in its own format: what is kept as compute, and what is refused.

The samples in tests/data/cloud/ are in the exact published formats (the structure each provider documents,
with ranges known to be in its list); processors/data/cloud/README.md says where each format is documented.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from processors.cloud_formats import (
    PLATFORM_BY_NAME,
    PLATFORMS,
    Published,
    Reader,
    read_aws,
    read_azure,
    read_gcp,
    read_geofeed,
    read_oracle,
)
from processors.ranges import RangeFileError

SAMPLES = Path(__file__).parents[1] / "data" / "cloud"
FILE_DATE = "2026-12-01"


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def _read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _as_text(found: Published) -> list[tuple[str, str]]:
    return [(str(network), scope) for network, scope in found.networks]


def test_aws_keeps_ec2_only_from_both_prefix_lists() -> None:
    found = read_aws(_read("ip-ranges.json"), "ip-ranges.json", FILE_DATE)
    assert found.published == "2026-11-30T16:33:07Z"
    # Not the AMAZON superset (52.95.245.0/24 is Amazon's own), not CLOUDFRONT (13.32.0.0/15, 2600:9000::/28);
    # a prefix listed under AMAZON and EC2 is kept once.
    assert _as_text(found) == [
        ("3.80.0.0/12", "us-east-1"),
        ("18.208.0.0/13", "us-east-1"),
        ("52.2.0.0/15", "us-east-1"),
        ("2600:1f18::/33", "us-east-1"),
    ]


def test_gcp_keeps_every_cloud_json_prefix_with_its_region() -> None:
    found = read_gcp(_read("cloud.json"), "cloud.json", FILE_DATE)
    assert found.published == "2026-11-30T09:00:00.000000"
    assert _as_text(found) == [
        ("8.34.208.0/23", "europe-west1"),
        ("23.251.128.0/20", "europe-west1"),
        ("34.76.0.0/14", "europe-west1"),
        ("35.192.0.0/14", "us-central1"),
        ("2600:1900:4000::/44", "us-central1"),
    ]


def test_azure_keeps_the_azurecloud_tag_with_regions_from_its_regional_tags() -> None:
    found = read_azure(
        _read("ServiceTags_Public_20261130.json"), "dl/ServiceTags_Public_20261130.json", FILE_DATE
    )
    assert found.published == "2026-11-30 (cloud Public, change 401)"
    # ActionGroup's 4.145.74.52/30 is a service tag of its own, not AzureCloud's.
    assert _as_text(found) == [
        ("13.64.0.0/16", "westus"),
        ("13.82.0.0/16", "eastus"),
        ("13.90.0.0/16", "eastus"),
        ("20.42.0.0/17", "eastus"),
    ]


def test_azure_reads_ipv6_prefixes_and_falls_back_to_the_files_date_without_microsofts_file_name() -> None:
    doc = {
        "changeNumber": 7,
        "cloud": "Public",
        "values": [
            {"name": "AzureCloud", "id": "AzureCloud",
             "properties": {"changeNumber": 3, "region": "", "regionId": 0, "platform": "Azure",
                            "systemService": "", "addressPrefixes": ["13.64.0.0/16", "2603:1030::/47"],
                            "networkFeatures": ["API", "NSG"]}},
        ],
    }  # fmt: skip
    found = read_azure(json.dumps(doc).encode(), "azure.json", FILE_DATE)
    assert found.published == "not stated (file date 2026-12-01) (cloud Public, change 7)"
    assert _as_text(found) == [("13.64.0.0/16", ""), ("2603:1030::/47", "")]


def test_oracle_keeps_oci_and_leaves_the_oracle_services_network_out() -> None:
    found = read_oracle(_read("public_ip_ranges.json"), "public_ip_ranges.json", FILE_DATE)
    assert found.published == "2026-11-30T19:55:47.204985"
    assert _as_text(found) == [("129.146.0.0/21", "us-phoenix-1"), ("129.213.8.0/21", "us-ashburn-1")]


def test_geofeeds_keep_every_line_skip_comments_and_blank_lines() -> None:
    found = read_geofeed(_read("linode-geofeed.csv"), "linode-geofeed.csv", FILE_DATE)
    assert found.published == "not stated (file date 2026-12-01)"
    assert _as_text(found) == [
        ("45.79.0.0/16", "US"),
        ("172.104.0.0/15", "US"),
        ("2600:3c03::/32", "Newark, US-NJ, US"),
    ]
    found = read_geofeed(_read("digitalocean-google.csv"), "google.csv", FILE_DATE)
    assert [str(n) for n, _ in found.networks] == [
        "104.131.0.0/16",
        "159.203.0.0/16",
        "46.101.0.0/16",
        "2604:a880::/32",
    ]


def test_a_geofeed_may_list_a_lone_address_and_quote_its_fields() -> None:
    raw = b'\xef\xbb\xbf# feed\r\n192.0.2.7,US,US-NY,"New York, NY",10001\r\n\r\n2001:db8::1,,,,\r\n'
    found = read_geofeed(raw, "feed.csv", FILE_DATE)
    assert _as_text(found) == [("192.0.2.7/32", "New York, NY, US-NY, US"), ("2001:db8::1/128", "")]


def test_the_registry_names_every_platform_once_with_its_source() -> None:
    assert [p.name for p in PLATFORMS] == ["aws", "gcp", "azure", "oracle", "digitalocean", "linode"]
    assert PLATFORM_BY_NAME["gcp"].source == "https://www.gstatic.com/ipranges/cloud.json"
    assert all(p.source.startswith("https://") and p.kept and p.title for p in PLATFORMS)


@pytest.mark.parametrize(
    ("platform", "sample"),
    [
        ("aws", "cloud.json"),
        ("gcp", "ip-ranges.json"),
        ("azure", "public_ip_ranges.json"),
        ("oracle", "ServiceTags_Public_20261130.json"),
        ("digitalocean", "ip-ranges.json"),
        ("linode", "cloud.json"),
    ],
)
def test_another_platforms_file_is_refused_saying_what_was_expected(platform: str, sample: str) -> None:
    with pytest.raises(RangeFileError, match=r"^x\.json: not ") as caught:
        PLATFORM_BY_NAME[platform].read(_read(sample), "x.json", FILE_DATE)
    expected = {"aws": "AWS's ip-ranges.json", "gcp": "Google Cloud's cloud.json",
                "azure": "Azure's Service Tags JSON", "oracle": "Oracle Cloud's public_ip_ranges.json",
                "digitalocean": "a geofeed", "linode": "a geofeed"}[platform]  # fmt: skip
    assert expected in str(caught.value)


def test_googles_goog_json_is_refused_it_lists_gmails_proxies_too() -> None:
    goog = {"syncToken": "1764493200000", "creationTime": "2026-11-30T09:00:00.000000",
            "prefixes": [{"ipv4Prefix": "66.249.80.0/20"}, {"ipv6Prefix": "2001:4860::/32"}]}  # fmt: skip
    with pytest.raises(
        RangeFileError, match=r"goog\.json: prefixes\[0\]: no 'service': this is not cloud\.json"
    ):
        read_gcp(json.dumps(goog).encode(), "goog.json", FILE_DATE)


def _aws(prefixes: object, created: str = "2026-11-30-16-33-07") -> bytes:
    return json.dumps({"createDate": created, "prefixes": prefixes, "ipv6_prefixes": []}).encode()


def _ec2(prefix: str, service: str = "EC2") -> dict[str, str]:
    return {
        "ip_prefix": prefix,
        "region": "us-east-1",
        "service": service,
        "network_border_group": "us-east-1",
    }


def _azure(name: str, prefixes: list[str], change: object = 1) -> bytes:
    value = {"name": name, "properties": {"addressPrefixes": prefixes}}
    return json.dumps({"changeNumber": change, "cloud": "Public", "values": [value]}).encode()


def _oracle(cidr: str, tags: object) -> bytes:
    regions = [{"region": "us-phoenix-1", "cidrs": [{"cidr": cidr, "tags": tags}]}]
    return json.dumps({"last_updated_timestamp": "t", "regions": regions}).encode()


@pytest.mark.parametrize(
    ("reader", "raw", "message"),
    [
        (read_aws, b"{", r"f: not JSON \(AWS's ip-ranges\.json is JSON\)"),
        (read_aws, b"[]", r"f: not AWS's ip-ranges\.json: not a JSON object"),
        (read_aws, b'{"createDate": "2026-11-30-16-33-07", "prefixes": []}',
         r"f: not AWS's ip-ranges\.json: no 'ipv6_prefixes'"),
        (read_aws, _aws([], "2026-11-30"), r"'createDate' '2026-11-30' is not yyyy"),
        (read_aws, _aws({}), r"f: prefixes: must be a list"),
        (read_aws, _aws([_ec2("2600:1f18::/33")]), r"ip_prefix: 2600:1f18::/33 is not an IPv4"),
        (read_aws, _aws([_ec2("3.80.0.1/12")]), r"prefixes\[0\]\.ip_prefix: 3\.80\.0\.1/12 has host bits"),
        (read_aws, _aws([_ec2("52.95.245.0/24", "AMAZON")]), r"f: no EC2 range in it"),
        (read_aws, _aws([{"ip_prefix": "3.80.0.0/12"}]), r"prefixes\[0\]: 'service' must be a string"),
        (read_gcp, b'{"creationTime": "t", "prefixes": [{"service": "Google Cloud", "scope": "x"}]}',
         r"prefixes\[0\]: needs one of 'ipv4Prefix' and 'ipv6Prefix'"),
        (read_gcp, b'{"creationTime": "t", "prefixes": []}', r"f: no Google Cloud range in it"),
        (read_azure, _azure("Storage", ["1.2.3.0/24"]), r"no 'AzureCloud' service tag"),
        (read_azure, _azure("AzureCloud", ["13.64.0.0/33"]),
         r"values\[0\]\.properties\.addressPrefixes\[0\]: .*13\.64\.0\.0/33"),
        (read_azure, _azure("AzureCloud", [], "1"), r"'changeNumber' must be a whole"),
        (read_oracle, _oracle("129.146.0.0/21", "OCI"), r"cidrs\[0\]: 'tags' must be a list of strings"),
        (read_oracle, _oracle("134.70.8.0/21", ["OSN"]), r"f: no OCI range in it"),
        (read_geofeed, b"<html><body>Not found</body></html>", r"f: not a geofeed \(RFC 8805 CSV\)"),
        (read_geofeed, b"# only comments\n", r"f: no geofeed range in it"),
        (read_geofeed, b"45.79.0.0/16,US,,,\nNewark,US,,,\n", r"f: line 2: .*'Newark'"),
        (read_geofeed, b"\xff\xfe4\x005\x00", r"f: not a geofeed: not UTF-8 text"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_naming_the_file_and_the_place(
    reader: Reader, raw: bytes, message: str
) -> None:
    with pytest.raises(RangeFileError, match=message):
        reader(raw, "f", FILE_DATE)
