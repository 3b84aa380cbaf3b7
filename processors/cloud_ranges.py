"""The cloud platforms' compute ranges as pixelpipe keeps them, and the one table the classifier looks in.

Owns the kept form of each platform's list (`CloudList`: one JSON file per platform, `aws.json`, ...,
with its source, the provider's date, when it was refreshed and whether it is the whole list), where they
are read from (the bundled samples in `processors/data/cloud/`, each replaced by a file of the same name
in `$PIXELPIPE_DATA_DIR/cloud_ranges/` once `pixelpipe ranges refresh` wrote one), writing them (every
file complete on disk before any is replaced: a refresh replaces all it was given or nothing), and the
classification table: the curated ranges (`processors/data/ranges.json`) plus every cloud range, with the
role `cloud_compute` and the platform as owner.

The curated ranges win: a cloud range equal to or inside a curated one (a gateway or a mail provider that
runs in a cloud) is left out, so that address keeps its curated owner; a curated range inside a cloud range
is found first anyway (the lookup gives the most specific block). The same network from two platforms is
an error (one of the files is not what it claims).
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib.resources
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from processors.cloud_formats import PLATFORMS, Platform
from processors.ranges import Network, RangeEntry, RangeFileError, RangeTable, load_ranges

CLOUD_ROLE: Final = "cloud_compute"
REFRESHED_DIR: Final = "cloud_ranges"  # under PIXELPIPE_DATA_DIR
BUNDLED: Final = "bundled"


@dataclass(frozen=True, slots=True)
class CloudList:
    """One platform's compute ranges as kept: what the classifier reads at start."""

    platform: str
    source: str
    kept: str
    published: str  # the provider's date for the list it came from
    refreshed: str  # when it was written (YYYY-MM-DD)
    complete: bool  # False: a bundled sample of a few ranges, not the whole list
    networks: tuple[tuple[Network, str], ...]  # (network, region or location)
    origin: str = BUNDLED  # the file it was read from

    @property
    def counts(self) -> tuple[int, int]:
        """(IPv4 networks, IPv6 networks)."""
        v4 = sum(1 for network, _ in self.networks if network.version == 4)
        return v4, len(self.networks) - v4

    def to_bytes(self) -> bytes:
        """The kept file: its facts first, then one range a line (a reviewer reads the diff)."""
        head = {
            "platform": self.platform,
            "source": self.source,
            "kept": self.kept,
            "published": self.published,
            "refreshed": self.refreshed,
            "complete": self.complete,
        }
        lines = [b"{"] + [b'  "' + k.encode() + b'": ' + orjson.dumps(v) + b"," for k, v in head.items()]
        rows = [
            b'    {"network": "' + str(n).encode() + b'", "scope": ' + orjson.dumps(scope) + b"}"
            for n, scope in self.networks
        ]
        return b"\n".join([*lines, b'  "ranges": [', b",\n".join(rows), b"  ]", b"}", b""])

    @classmethod
    def from_document(cls, doc: Any, origin: str, platform: Platform) -> CloudList:
        if not isinstance(doc, Mapping):
            raise RangeFileError(f"{origin}: not a JSON object")
        if doc.get("platform") != platform.name:
            raise RangeFileError(f"{origin}: 'platform' must be {platform.name!r}")
        for name in ("source", "kept", "published", "refreshed"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise RangeFileError(f"{origin}: {name!r} must be a non-empty string")
        if not isinstance(doc.get("complete"), bool):
            raise RangeFileError(f"{origin}: 'complete' must be true or false")
        items = doc.get("ranges")
        if not isinstance(items, list) or not items:
            raise RangeFileError(f"{origin}: 'ranges' must be a non-empty list")
        networks: dict[Network, str] = {}
        for i, item in enumerate(items):
            where = f"{origin}: ranges[{i}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("scope"), str):
                raise RangeFileError(f"{where}: must be an object with 'network' and 'scope' strings")
            try:
                network = ipaddress.ip_network(item.get("network"), strict=True)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise RangeFileError(f"{where}: {exc}") from exc
            if network in networks:
                raise RangeFileError(f"{where}: {network} is listed twice")
            networks[network] = item["scope"]
        return cls(
            platform.name,
            doc["source"],
            doc["kept"],
            doc["published"],
            doc["refreshed"],
            doc["complete"],
            tuple(networks.items()),
            origin,
        )


def read_published(platform: Platform, raw: bytes, origin: str, file_date: str, today: str) -> CloudList:
    """A file a user downloaded from ``platform``, read in its published format (`RangeFileError` if not)."""
    found = platform.read(raw, origin, file_date)
    return CloudList(
        platform.name, platform.source, platform.kept, found.published, today, True, found.networks, origin
    )


def _load_one(platform: Platform, directory: Path | None) -> CloudList:
    name = f"{platform.name}.json"
    path = directory / name if directory is not None else None
    if path is not None and path.is_file():
        where = origin = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RangeFileError(f"{where}: {exc.strerror or exc}") from exc
    else:
        where, origin = f"processors/data/cloud/{name}", BUNDLED
        raw = (importlib.resources.files("processors") / "data" / "cloud" / name).read_bytes()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RangeFileError(f"{where}: not JSON: {exc}") from exc
    return dataclasses.replace(CloudList.from_document(doc, where, platform), origin=origin)


def load_cloud_lists(directory: Path | None = None) -> tuple[CloudList, ...]:
    """Every platform's list, in `PLATFORMS` order: ``directory``'s file (refreshed) where there is one,
    else the bundled one."""
    return tuple(_load_one(platform, directory) for platform in PLATFORMS)


class _Outermost:
    """The curated networks of one family merged to their outermost blocks, to ask "inside any of them?"."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for network in sorted(networks, key=lambda n: (int(n.network_address), -n.num_addresses)):
            start, end = int(network.network_address), int(network.broadcast_address)
            if self.ends and start <= self.ends[-1]:
                continue  # nested in the block before it (CIDR blocks nest or are disjoint)
            self.starts.append(start)
            self.ends.append(end)

    def holds(self, network: Network) -> bool:
        i = bisect.bisect_right(self.starts, int(network.network_address)) - 1
        return i >= 0 and int(network.broadcast_address) <= self.ends[i]


def with_cloud(curated: RangeTable, lists: Sequence[CloudList]) -> RangeTable:
    """The curated table plus every cloud range the curated ones do not already cover (see the module)."""
    outer = {
        version: _Outermost(e.network for e in curated.entries if e.network.version == version)
        for version in (4, 6)
    }
    entries = list(curated.entries)
    listed_by: dict[Network, str] = {}
    for cloud in lists:
        for network, _ in cloud.networks:
            if outer[network.version].holds(network):
                continue
            if network in listed_by:
                raise RangeFileError(f"{network} is listed by both {listed_by[network]} and {cloud.platform}")
            listed_by[network] = cloud.platform
            entries.append(RangeEntry(network, cloud.platform, CLOUD_ROLE, cloud.source))
    return RangeTable(entries, curated.version, curated.updated)


def load_classification_ranges(directory: Path | None = None) -> tuple[RangeTable, tuple[CloudList, ...]]:
    """The table the processors classify with (curated + cloud), and the cloud lists it was built from."""
    lists = load_cloud_lists(directory)
    return with_cloud(load_ranges(), lists), lists


def write_cloud_lists(lists: Sequence[CloudList], directory: Path) -> list[Path]:
    """Write each list to ``directory``/<platform>.json: all of them complete and synced in temporary files
    first, then each renamed over its file, so a failure replaces nothing (and a reader never sees half a
    file)."""
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for cloud in lists:
            fd, name = tempfile.mkstemp(prefix=f".{cloud.platform}.", suffix=".tmp", dir=directory)
            staged.append((Path(name), directory / f"{cloud.platform}.json"))
            with os.fdopen(fd, "wb") as out:
                out.write(cloud.to_bytes())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(name, 0o644)  # published data, nothing private
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        os.replace(temporary, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return [final for _, final in staged]


def cloud_summary(cloud: CloudList) -> str:
    """One platform's list in a line, for the start log and the refresh report."""
    v4, v6 = cloud.counts
    total = v4 + v6
    ranges = "range" if total == 1 else "ranges"
    counts = f"{cloud.platform} {total:,} {ranges} ({v4:,} IPv4, {v6:,} IPv6; {cloud.kept})"
    if cloud.origin == BUNDLED:
        return f"{counts}, the bundled sample of {cloud.refreshed}"
    return f"{counts}, published {cloud.published}, refreshed {cloud.refreshed}, from {cloud.origin}"
