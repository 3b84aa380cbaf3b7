"""Which webhook targets pixelpipe will call: the SSRF rule, over URLs and IP addresses.

An account chooses a webhook's URL and the dispatcher POSTs to it from inside the deployment's network, so an
unchecked URL could reach the cloud metadata service (169.254.169.254), the ClickHouse server, Kafka, or
anything else only the deployment can see. A target must be absolute http(s) with no credentials, and every
address its host is or resolves to must be public unicast. ``allow_private``
(``PIXELPIPE_WEBHOOK_ALLOW_PRIVATE``, for development) admits loopback, private, link-local and the other
non-public unicast ranges; an unspecified, multicast or broadcast address is never a target.

The rule is applied at registration (`api.webhooks`) and again at every connection the dispatcher makes
(`notices.transport`), which resolves the name itself and connects only to an address it vetted,
so a DNS answer that changes in between (rebinding) cannot bring a private address back in.

Pure: no DNS, no sockets (`socket.inet_aton` only parses).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from schemas.errors import PixelpipeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNSPECIFIED: Final = "unspecified"
MULTICAST: Final = "multicast"
BROADCAST: Final = "broadcast"
NEVER_ALLOWED: Final = frozenset({UNSPECIFIED, MULTICAST, BROADCAST})  # not even with allow_private

# Special-purpose ranges (IANA IPv4/IPv6 Special-Purpose Address Registries), most specific first where they
# nest. Python's `is_global` is not relied on alone: 3.11 calls 6to4, IPv4-mapped, site-local and
# documentation IPv6 addresses global. It only backs this table up, for ranges added to Python later.
_V4: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = tuple(
    (ipaddress.IPv4Network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", UNSPECIFIED),  # "this network"; 0.0.0.0 reaches the local host on Linux
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", MULTICAST),
        ("255.255.255.255/32", BROADCAST),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = tuple(
    (ipaddress.IPv6Network(net), kind)
    for net, kind in (
        ("::/128", UNSPECIFIED),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "NAT64 local-use"),
        ("::/8", "reserved"),  # after the mapped and NAT64 forms are unwrapped: IPv4-compatible and the rest
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment"),  # Teredo, benchmarking, ORCHID
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", MULTICAST),
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


# Where a refusal could be lifted, the error says how: a developer whose receiver runs on their own machine
# should not have to search for the setting.
ALLOW_PRIVATE_HINT: Final = " (for development, PIXELPIPE_WEBHOOK_ALLOW_PRIVATE=true allows this one)"


class BlockedTarget(PixelpipeError, ValueError):
    """The URL, or an address its host is or resolves to, is not a target pixelpipe will call."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a webhook URL points: ``host`` as in the URL (lower case, IPv6 without brackets)."""

    scheme: str
    host: str
    port: int


def address_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``"loopback"``, ``"IPv4-mapped private"``…); None: public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _embedded("IPv4-mapped", address.ipv4_mapped)
        if address in _NAT64:
            return _embedded("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
        if address.sixtofour is not None:
            return _embedded("6to4", address.sixtofour)
        for net6, kind in _V6:
            if address in net6:
                return kind
    else:
        for net4, kind in _V4:
            if address in net4:
                return kind
    return None if address.is_global else "not public"


def _embedded(form: str, inner: ipaddress.IPv4Address) -> str | None:
    kind = address_kind(inner)
    if kind is None:
        return None
    return kind if kind in NEVER_ALLOWED else f"{form} {kind}"


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why pixelpipe will not connect to ``address``; None when it will."""
    kind = address_kind(address)
    if kind is None or (allow_private and kind not in NEVER_ALLOWED):
        return None
    return f"{address} is a {kind} address"


def check_addresses(
    host: str, addresses: Iterable[IPAddress], *, allow_private: bool
) -> tuple[IPAddress, ...]:
    """Every address ``host`` resolved to, in order, when all of them are allowed; `BlockedTarget` when any is
    not (one bad answer condemns the name: which address a client picks is not ours to predict)."""
    vetted = tuple(dict.fromkeys(addresses))
    if not vetted:
        raise BlockedTarget(f"{host} resolved to no address")
    for address in vetted:
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            shown = "" if str(address) == host else f"{host} resolves to "
            hint = "" if address_kind(address) in NEVER_ALLOWED else ALLOW_PRIVATE_HINT
            raise BlockedTarget(f"{shown}{problem}; webhooks may only call public addresses{hint}")
    return vetted


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself, with no DNS: ``10.0.0.1``, ``::1``, and the old numeric forms a
    resolver also accepts (``2130706433``, ``0x7f.1``, ``127.1``). None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, *, allow_private: bool) -> Target:
    """The target of a webhook URL: absolute http(s), a host, no credentials, no control characters; a host
    that is an address (or ``localhost``) must be allowed. A name's addresses are checked by the caller, who
    resolves it (`check_addresses`). `BlockedTarget` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise BlockedTarget(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedTarget("the URL must be absolute http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise BlockedTarget("credentials in the URL would be sent to every delivery log; use the signature")
    if port == 0 or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise BlockedTarget("the URL has a bad port or control characters")
    host = parts.hostname.rstrip(".")
    target = Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always the loopback interface
        if not allow_private:
            refusal = f"{host} is the loopback interface; webhooks may only call public addresses"
            raise BlockedTarget(refusal + ALLOW_PRIVATE_HINT)
        return target
    address = literal_address(host)
    if address is not None:
        check_addresses(host, [address], allow_private=allow_private)
    return target
