"""What of a client's address may be stored. Location and ASN are derived first; then the address is cut.

Pure. ``truncate`` (the default) keeps the /24 of IPv4 and the /48 of IPv6, ``drop`` keeps nothing,
``full`` keeps the address (only for operators who have a reason and a legal basis).
"""

from __future__ import annotations

from typing import Literal

from processors.address import ClientAddress, parse_address

IpStorage = Literal["truncate", "drop", "full"]


def stored_ip(ip: str, policy: IpStorage) -> str:
    """What ``policy`` keeps of the address text ``ip`` ('' for an address that is not one)."""
    if policy == "drop" or not ip:
        return ""
    if policy == "full":
        return ip
    address = parse_address(ip)
    return "" if address is None else address.truncated


def stored_address(ip: str, address: ClientAddress | None, policy: IpStorage) -> str:
    """`stored_ip` for an address already parsed (``address`` is `parse_address(ip)`, or None when that
    was not done or found no address: then ``ip`` is read again)."""
    if policy == "truncate" and address is not None:
        return address.truncated
    return stored_ip(ip, policy)
