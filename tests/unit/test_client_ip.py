from __future__ import annotations

import ipaddress

import pytest

from ingest.client_ip import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # an untrusted peer's header is not believed
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client wrote 6.6.6.6 itself
        ("10.0.0.5", "1.2.3.4, 10.0.0.7", "1.2.3.4"),  # a chain of trusted proxies
        ("10.0.0.5", "garbage", "10.0.0.5"),
        ("10.0.0.5", "1.2.3.4, garbage", "10.0.0.5"),
        ("10.0.0.5", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.5", "198.51.100.4:5555", "198.51.100.4"),
        ("::1", "2001:db8::2", "2001:db8::2"),
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
        (None, "1.2.3.4", ""),
        ("not-an-ip", None, ""),
    ],
)
def test_client_ip(peer: str | None, xff: str | None, expected: str) -> None:
    assert client_ip(peer, xff, PROXIES) == expected


def test_no_proxies_means_the_peer() -> None:
    assert client_ip("10.0.0.5", "1.2.3.4", ()) == "10.0.0.5"
