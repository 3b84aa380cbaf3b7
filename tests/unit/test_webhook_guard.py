"""The SSRF rule for webhook targets: which URLs and addresses pixelpipe will call, with and without
``allow_private``."""

from __future__ import annotations

import ipaddress

import pytest

from schemas.webhook_guard import (
    BlockedTarget,
    Target,
    address_kind,
    address_problem,
    check_addresses,
    check_url,
    literal_address,
)

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below the shared range
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "192.0.1.1",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped form of a public address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]

# (address, kind): every kind of non-public address, including the IPv6 forms that embed an IPv4 address.
NOT_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("100.127.255.255", "shared (carrier-grade NAT)"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("169.254.0.1", "link-local (cloud metadata)"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("240.0.0.1", "reserved"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local (cloud metadata)"),
    ("::ffff:100.64.0.1", "IPv4-mapped shared (carrier-grade NAT)"),
    ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ("::8.8.8.8", "reserved"),
    ("64:ff9b::a00:1", "NAT64 private"),
    ("64:ff9b::7f00:1", "NAT64 loopback"),
    ("64:ff9b:1::a00:1", "NAT64 local-use"),
    ("2002:a00:1::1", "6to4 private"),
    ("2002:7f00:1::", "6to4 loopback"),
    ("2002:a9fe:a9fe::", "6to4 link-local (cloud metadata)"),
    ("100::1", "discard-only"),
    ("2001::1", "IETF protocol assignment"),  # Teredo
    ("2001:2::1", "IETF protocol assignment"),  # benchmarking
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "segment routing"),
    ("fc00::1", "unique local (private)"),
    ("fd12:3456:789a::1", "unique local (private)"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "site-local"),
]

# Never a target, even with allow_private.
NEVER = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:224.0.0.1", "multicast"),
    ("64:ff9b::e000:1", "multicast"),
    ("2002:e000:1::", "multicast"),
]


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_targets(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert address_kind(address) is None
    assert address_problem(address, allow_private=False) is None
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize(("text", "kind"), NOT_PUBLIC)
def test_non_public_addresses_are_refused_unless_private_targets_are_allowed(text: str, kind: str) -> None:
    address = ipaddress.ip_address(text)
    assert address_kind(address) == kind
    assert address_problem(address, allow_private=False) == f"{address} is a {kind} address"
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize(("text", "kind"), NEVER)
def test_unspecified_multicast_and_broadcast_are_never_targets(text: str, kind: str) -> None:
    address = ipaddress.ip_address(text)
    assert address_kind(address) == kind
    assert address_problem(address, allow_private=False) == f"{address} is a {kind} address"
    assert address_problem(address, allow_private=True) == f"{address} is a {kind} address"


def test_every_address_of_a_name_must_be_allowed() -> None:
    good = [
        ipaddress.ip_address("93.184.215.14"),
        ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
    ]
    assert check_addresses("example.com", good + good[:1], allow_private=False) == tuple(good)
    rebound = [*good, ipaddress.ip_address("169.254.169.254")]
    with pytest.raises(BlockedTarget) as info:
        check_addresses("evil.example", rebound, allow_private=False)
    assert str(info.value) == (
        "evil.example resolves to 169.254.169.254 is a link-local (cloud metadata) address; "
        "webhooks may only call public addresses (for development, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true "
        "allows this one)"
    )
    assert check_addresses("evil.example", rebound, allow_private=True) == tuple(rebound)
    with pytest.raises(BlockedTarget, match="resolved to no address"):
        check_addresses("nothing.example", [], allow_private=True)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::1", "::1"),
        ("2130706433", "127.0.0.1"),  # what a resolver makes of the old numeric forms
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),  # octal
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("example.com", None),
        ("1e100.net", None),
        ("123.example", None),
        ("deadbeef", None),
        ("", None),
    ],
)
def test_a_host_that_is_an_address_in_any_notation_is_recognised(host: str, expected: str | None) -> None:
    address = literal_address(host)
    assert (None if address is None else str(address)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::1]/",
        "http://[::1]:9000/hook",
        "http://10.0.0.1",
        "https://192.168.0.10/hook",
        "http://172.20.1.1/",
        "http://100.64.1.1/",
        "http://[fd00::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0/",
        "http://localhost/hook",
        "http://LOCALHOST:8000/hook",
        "http://localhost./hook",
        "http://api.localhost/hook",
        "http://127.0.0.1./hook",
    ],
)
def test_urls_naming_a_private_address_are_refused(url: str) -> None:
    with pytest.raises(BlockedTarget, match="webhooks may only call public addresses"):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/hook", Target("http", "127.0.0.1", 8080)),
        ("http://[::1]/", Target("http", "::1", 80)),
        ("https://10.0.0.1/x", Target("https", "10.0.0.1", 443)),
        ("http://localhost:3000/", Target("http", "localhost", 3000)),
    ],
)
def test_private_urls_pass_when_allowed(url: str, expected: Target) -> None:
    assert check_url(url, allow_private=True) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/pixelpipe", Target("https", "hooks.example.com", 443)),
        ("http://Hooks.Example.COM:8443/x?y=1", Target("http", "hooks.example.com", 8443)),
        ("https://8.8.8.8/hook", Target("https", "8.8.8.8", 443)),
        ("https://[2001:4860:4860::8888]/hook", Target("https", "2001:4860:4860::8888", 443)),
        ("https://evil.localhost.example.com/", Target("https", "evil.localhost.example.com", 443)),
    ],
)
def test_public_urls_pass_and_name_their_target(url: str, expected: Target) -> None:
    assert check_url(url, allow_private=False) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "absolute http"),
        ("file:///etc/passwd", "absolute http"),
        ("gopher://127.0.0.1:6379/_", "absolute http"),
        ("/relative", "absolute http"),
        ("https://", "absolute http"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https://example.com:0/hook", "bad port"),
        ("https://example.com:99999/hook", "not a URL"),
        ("https://example.com:http/hook", "not a URL"),
        ("https://example.com/ho ok", "control characters"),
        ("https://example.com/\x00", "control characters"),
        ("https://example.com/\x7f", "control characters"),
        ("http://[::1/", "not a URL"),
    ],
)
def test_malformed_urls_are_refused_even_when_private_targets_are_allowed(url: str, reason: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(BlockedTarget, match=reason):
            check_url(url, allow_private=allow_private)


def test_unspecified_multicast_and_broadcast_urls_are_refused_even_when_allowed() -> None:
    for url in ("http://0.0.0.0/", "http://[::]/", "http://224.0.0.1/", "http://255.255.255.255/"):
        with pytest.raises(BlockedTarget):
            check_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "names_the_setting"),
    [
        ("http://127.0.0.1/hook", True),
        ("http://localhost/hook", True),
        ("http://10.0.0.1/", True),
        ("http://169.254.169.254/", True),
        ("http://0.0.0.0/", False),  # unspecified: refused even with the setting, so it is not offered
        ("http://224.0.0.1/", False),  # multicast: likewise
    ],
)
def test_a_private_address_error_names_the_setting_that_allows_it(url: str, names_the_setting: bool) -> None:
    with pytest.raises(BlockedTarget) as info:
        check_url(url, allow_private=False)
    assert ("PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true" in str(info.value)) is names_the_setting
