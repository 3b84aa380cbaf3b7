"""A client's address, parsed once per hit into the plain values that enrichment and storage need. Pure.

GeoIP (`processors.geo`), the range table (`processors.ranges`) and the stored, truncated address
(`processors.privacy`) each used to parse the address text again with `ipaddress`, the slowest thing on the
per-hit path. Here it is parsed once, with ``inet_pton`` (``ipaddress`` only for what that refuses, such as
a scope id), into a `ClientAddress`. It never says where the address is or whose it is.

Routable or not is ``ipaddress``'s ``is_global``, answered without ``ipaddress`` objects: the address space
of each family is cut, once at import, into the pieces between consecutive boundaries of every
special-purpose network (IANA's registries, and those this Python's ``ipaddress`` lists); ``ipaddress``
itself answers for one address of each piece, and a binary search over the pieces answers every hit.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final, NamedTuple

_inet_pton: Final = socket.inet_pton
_inet_ntop: Final = socket.inet_ntop
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
_bisect: Final = bisect.bisect_right
_new: Final = tuple.__new__  # a NamedTuple without its Python-level __new__: a third of the cost
_MAPPED: Final = 0xFFFF  # ::ffff:0:0/96 >> 32: IPv4 clients on a dual-stack socket
_V4_MASK: Final = 0xFFFF_FFFF
_V6_ZERO_TAIL: Final = bytes(10)  # the 80 bits a /48 drops


class ClientAddress(NamedTuple):
    """A parsed client address. A NamedTuple: built on every hit, so it must be cheap to build."""

    version: int  # 4 or 6, of ``text`` (an IPv4-mapped IPv6 address is 4)
    value: int  # ``text`` as an integer
    # The address to look up (and the GeoIP cache key): as written (the edge writes ipaddress's spelling),
    # but an IPv4-mapped IPv6 address as its IPv4 address, and without a scope id.
    text: str
    is_global: bool  # ``ipaddress``'s ``is_global`` of ``text``: a place on the map, not private space
    truncated: str  # the /24 (IPv4) or /48 (IPv6) of the address as written, as `ipaddress` prints it


def parse_address(ip: str) -> ClientAddress | None:
    """The address in ``ip``, or None when it is not one (what ``ipaddress.ip_address`` refuses)."""
    try:
        if ":" not in ip:  # the family by the colon: a failed parse (an exception) is the slow path
            value = int.from_bytes(_inet_pton(_AF_INET, ip), "big")
            # inet_pton takes only the canonical dotted quad (no leading zeros): cutting the text is exact.
            net = ip[: ip.rfind(".")] + ".0"
            return _new(ClientAddress, (4, value, ip, _V4_GLOBAL[_bisect(_V4_STARTS, value) - 1], net))
        packed = _inet_pton(_AF_INET6, ip)
    except (OSError, TypeError, ValueError):
        return _parse_slowly(ip)
    return _from_v6(int.from_bytes(packed, "big"), packed, ip)


def _from_v6(value: int, packed: bytes, ip: str) -> ClientAddress:
    net = _inet_ntop(_AF_INET6, packed[:6] + _V6_ZERO_TAIL)
    if value >> 32 == _MAPPED:
        v4 = value & _V4_MASK
        text = _inet_ntop(_AF_INET, packed[12:])
        return _new(ClientAddress, (4, v4, text, _V4_GLOBAL[_bisect(_V4_STARTS, v4) - 1], net))
    return _new(ClientAddress, (6, value, ip, _V6_GLOBAL[_bisect(_V6_STARTS, value) - 1], net))


def _parse_slowly(ip: str) -> ClientAddress | None:
    """What inet_pton refuses and ``ipaddress`` may still read: a scope id (``fe80::1%eth0``)."""
    if not isinstance(ip, str):
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):  # pragma: no cover - inet_pton reads every IPv4 address
        return parse_address(str(address))
    # Looked up without the scope id, as ipaddress's own lookups did; stored exactly as privacy always cut it.
    found = _from_v6(int(address), address.packed, str(ipaddress.IPv6Address(int(address))))
    truncated = str(ipaddress.ip_network(f"{address}/48", strict=False).network_address)
    return found._replace(truncated=truncated)


# -- is_global, by table ----------------------------------------------------------------------------------

# IANA IPv4 and IPv6 special-purpose address registries (RFC 6890 and later), plus multicast and the
# networks older or newer Pythons treat specially. Only their boundaries matter: the answer on each piece
# between two boundaries is ipaddress's. (The IPv6 table is never asked about ::ffff:0:0/96: those addresses
# are answered as the IPv4 addresses they carry, as `processors.geo` always looked them up.)
_SPECIAL_V4: Final = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/31",
    "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
)  # fmt: skip
_SPECIAL_V6: Final = (
    "::/128", "::1/128", "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001::/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:2::/48", "2001:3::/32",
    "2001:4:112::/48", "2001:10::/28", "2001:20::/28", "2001:30::/28", "2001:db8::/32", "2002::/16",
    "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)  # fmt: skip


def _listed_by_ipaddress(version: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks this Python's ``ipaddress`` names in its constants (they change between releases)."""
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for value in vars(getattr(cls, "_constants", object)).values():
        items = value if isinstance(value, list | tuple) else (value,)
        found.extend(
            item
            for item in items
            if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network) and item.version == version
        )
    return found


def _global_table(version: int, special: Iterable[str]) -> tuple[list[int], list[bool]]:
    """Sorted piece starts and, per piece, ``is_global`` of its addresses (neighbours with the same answer
    merged)."""
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    networks = [ipaddress.ip_network(n) for n in special] + _listed_by_ipaddress(version)
    cuts = {0}
    for net in networks:
        cuts.add(int(net.network_address))
        cuts.add(int(net.broadcast_address) + 1)
    starts: list[int] = []
    answers: list[bool] = []
    top = 2 ** (32 if version == 4 else 128)
    for start in sorted(c for c in cuts if c < top):
        answer = cls(start).is_global
        if not answers or answers[-1] != answer:
            starts.append(start)
            answers.append(answer)
    return starts, answers


_V4_STARTS, _V4_GLOBAL = _global_table(4, _SPECIAL_V4)
_V6_STARTS, _V6_GLOBAL = _global_table(6, _SPECIAL_V6)
