"""The client address parsed once per hit: it must say exactly what ``ipaddress`` says, for every address."""

from __future__ import annotations

import ipaddress
import random

import pytest

from processors.address import ClientAddress, parse_address

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def expected(text: str) -> ClientAddress | None:
    """What ``ipaddress`` says, the slow way: the reference."""
    try:
        address: Address = ipaddress.ip_address(text)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    truncated = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            address = ipaddress.IPv6Address(int(address))  # without a scope id
    return ClientAddress(address.version, int(address), str(address), address.is_global, truncated)


def parsed(text: str) -> ClientAddress | None:
    """`parse_address`, with ``text`` spelled as ipaddress spells it (IPv6 is looked up as written)."""
    address = parse_address(text)
    if address is None:
        return None
    assert address.text == text or ":" in text  # IPv4 exactly as written (the cache key, the lookup)
    return address._replace(text=str(ipaddress.ip_address(address.text)))


def networks_of_this_python() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every network ``ipaddress`` itself names (they differ between Python releases)."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for value in vars(cls._constants).values():  # type: ignore[attr-defined]
            items = value if isinstance(value, list | tuple) else [value]
            found += [n for n in items if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)]
    return found


def edges() -> list[str]:
    """The first and last address of every special network and their neighbours, in both spellings of
    IPv4 (dotted and IPv4-mapped IPv6)."""
    from processors.address import _SPECIAL_V4, _SPECIAL_V6

    networks = [ipaddress.ip_network(n) for n in (*_SPECIAL_V4, *_SPECIAL_V6)] + networks_of_this_python()
    out: list[str] = []
    for net in networks:
        low, high = int(net.network_address), int(net.broadcast_address)
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        for value in (low - 1, low, low + 1, (low + high) // 2, high - 1, high, high + 1):
            if 0 <= value <= top:
                out.append(str(cls(value)))
                if net.version == 4:
                    out.append(f"::ffff:{cls(value)}")
    return out


def test_the_special_networks_and_their_edges_agree_with_ipaddress() -> None:
    probes = edges()
    assert len(probes) > 400
    for text in probes:
        assert parsed(text) == expected(text), text


def test_random_addresses_agree_with_ipaddress() -> None:
    rng = random.Random(20261122)
    probes = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20_000)]
    probes += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(5_000)]
    probes += [str(ipaddress.IPv6Address((0x2000 << 112) | rng.getrandbits(125))) for _ in range(5_000)]
    probes += [f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}" for _ in range(5_000)]
    # Short IPv6 prefixes: where the special-purpose blocks are (::/8, 100::/8, 2001::/16, fc00::/7 ...).
    probes += [
        str(ipaddress.IPv6Address(rng.getrandbits(16) << 112 | rng.getrandbits(64))) for _ in range(5000)
    ]
    probes += [str(ipaddress.IPv6Address(0x2001 << 112 | rng.getrandbits(112))) for _ in range(5000)]
    for text in probes:
        assert parsed(text) == expected(text), text
    assert sum(parse_address(t).is_global for t in probes) not in (0, len(probes))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("81.2.69.160", ClientAddress(4, 0x5102_45A0, "81.2.69.160", True, "81.2.69.0")),
        ("10.1.2.3", ClientAddress(4, 0x0A01_0203, "10.1.2.3", False, "10.1.2.0")),
        ("100.64.0.1", ClientAddress(4, 0x6440_0001, "100.64.0.1", False, "100.64.0.0")),  # shared space
        ("224.0.0.1", ClientAddress(4, 0xE000_0001, "224.0.0.1", True, "224.0.0.0")),  # as ipaddress says
        # IPv4-mapped: looked up as IPv4; stored as the /48 of what was written, as before.
        ("::ffff:81.2.69.160", ClientAddress(4, 0x5102_45A0, "81.2.69.160", True, "::")),
        ("::ffff:10.0.0.1", ClientAddress(4, 0x0A00_0001, "10.0.0.1", False, "::")),
        ("2001:db8:1234:5678::1", ClientAddress(6, 0x2001_0DB8_1234_5678 << 64 | 1, "2001:db8:1234:5678::1",
                                                False, "2001:db8:1234::")),
        ("2A00:1450:4001::1", ClientAddress(6, 0x2A00_1450_4001 << 80 | 1, "2A00:1450:4001::1", True,
                                            "2a00:1450:4001::")),
        # A scope id: not for inet_pton; ipaddress reads it, and it is looked up without it.
        ("fe80::1%eth0", ClientAddress(6, 0xFE80 << 112 | 1, "fe80::1", False, "fe80::")),
        ("2a00:1450::1%2", ClientAddress(6, 0x2A00_1450 << 96 | 1, "2a00:1450::1", True, "2a00:1450::")),
    ],
)  # fmt: skip
def test_parsed(text: str, parsed: ClientAddress) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "", "garbage", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", " 1.2.3.4", "1.2.3.4 ",
        "1.2.3.\u00b2", "1.2.3.4\x00", "1::2::3", "1:2:3:4:5:6:7:8:9", "00001::", "::ffff:01.2.3.4",
        "::ffff:1.2.3", "::\ud800", "1.2.3.4/24", "[::1]", ":", ":::",
    ],
)  # fmt: skip
def test_what_is_not_an_address(text: str) -> None:
    assert expected(text) is None
    assert parse_address(text) is None


def test_garbled_strings_agree_with_ipaddress() -> None:
    """Whatever inet_pton accepts, ipaddress must accept too (and read the same), and the other way round."""
    rng = random.Random(7)
    alphabet = "0123456789abcdefABCDEF:.%"
    seeds = ["1.2.3.4", "255.0.10.99", "::1", "2001:db8::1", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "fe80::1"]
    for _ in range(30_000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            match rng.randrange(3):
                case 0:
                    text.insert(at, rng.choice(alphabet))
                case 1 if text:
                    del text[min(at, len(text) - 1)]
                case _ if text:
                    text[min(at, len(text) - 1)] = rng.choice(alphabet)
        garbled = "".join(text)
        assert parsed(garbled) == expected(garbled), garbled


def test_not_a_string_is_not_an_address() -> None:
    assert parse_address(None) is None  # type: ignore[arg-type]
    assert parse_address(17) is None  # type: ignore[arg-type]
