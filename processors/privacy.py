"""What of a client's address may be stored. Location and ASN are derived first; then the address is cut.

Pure. ``truncate`` (the default) keeps the /24 of IPv4 and the /48 of IPv6, ``drop`` keeps nothing,
``full`` keeps the address (only for operators who have a reason and a legal basis).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

IpStorage = Literal["truncate", "drop", "full"]


def _octet(text: str) -> bool:
    # What ipaddress accepts: 0..255, no sign, no leading zero (it would be ambiguous octal).
    return (
        text.isascii()
        and text.isdigit()
        and len(text) <= 3
        and int(text) <= 255
        and (text == "0" or text[0] != "0")
    )


def stored_ip(ip: str, policy: IpStorage) -> str:
    if policy == "drop" or not ip:
        return ""
    if policy == "full":
        return ip
    # Fast path for the common case, a dotted IPv4 address: no ipaddress objects on the hot path.
    octets = ip.split(".")
    if len(octets) == 4 and all(_octet(o) for o in octets):
        return f"{octets[0]}.{octets[1]}.{octets[2]}.0"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
