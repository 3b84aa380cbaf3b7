"""The cloud signal in the per-hit classifier: a browser-like fetch from a cloud platform's compute range at
delivery is a scanner (an open: a machine open; a click: a bot click), with the platform in the reason; a
mail client there, a fetch later, an address outside the compute ranges (a VPN's or a relay's egress) is a
person's. The table is the one the processors use: the curated ranges plus the bundled cloud lists."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from processors.classify import CLOUD_AT_DELIVERY_S, RULES, classify, facts_for, rule_table_markdown
from processors.cloud_formats import PLATFORM_BY_NAME
from processors.cloud_ranges import (
    CloudList,
    load_classification_ranges,
    read_published,
    with_cloud,
    write_cloud_lists,
)
from processors.geo import Geo
from processors.ranges import RangeTable, load_ranges
from processors.useragent import parse_agent
from schemas.events import HitKind
from schemas.verdicts import Classification, Verdict
from tests.unit.test_classify import CHROME, GMAIL_PREFETCH, GMAIL_PROXY, OUTLOOK, hit, verdict_of

EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0"
OUTLOOK_IOS = "Outlook-iOS/723.4027091.prod.iphone (4.2.1)"

# One address in each platform's bundled compute ranges, IPv4 and IPv6, and one just outside them.
INSIDE = [
    ("3.85.1.2", "aws"),
    ("2600:1f18:41f0::7", "aws"),
    ("34.77.5.6", "gcp"),
    ("2600:1900:4001::5", "gcp"),
    ("13.82.10.10", "azure"),
    ("::ffff:13.64.1.1", "azure"),
    ("129.146.1.1", "oracle"),
    ("159.203.10.10", "digitalocean"),
    ("2604:a880:800:10::1", "digitalocean"),
    ("45.79.1.1", "linode"),
    ("2600:3c03::f03c:91ff:fe00:1", "linode"),
]
OUTSIDE = [
    "3.96.0.0",  # past AWS's 3.80.0.0/12
    "52.95.245.10",  # AWS "AMAZON" only: Amazon's own network, not EC2
    "13.32.1.1",  # CloudFront
    "2600:1f18:8000::1",
    "34.80.0.1",  # past GCP's 34.76.0.0/14
    "2600:1900:4010::1",
    "13.65.0.1",  # past Azure's 13.64.0.0/16
    "129.146.8.0",  # past Oracle's 129.146.0.0/21
    "134.70.8.5",  # the Oracle Services Network
    "159.204.0.1",
    "2604:a881::1",
    "45.80.0.1",
    "2600:3c04::1",
]
HUMAN = Classification(Verdict.HUMAN, "ua:client")


@pytest.fixture(scope="module")
def ranges() -> RangeTable:
    return load_classification_ranges()[0]


@pytest.mark.parametrize(("ip", "platform"), INSIDE)
@pytest.mark.parametrize("ua", [CHROME, EDGE])
def test_a_browser_open_from_a_compute_range_at_delivery_is_a_machine_open_naming_the_platform(
    ranges: RangeTable, ip: str, platform: str, ua: str
) -> None:
    for after_s in (0, 2, 30, 119.9):
        got = verdict_of(hit(ua, ip, after_s=after_s), ranges)
        assert got == Classification(Verdict.MACHINE, f"cloud_{platform}")


@pytest.mark.parametrize(("ip", "platform"), INSIDE)
def test_a_browser_click_from_a_compute_range_at_delivery_is_a_bot_click_naming_the_platform(
    ranges: RangeTable, ip: str, platform: str
) -> None:
    got = verdict_of(hit(CHROME, ip, kind="click", after_s=4), ranges)
    assert got == Classification(Verdict.BOT, f"cloud_{platform}")


@pytest.mark.parametrize(("ip", "platform"), INSIDE)
@pytest.mark.parametrize("kind", ["open", "click"])
def test_the_same_browser_from_there_later_is_a_person_a_cloud_pc_or_a_vpn(
    ranges: RangeTable, ip: str, platform: str, kind: HitKind
) -> None:
    assert CLOUD_AT_DELIVERY_S == 120.0
    for after_s in (120, 600, 86_400):
        assert verdict_of(hit(CHROME, ip, kind=kind, after_s=after_s), ranges) == HUMAN
    # Without a send time, "at delivery" is unknown: the cloud alone never condemns.
    assert verdict_of(hit(CHROME, ip, kind=kind, after_s=2, sent_at=0), ranges) == HUMAN


@pytest.mark.parametrize(("ip", "platform"), INSIDE)
@pytest.mark.parametrize("ua", [OUTLOOK, APPLE_MAIL, THUNDERBIRD, OUTLOOK_IOS])
@pytest.mark.parametrize("kind", ["open", "click"])
def test_a_mail_client_in_a_cloud_is_a_person_even_at_delivery(
    ranges: RangeTable, ip: str, platform: str, ua: str, kind: HitKind
) -> None:
    assert verdict_of(hit(ua, ip, kind=kind, after_s=3), ranges) == HUMAN


@pytest.mark.parametrize("ip", OUTSIDE)
@pytest.mark.parametrize("kind", ["open", "click"])
def test_a_browser_outside_every_compute_range_is_a_person_even_at_delivery(
    ranges: RangeTable, ip: str, kind: HitKind
) -> None:
    assert verdict_of(hit(CHROME, ip, kind=kind, after_s=2), ranges) == HUMAN


@pytest.mark.parametrize(
    "ip",
    [
        "172.224.226.1",  # iCloud Private Relay egress (Akamai, Apple's egress-ip-ranges.csv)
        "104.28.0.1",  # Cloudflare WARP and Private Relay egress
        "2a02:26f7:b3c0:4000::1",  # Private Relay egress over IPv6 (Akamai)
        "165.225.0.1",  # Zscaler, a corporate web proxy
    ],
)
def test_consumer_relays_vpns_and_corporate_proxies_are_not_compute_ranges(
    ranges: RangeTable, ip: str
) -> None:
    assert ranges.match(ip) is None
    assert verdict_of(hit(CHROME, ip, after_s=2), ranges) == HUMAN
    assert verdict_of(hit(CHROME, ip, kind="click", after_s=2), ranges) == HUMAN


@pytest.mark.parametrize(("asn", "platform"), [(24940, "hetzner"), (16276, "ovh")])
def test_hosting_providers_without_a_list_are_known_by_asn(
    ranges: RangeTable, asn: int, platform: str
) -> None:
    geo = Geo(country="DE", asn=asn)
    assert verdict_of(hit(CHROME, "192.0.2.10", after_s=10), ranges, geo) == Classification(
        Verdict.MACHINE, f"cloud_{platform}"
    )
    assert verdict_of(hit(CHROME, "192.0.2.10", kind="click", after_s=10), ranges, geo) == Classification(
        Verdict.BOT, f"cloud_{platform}"
    )
    assert verdict_of(hit(CHROME, "192.0.2.10", after_s=3600), ranges, geo) == HUMAN
    assert verdict_of(hit(OUTLOOK, "192.0.2.10", after_s=10), ranges, geo) == HUMAN
    assert verdict_of(hit(CHROME, "192.0.2.10", after_s=10), ranges) == HUMAN  # no ASN database


def test_a_curated_range_keeps_its_verdict_inside_a_cloud_range(ranges: RangeTable) -> None:
    around = CloudList("azure", "s", "k", "p", "r", True, ((ipaddress.ip_network("40.0.0.0/8"), ""),))
    table = with_cloud(load_ranges(), [around])
    eop = Classification(Verdict.MACHINE, "gateway_range:microsoft_eop")
    assert verdict_of(hit(CHROME, "40.107.8.77", after_s=2), table) == eop
    assert verdict_of(hit(CHROME, "40.1.2.3", after_s=2), table) == Classification(
        Verdict.MACHINE, "cloud_azure"
    )
    # Apple's relays and Gmail's proxy are not clouds' compute, whatever the lists hold around them.
    assert verdict_of(hit("Mozilla/5.0", "17.58.63.200", after_s=2), ranges) == Classification(
        Verdict.MACHINE, "apple_mpp"
    )
    assert verdict_of(hit(GMAIL_PROXY, "66.249.88.12", after_s=2), ranges) == Classification(
        Verdict.HUMAN, "gmail_proxy", via_proxy=True
    )


def test_a_script_in_a_cloud_keeps_its_user_agents_reason(ranges: RangeTable) -> None:
    assert verdict_of(hit("curl/8.5.0", "3.85.1.2", after_s=2), ranges) == Classification(
        Verdict.BOT, "ua:http_library"
    )
    headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0"
    assert verdict_of(hit(headless, "34.77.5.6", after_s=2), ranges) == Classification(
        Verdict.BOT, "ua:headless"
    )
    assert verdict_of(hit("Mozilla/5.0", "13.82.10.10", after_s=2), ranges) == Classification(
        Verdict.BOT, "ua:bare_mozilla"
    )


@pytest.mark.parametrize("ua", [GMAIL_PROXY, GMAIL_PREFETCH])
@pytest.mark.parametrize("ip", ["3.85.1.2", "34.77.5.6", "2600:1900:4001::5"])
def test_a_mail_providers_ua_from_a_clouds_compute_range_is_a_spoof(
    ranges: RangeTable, ua: str, ip: str
) -> None:
    # Gmail fetches from Google's own networks, not from the ranges Google Cloud rents to its customers.
    got = verdict_of(hit(ua, ip, after_s=7200), ranges)
    assert got == Classification(Verdict.BOT, "ua:provider_spoof")


def test_the_listed_range_goes_beyond_the_asn_rule_and_the_asn_rule_still_stands(ranges: RangeTable) -> None:
    microsoft = Geo(country="US", asn=8075, as_org="Microsoft Corporation")
    # In Azure's listed compute range: the cloud rule, with its longer window, names the platform.
    assert verdict_of(hit(CHROME, "13.82.10.10", after_s=4), ranges, microsoft) == Classification(
        Verdict.MACHINE, "cloud_azure"
    )
    assert verdict_of(hit(CHROME, "13.82.10.10", after_s=60), ranges, microsoft) == Classification(
        Verdict.MACHINE, "cloud_azure"
    )
    # Microsoft's ASN outside the listed ranges: the ASN rule as before (< 10 s only).
    bot = Classification(Verdict.BOT, "asn_datacenter_at_delivery")
    assert verdict_of(hit(CHROME, "192.0.2.77", after_s=4), ranges, microsoft) == bot
    assert verdict_of(hit(CHROME, "192.0.2.77", after_s=60), ranges, microsoft) == HUMAN


def test_the_per_signal_index_gives_the_same_answers_as_the_whole_table_in_clouds(ranges: RangeTable) -> None:
    uas = ["", "Mozilla/5.0", CHROME, OUTLOOK, APPLE_MAIL, GMAIL_PROXY, GMAIL_PREFETCH, "curl/8.0"]
    ips = [ip for ip, _ in INSIDE] + OUTSIDE[:4] + ["40.107.8.77", "17.58.63.200"]
    geos = [Geo(), Geo(asn=24940), Geo(asn=8075), Geo(asn=15169)]
    for ua in uas:
        agent = parse_agent(ua)
        for ip in ips:
            for geo in geos:
                for kind in ("open", "click"):
                    for after_s in (2, 60, 4000):
                        h = hit(ua, ip, kind=kind, after_s=after_s)  # type: ignore[arg-type]
                        facts = facts_for(h, agent, geo, ranges)
                        whole = next(r.decide(facts) for r in RULES if r.applies(facts))
                        assert classify(h, agent, geo, ranges) == whole, (ua, ip, geo, kind, after_s)


def test_the_rule_table_prints_the_cloud_rules_with_their_sources() -> None:
    table = rule_table_markdown()
    assert table.count("| `cloud_{platform}` |") == 2
    assert "AWS ip-ranges.json (EC2)" in table


def test_ipv6_from_a_refreshed_azure_or_oracle_list(tmp_path: Path) -> None:
    """The bundled Azure and Oracle samples hold IPv4 only; their readers take IPv6 (documentation prefixes
    stand in for the real ones here)."""
    azure = {
        "changeNumber": 9,
        "cloud": "Public",
        "values": [
            {"name": "AzureCloud", "properties": {"region": "", "addressPrefixes": ["2001:db8:a::/48"]}}
        ],
    }
    oracle = {"last_updated_timestamp": "2026-11-30T19:55:47", "regions": [
        {"region": "eu-frankfurt-1", "cidrs": [{"cidr": "2001:db8:b::/48", "tags": ["OCI"]},
                                              {"cidr": "2001:db8:c::/48", "tags": ["OSN"]}]}]}  # fmt: skip
    lists = [
        read_published(
            PLATFORM_BY_NAME[name], json.dumps(doc).encode(), f"{name}.json", "2026-12-01", "2026-12-01"
        )
        for name, doc in (("azure", azure), ("oracle", oracle))
    ]
    write_cloud_lists(lists, tmp_path)
    table, _ = load_classification_ranges(tmp_path)
    assert verdict_of(hit(CHROME, "2001:db8:a::7", after_s=5), table) == Classification(
        Verdict.MACHINE, "cloud_azure"
    )
    assert verdict_of(hit(CHROME, "2001:db8:b::7", kind="click", after_s=5), table) == Classification(
        Verdict.BOT, "cloud_oracle"
    )
    assert verdict_of(hit(CHROME, "2001:db8:c::7", after_s=5), table) == HUMAN  # the Oracle Services Network
    assert (
        verdict_of(hit(CHROME, "13.82.10.10", after_s=5), table) == HUMAN
    )  # the refreshed list replaced the sample
