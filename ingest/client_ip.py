"""Who is the client: the socket peer, or the address a trusted proxy says it forwarded for.

Pure. ``X-Forwarded-For`` is believed only when the socket peer is a trusted proxy, and then read from the
right: each proxy appends the address it saw, so the first address from the right that is not itself a
trusted proxy is the client. A header a client wrote itself (the left part) is never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)
def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# An address's text form (``str`` of an ipaddress object costs more than parsing it): the same few peers
# (proxies, a load balancer) and clients come back again and again.
_text = lru_cache(maxsize=4096)(str)


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_ip(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's address as text ('' when nothing usable is known)."""
    peer_address = _parse(peer) if peer else None
    if peer_address is None:
        return ""
    if not forwarded_for or not proxies or not _trusted(peer_address, proxies):
        return _text(peer_address)
    client = peer_address
    for part in reversed(forwarded_for.split(",")[-32:]):
        hop = _parse(part)
        if hop is None:
            break  # garbage in the chain: stop at the last address we could trust
        client = hop
        if not _trusted(hop, proxies):
            break
    return _text(client)


def forwarded_for_counts(peer: str | None, proxies: Sequence[Network]) -> bool:
    """Whether `client_ip` reads ``X-Forwarded-For`` on requests from ``peer``: it is a trusted proxy."""
    address = _parse(peer) if peer and proxies else None
    return address is not None and _trusted(address, proxies)
