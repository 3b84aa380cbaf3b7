"""The bundled range table and the lookup over it."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import date
from pathlib import Path

import pytest

from processors.ranges import RangeEntry, RangeFileError, RangeMatch, RangeTable, load_ranges

ROLES = {"mpp_prefetch", "image_proxy", "security_gateway"}
OWNERS = {"apple", "google", "yahoo", "microsoft_eop", "proofpoint", "mimecast", "barracuda"}


@pytest.fixture(scope="module")
def table() -> RangeTable:
    return load_ranges()


def test_the_bundled_file_is_versioned_and_every_entry_names_its_source(table: RangeTable) -> None:
    assert table.version >= 1
    assert date.fromisoformat(table.updated) >= date(2026, 11, 22)
    assert len(table) == 51
    assert {e.owner for e in table.entries} == OWNERS
    assert {e.role for e in table.entries} == ROLES
    assert all(e.source for e in table.entries)
    assert {e.network.version for e in table.entries} == {4, 6}


def test_bundled_networks_do_not_overlap_across_owners(table: RangeTable) -> None:
    entries = list(table.entries)
    for i, a in enumerate(entries):
        for b in entries[i + 1 :]:
            if a.network.version == b.network.version and a.owner != b.owner:
                assert not a.network.overlaps(b.network), (a.network, b.network)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ip", "owner", "role", "network"),
    [
        ("17.58.63.200", "apple", "mpp_prefetch", "17.0.0.0/8"),
        ("17.0.0.0", "apple", "mpp_prefetch", "17.0.0.0/8"),
        ("17.255.255.255", "apple", "mpp_prefetch", "17.0.0.0/8"),
        ("::ffff:17.122.140.9", "apple", "mpp_prefetch", "17.0.0.0/8"),
        ("2620:149:a44::10", "apple", "mpp_prefetch", "2620:149::/32"),
        ("2a01:b740:a20::1", "apple", "mpp_prefetch", "2a01:b740::/32"),
        ("2403:300:a0c::1", "apple", "mpp_prefetch", "2403:300::/32"),
        ("66.102.6.15", "google", "image_proxy", "66.102.0.0/20"),
        ("66.249.88.12", "google", "image_proxy", "66.249.80.0/20"),
        ("74.125.208.1", "google", "image_proxy", "74.125.0.0/16"),
        ("2a00:1450:4864:20::135", "google", "image_proxy", "2a00:1450:4000::/36"),
        ("2607:f8b0:4864:20::13f", "google", "image_proxy", "2607:f8b0:4000::/36"),
        ("98.138.10.4", "yahoo", "image_proxy", "98.136.0.0/14"),
        ("2001:4998:124:1507::f000", "yahoo", "image_proxy", "2001:4998::/32"),
        ("40.107.8.77", "microsoft_eop", "security_gateway", "40.107.0.0/16"),
        ("40.93.255.255", "microsoft_eop", "security_gateway", "40.92.0.0/15"),
        ("52.101.4.9", "microsoft_eop", "security_gateway", "52.100.0.0/14"),
        ("104.47.127.255", "microsoft_eop", "security_gateway", "104.47.0.0/17"),
        ("2a01:111:f400:7e1a::205", "microsoft_eop", "security_gateway", "2a01:111:f400::/48"),
        ("2a01:111:f403:c000::1", "microsoft_eop", "security_gateway", "2a01:111:f403::/48"),
        ("148.163.150.10", "proofpoint", "security_gateway", "148.163.128.0/19"),
        ("67.231.149.20", "proofpoint", "security_gateway", "67.231.144.0/20"),
        ("205.139.110.30", "mimecast", "security_gateway", "205.139.110.0/24"),
        ("209.222.82.5", "barracuda", "security_gateway", "209.222.80.0/21"),
    ],
)
def test_known_space(table: RangeTable, ip: str, owner: str, role: str, network: str) -> None:
    assert table.match(ip) == RangeMatch(owner, role, network)


@pytest.mark.parametrize(
    "ip",
    [
        "16.255.255.255",  # one below Apple's /8
        "18.0.0.0",  # one above
        "104.47.128.0",  # just past EOP's /17
        "2a01:111:f401::1",  # between EOP's two IPv6 /48s
        "24.6.101.33",
        "81.2.69.160",
        "66.249.66.1",  # Googlebot's crawl space, not Gmail's
        "2001:db8::1",
        "",
        "garbage",
        "17.58.63",
        "17.58.63.200.1",
        "1.2.3.4/32",
        "fe80::1%eth0",
        "::ffff:24.6.101.33",
        " 17.58.63.200",
    ],
)
def test_unknown_space_or_garbage_matches_nothing(table: RangeTable, ip: str) -> None:
    assert table.match(ip) is None


def test_match_never_raises_on_a_non_string(table: RangeTable) -> None:
    assert table.match(None) is None  # type: ignore[arg-type]
    assert table.match(17) is None  # type: ignore[arg-type]


def _entry(network: str, owner: str) -> RangeEntry:
    return RangeEntry(ipaddress.ip_network(network), owner, "image_proxy", "test")


def test_the_most_specific_network_wins_and_its_parent_covers_the_rest() -> None:
    table = RangeTable(
        [
            _entry("10.0.0.0/8", "wide"),
            _entry("10.1.0.0/16", "middle"),
            _entry("10.1.2.0/24", "narrow"),
            _entry("10.1.3.0/24", "sibling"),
            _entry("10.200.0.0/16", "late"),
        ]
    )

    def owner(ip: str) -> str | None:
        found = table.match(ip)
        return found.owner if found else None

    assert owner("10.1.2.77") == "narrow"
    assert owner("10.1.3.1") == "sibling"
    assert owner("10.1.4.1") == "middle"  # after both /24s: back up to the /16
    assert owner("10.1.255.255") == "middle"
    assert owner("10.2.0.0") == "wide"  # after the /16: back up to the /8
    assert owner("10.200.1.1") == "late"
    assert owner("10.255.255.255") == "wide"
    assert owner("11.0.0.0") is None
    assert owner("9.255.255.255") is None


def test_lookup_agrees_with_a_linear_scan_on_random_addresses(table: RangeTable) -> None:
    rng = random.Random(20261122)
    entries = list(table.entries)
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for entry in entries:  # the edges of every block and their neighbours, plus random ones inside
        net = entry.network
        low, high = int(net.network_address), int(net.broadcast_address)
        cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        edges = (low - 1, low, high, high + 1, rng.randint(low, high))
        probes.extend(cls(value) for value in edges if 0 <= value <= top)
    probes += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    for addr in probes:
        holders = [e for e in entries if e.network.version == addr.version and addr in e.network]
        expected = max(holders, key=lambda e: e.network.prefixlen) if holders else None
        got = table.match(str(addr))
        assert (got.network if got else None) == (str(expected.network) if expected else None), addr


def test_a_network_listed_twice_is_rejected() -> None:
    with pytest.raises(RangeFileError, match=r"17\.0\.0\.0/8 is listed twice"):
        RangeTable([_entry("17.0.0.0/8", "apple"), _entry("17.0.0.0/8", "apple")])


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "ranges.json"
    path.write_text(json.dumps(doc))
    return path


def test_load_ranges_reads_a_file_of_the_same_format(tmp_path: Path) -> None:
    doc = {
        "version": 3,
        "updated": "2026-01-01",
        "ranges": [{"network": "192.0.2.0/24", "owner": "acme", "role": "image_proxy", "source": "RFC 5737"}],
    }
    table = load_ranges(_write(tmp_path, doc))
    assert (table.version, table.updated, len(table)) == (3, "2026-01-01", 1)
    assert table.match("192.0.2.9") == RangeMatch("acme", "image_proxy", "192.0.2.0/24")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "not a JSON object"),
        ({"updated": "2026-01-01", "ranges": []}, "'version'"),
        ({"version": True, "updated": "2026-01-01", "ranges": []}, "'version'"),
        ({"version": 1, "ranges": []}, "'updated'"),
        ({"version": 1, "updated": "2026-01-01", "ranges": {}}, "'ranges' must be a list"),
        ({"version": 1, "updated": "2026-01-01", "ranges": ["x"]}, r"ranges\[0\]: not an object"),
        (
            {"version": 1, "updated": "d", "ranges": [{"network": "1.2.3.0/24", "owner": "a", "role": "r"}]},
            r"ranges\[0\]: 'source'",
        ),
        (
            {
                "version": 1,
                "updated": "d",
                "ranges": [{"network": "1.2.3.4/24", "owner": "a", "role": "r", "source": "s"}],
            },
            r"ranges\[0\]: 1\.2\.3\.4/24 has host bits set",
        ),
    ],
)
def test_a_malformed_file_is_rejected_naming_the_file_and_entry(
    tmp_path: Path, doc: object, message: str
) -> None:
    with pytest.raises(RangeFileError, match=message) as caught:
        load_ranges(_write(tmp_path, doc))
    assert str(caught.value).startswith(str(tmp_path / "ranges.json"))


def test_a_missing_or_non_json_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RangeFileError, match=r"nope\.json"):
        load_ranges(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(RangeFileError, match="not JSON"):
        load_ranges(bad)


def test_a_parsed_address_matches_as_its_text_does(table: RangeTable) -> None:
    from processors.address import parse_address

    for ip in ("17.58.63.200", "::ffff:17.122.140.9", "2a00:1450:4864:20::135", "10.0.0.1", "garbage"):
        assert table.match_address(parse_address(ip)) == table.match(ip)
    assert table.match_address(None) is None


def test_a_large_table_searched_by_buckets_agrees_with_a_linear_scan() -> None:
    """Past 512 networks of a family (the cloud lists) the search is narrowed by the top 16 bits first:
    networks nested across buckets, at bucket edges and at both ends of the address space included."""
    rng = random.Random(20261204)
    networks: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = {
        ipaddress.ip_network("0.0.0.0/24"),
        ipaddress.ip_network("255.255.255.0/24"),
        ipaddress.ip_network("ffff:ffff:ffff:ffff::/64"),
        ipaddress.ip_network("::/64"),
    }
    v4: set[ipaddress.IPv4Network] = set()
    while len(v4) < 900:
        v4.add(
            ipaddress.IPv4Network(
                (rng.getrandbits(32), rng.choice([8, 12, 15, 16, 17, 20, 24, 32])), strict=False
            )
        )
    v6: set[ipaddress.IPv6Network] = set()
    while len(v6) < 700:
        value = (0x2600 << 112) | (rng.getrandbits(24) << 88) if rng.random() < 0.8 else rng.getrandbits(128)
        v6.add(ipaddress.IPv6Network((value, rng.choice([12, 16, 20, 32, 40, 48, 64])), strict=False))
    networks |= v4 | v6
    table = RangeTable(RangeEntry(n, "o", "cloud_compute", "s") for n in networks)
    spans = [
        (n.version, int(n.network_address), int(n.broadcast_address), n.prefixlen, str(n)) for n in networks
    ]
    probes: list[tuple[int, int]] = []
    for version, low, high, _, _ in spans[:400]:
        top = 2**32 - 1 if version == 4 else 2**128 - 1
        probes += [(version, v) for v in (low - 1, low, high, high + 1) if 0 <= v <= top]
    probes += [(4, rng.getrandbits(32)) for _ in range(600)] + [(4, k << 16) for k in (0, 1, 255, 65535)]
    probes += [(6, (0x2600 << 112) | rng.getrandbits(112)) for _ in range(300)]
    for version, value in probes:
        holders = [s for s in spans if s[0] == version and s[1] <= value <= s[2]]
        expected = max(holders, key=lambda s: s[3])[4] if holders else None
        address = str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
        got = table.match(address)
        assert (got.network if got else None) == expected, address
