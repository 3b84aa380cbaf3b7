from __future__ import annotations

import pytest

from processors.privacy import stored_ip


@pytest.mark.parametrize(
    ("ip", "policy", "expected"),
    [
        ("81.2.69.160", "truncate", "81.2.69.0"),
        ("2001:db8:1234:5678::1", "truncate", "2001:db8:1234::"),
        ("81.2.69.160", "drop", ""),
        ("81.2.69.160", "full", "81.2.69.160"),
        ("garbage", "truncate", ""),
        ("", "full", ""),
    ],
)
def test_stored_ip(ip: str, policy: str, expected: str) -> None:
    assert stored_ip(ip, policy) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ip",
    [
        "0.0.0.0",
        "255.255.255.255",
        "10.1.2.3",
        "1.2.3.999",
        "1.2.3",
        "01.2.3.4",
        "1.2.3.4.5",
        "::ffff:1.2.3.4",
        "1.2.3.\u00b2",
    ],
)
def test_the_ipv4_fast_path_agrees_with_ipaddress(ip: str) -> None:
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        expected = ""
    else:
        prefix = 24 if address.version == 4 else 48
        expected = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    assert stored_ip(ip, "truncate") == expected


@pytest.mark.parametrize("policy", ["truncate", "drop", "full"])
@pytest.mark.parametrize("ip", ["81.2.69.160", "2001:db8:1234:5678::1", "::ffff:1.2.3.4", "garbage", ""])
def test_a_parsed_address_is_stored_as_its_text_would_be(ip: str, policy: str) -> None:
    from processors.address import parse_address
    from processors.privacy import stored_address

    assert stored_address(ip, parse_address(ip), policy) == stored_ip(ip, policy)  # type: ignore[arg-type]
    assert stored_address(ip, None, policy) == stored_ip(ip, policy)  # type: ignore[arg-type]
