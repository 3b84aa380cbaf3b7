"""Known address space of the machines that fetch pixels and links for a reader: whose it is and what it does.

Owns the versioned data file `processors/data/ranges.json` (Apple's MPP relays, mail providers' image proxies,
security gateways; each entry with its public source) and a lookup over it that is fast enough to run on every
hit. A lookup never raises: a garbled address simply matches nothing. It says whose space an address is in,
never what the hit was: that is `processors.classify`. The processors classify with this table extended by
the cloud platforms' compute ranges (`processors.cloud_ranges`, role `cloud_compute`).

Lookup: per address family, the networks sorted by first address; a binary search (in a large table,
within the networks that start in the address's bucket of its top 16 bits) finds the last network that
starts at or before the address, and if that one ends too early, its enclosing networks are tried (CIDR
blocks either nest or are disjoint, so the deepest block holding the address is on that chain).
"""

from __future__ import annotations

import bisect
import importlib.resources
import ipaddress
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

import orjson

from processors.address import ClientAddress, parse_address
from schemas.errors import PixelpipeError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ENTRY_FIELDS: Final = ("network", "owner", "role", "source")
_BUCKET_BITS: Final = 16
_BUCKETED_FROM: Final = 512  # networks of one family


class RangeFileError(PixelpipeError, ValueError):
    """A ranges file that is not what this module reads: raised at start, naming the file and the entry."""


@dataclass(frozen=True, slots=True)
class RangeEntry:
    network: Network
    owner: str  # "apple", "google", "yahoo", "microsoft_eop", "proofpoint", ...; a cloud: "aws", "gcp", ...
    role: str  # "mpp_prefetch", "image_proxy", "security_gateway"; "cloud_compute" (processors.cloud_ranges)
    source: str  # where the range is published


@dataclass(frozen=True, slots=True)
class RangeMatch:
    owner: str
    role: str
    network: str


class _FamilyIndex:
    """The networks of one address family, searchable by integer address."""

    __slots__ = ("_bucket_start", "_ends", "_matches", "_parents", "_shift", "_starts")

    def __init__(self, entries: list[RangeEntry], bits: int) -> None:
        # Same first address: the wider block first, so a nested block is always after its parent.
        ordered = sorted(entries, key=lambda e: (int(e.network.network_address), e.network.prefixlen))
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._parents: list[int] = []
        self._matches: list[RangeMatch] = []
        open_blocks: list[int] = []  # indexes of the blocks enclosing the current one
        for i, entry in enumerate(ordered):
            start = int(entry.network.network_address)
            end = int(entry.network.broadcast_address)
            while open_blocks and self._ends[open_blocks[-1]] < start:
                open_blocks.pop()
            self._starts.append(start)
            self._ends.append(end)
            self._parents.append(open_blocks[-1] if open_blocks else -1)
            self._matches.append(RangeMatch(entry.owner, entry.role, str(entry.network)))
            open_blocks.append(i)
        # With the cloud lists the table holds tens of thousands of networks, and a binary search over all
        # of them costs a few tenths of a microsecond more a hit. So a large table narrows the search first
        # by the address's top 16 bits: _bucket_start[k] is the index of the first network starting at or
        # after bucket k (512 kB for both families; a small table, the curated one alone, searches whole).
        self._shift = bits - _BUCKET_BITS
        self._bucket_start: array[int] | None = None
        if len(self._starts) >= _BUCKETED_FROM:
            per_bucket = Counter(start >> self._shift for start in self._starts)
            firsts = accumulate((per_bucket.get(k, 0) for k in range(2**_BUCKET_BITS)), initial=0)
            self._bucket_start = array("I", firsts)

    def match(self, address: int) -> RangeMatch | None:
        if self._bucket_start is None:
            i = bisect.bisect_right(self._starts, address) - 1
        else:  # every network before the bucket starts at or before the address, every one after it past it
            k = address >> self._shift
            first, past = self._bucket_start[k], self._bucket_start[k + 1]
            i = bisect.bisect_right(self._starts, address, first, past) - 1
        while i >= 0:
            if address <= self._ends[i]:
                return self._matches[i]
            i = self._parents[i]
        return None


class RangeTable:
    """Which known owner's space an address is in. Built once at start; read-only and thread-safe after."""

    def __init__(self, entries: Iterable[RangeEntry], version: int = 0, updated: str = "") -> None:
        self.entries: tuple[RangeEntry, ...] = tuple(entries)
        self.version = version
        self.updated = updated
        seen: set[Network] = set()
        for entry in self.entries:
            if entry.network in seen:
                raise RangeFileError(f"{entry.network} is listed twice")
            seen.add(entry.network)
        self._v4 = _FamilyIndex([e for e in self.entries if e.network.version == 4], 32)
        self._v6 = _FamilyIndex([e for e in self.entries if e.network.version == 6], 128)

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, ip: str) -> RangeMatch | None:
        """The most specific known network holding ``ip``; None for unknown space or a garbled address."""
        return self.match_address(parse_address(ip))

    def match_address(self, address: ClientAddress | None) -> RangeMatch | None:
        """`match` of an address already parsed (None: not an address). An IPv4-mapped IPv6 address is
        matched as the IPv4 address it carries."""
        if address is None:
            return None
        return (self._v4 if address.version == 4 else self._v6).match(address.value)

    @classmethod
    def from_document(cls, doc: Any, origin: str = "ranges") -> RangeTable:
        if not isinstance(doc, Mapping):
            raise RangeFileError(f"{origin}: not a JSON object")
        version, updated, items = doc.get("version"), doc.get("updated"), doc.get("ranges")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RangeFileError(f"{origin}: 'version' must be a positive whole number")
        if not isinstance(updated, str) or not updated:
            raise RangeFileError(f"{origin}: 'updated' must be a date string")
        if not isinstance(items, list):
            raise RangeFileError(f"{origin}: 'ranges' must be a list")
        return cls((_entry(item, f"{origin}: ranges[{i}]") for i, item in enumerate(items)), version, updated)


def _entry(item: Any, where: str) -> RangeEntry:
    if not isinstance(item, Mapping):
        raise RangeFileError(f"{where}: not an object")
    for name in _ENTRY_FIELDS:
        if not isinstance(item.get(name), str) or not item[name]:
            raise RangeFileError(f"{where}: {name!r} must be a non-empty string")
    try:
        network = ipaddress.ip_network(item["network"], strict=True)
    except ValueError as exc:
        raise RangeFileError(f"{where}: {exc}") from exc
    return RangeEntry(network, item["owner"], item["role"], item["source"])


def load_ranges(path: Path | None = None) -> RangeTable:
    """The table in ``path``, or the one bundled with the package."""
    if path is None:
        origin = "processors/data/ranges.json"
        raw = (importlib.resources.files("processors") / "data" / "ranges.json").read_bytes()
    else:
        origin = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RangeFileError(f"{origin}: {exc.strerror or exc}") from exc
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RangeFileError(f"{origin}: not JSON: {exc}") from exc
    return RangeTable.from_document(doc, origin)
