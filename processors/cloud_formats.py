"""The address lists cloud platforms publish, read in each platform's own format, and which part of each is
compute: the machines a customer runs (where scanners and sandboxes run), never the platform's consumer
services or corporate network.

Owns the registry `PLATFORMS` (name, source URL, what is kept and why) and one pure reader per published
format: bytes in, a `Published` (the provider's own date and the kept networks with their region) out, or a
`RangeFileError` naming the file and the place in it. A reader refuses rather than guesses: a file of another
format, a list with no compute range, a network that does not parse. It never reads the disk or the clock
(the shell hands it the file's name and date).

What is kept (README, "Cloud scanners"):
- AWS `ip-ranges.json`: `service` "EC2" only (instances, Lambda, NAT gateways: what customers run). Not
  "AMAZON" (the superset, with Amazon's own corporate networks), CLOUDFRONT, S3, ROUTE53... (services that
  answer, not fetch).
- Google Cloud `cloud.json`: every prefix (it lists exactly the ranges Google Cloud customers' resources
  use). `goog.json` (all of Google, Gmail's image proxies included) is refused: its prefixes carry no
  `service`.
- Microsoft Azure Service Tags (`ServiceTags_Public_YYYYMMDD.json`): the `AzureCloud` tag (the cloud's
  datacenter space, which Microsoft 365 and Outlook.com are not part of), each prefix's region from the
  `AzureCloud.<region>` tags.
- Oracle Cloud `public_ip_ranges.json`: CIDRs tagged "OCI" (customers' VCN addresses), not "OSN" or
  "OBJECT_STORAGE" (the Oracle Services Network).
- DigitalOcean and Linode (Akamai): their RFC 8805 geofeeds, every line (both list only their cloud).
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from processors.ranges import Network, RangeFileError


@dataclass(frozen=True, slots=True)
class Published:
    """What one published file says: the provider's own date for it and the compute networks it lists."""

    published: str  # the provider's date for the file, as the file (or its name) states it
    networks: tuple[tuple[Network, str], ...]  # (network, region or location; "" when unstated), no repeats


Reader = Callable[[bytes, str, str], Published]  # (raw file, its name, its modification date) -> Published


@dataclass(frozen=True, slots=True)
class Platform:
    name: str  # in reasons (`cloud_aws`) and file names (`aws.json`)
    title: str
    source: str  # where the list is published
    kept: str  # which part of the list counts as compute
    read: Reader


def _doc(raw: bytes, origin: str, what: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """The file as a JSON object with ``keys`` (the fields that make it ``what``)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RangeFileError(f"{origin}: not JSON ({what} is JSON): {exc}") from exc
    if not isinstance(doc, Mapping):
        raise RangeFileError(f"{origin}: not {what}: not a JSON object")
    missing = [key for key in keys if key not in doc]
    if missing:
        raise RangeFileError(f"{origin}: not {what}: no {', '.join(repr(k) for k in missing)}")
    return doc


_KIND: Final = {str: "string", int: "whole number"}


def _field(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RangeFileError(f"{where}: {name!r} must be a {_KIND.get(kind, kind.__name__)}")
    return value


def _network(text: Any, where: str, version: int | None = None) -> Network:
    if not isinstance(text, str):
        raise RangeFileError(f"{where}: not a network: {text!r}")
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise RangeFileError(f"{where}: {exc}") from exc
    if version is not None and network.version != version:
        raise RangeFileError(f"{where}: {network} is not an IPv{version} network")
    return network


def _objects(items: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not isinstance(items, list):
        raise RangeFileError(f"{where}: must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RangeFileError(f"{where}[{i}]: not an object")
        yield f"{where}[{i}]", item


def _published(networks: dict[Network, str], published: str, origin: str, kept: str) -> Published:
    if not networks:
        raise RangeFileError(f"{origin}: no {kept} range in it: nothing to classify by")
    return Published(published, tuple(networks.items()))


_AWS_DATE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")


def read_aws(raw: bytes, origin: str, file_date: str) -> Published:
    """`ip-ranges.json`: `createDate` "yyyy-mm-dd-hh-mm-ss" (UTC), `prefixes` (`ip_prefix`) and
    `ipv6_prefixes` (`ipv6_prefix`), each with `region` and `service`; EC2 kept."""
    doc = _doc(raw, origin, "AWS's ip-ranges.json", ("createDate", "prefixes", "ipv6_prefixes"))
    created = _field(doc, "createDate", str, origin)
    date = _AWS_DATE.fullmatch(created)
    if date is None:
        raise RangeFileError(f"{origin}: 'createDate' {created!r} is not yyyy-mm-dd-hh-mm-ss")
    y, mo, d, h, mi, s = date.groups()
    networks: dict[Network, str] = {}
    for key, prefix, version in (("prefixes", "ip_prefix", 4), ("ipv6_prefixes", "ipv6_prefix", 6)):
        for where, item in _objects(doc.get(key), f"{origin}: {key}"):
            network = _network(item.get(prefix), f"{where}.{prefix}", version)
            service = _field(item, "service", str, where)
            if service == "EC2":
                networks.setdefault(network, _field(item, "region", str, where))
    return _published(networks, f"{y}-{mo}-{d}T{h}:{mi}:{s}Z", origin, "EC2")


def read_gcp(raw: bytes, origin: str, file_date: str) -> Published:
    """`cloud.json`: `creationTime`, `prefixes` of `ipv4Prefix` or `ipv6Prefix` with `service` and
    `scope` (the region). Every prefix kept; `goog.json` (no `service`) refused."""
    doc = _doc(raw, origin, "Google Cloud's cloud.json", ("creationTime", "prefixes"))
    created = _field(doc, "creationTime", str, origin)
    networks: dict[Network, str] = {}
    for where, item in _objects(doc.get("prefixes"), f"{origin}: prefixes"):
        if not isinstance(item.get("service"), str):
            raise RangeFileError(
                f"{where}: no 'service': this is not cloud.json (goog.json lists all of Google's "
                "addresses, Gmail's image proxies included; pixelpipe takes cloud.json only)"
            )
        v4, v6 = item.get("ipv4Prefix"), item.get("ipv6Prefix")
        if (v4 is None) == (v6 is None):
            raise RangeFileError(f"{where}: needs one of 'ipv4Prefix' and 'ipv6Prefix'")
        network = (
            _network(v4, f"{where}.ipv4Prefix", 4)
            if v4 is not None
            else _network(v6, f"{where}.ipv6Prefix", 6)
        )
        scope = item.get("scope")
        networks.setdefault(network, scope if isinstance(scope, str) else "")
    return _published(networks, created, origin, "Google Cloud")


_AZURE_FILE_DATE: Final = re.compile(r"ServiceTags_\w+?_(\d{4})(\d{2})(\d{2})\.json$")


def read_azure(raw: bytes, origin: str, file_date: str) -> Published:
    """Service Tags: `changeNumber`, `cloud`, `values` of {`name`, `properties`: {`region`,
    `addressPrefixes`}}; `AzureCloud` kept, regions from `AzureCloud.<region>`. The file states no date:
    Microsoft's file name does (`ServiceTags_Public_20261130.json`), else the file's own date is given."""
    doc = _doc(raw, origin, "Azure's Service Tags JSON", ("changeNumber", "values"))
    change = _field(doc, "changeNumber", int, origin)
    cloud = _field(doc, "cloud", str, origin)
    whole: list[tuple[str, Any]] = []
    region_of: dict[Network, str] = {}
    for where, item in _objects(doc.get("values"), f"{origin}: values"):
        name = _field(item, "name", str, where)
        if name != "AzureCloud" and not name.startswith("AzureCloud."):
            continue
        properties = item.get("properties")
        if not isinstance(properties, Mapping):
            raise RangeFileError(f"{where}: 'properties' must be an object")
        prefixes = properties.get("addressPrefixes")
        if not isinstance(prefixes, list):
            raise RangeFileError(f"{where}.properties: 'addressPrefixes' must be a list")
        if name == "AzureCloud":
            whole = [(f"{where}.properties.addressPrefixes[{i}]", p) for i, p in enumerate(prefixes)]
        else:
            region = properties.get("region")
            for i, prefix in enumerate(prefixes):
                network = _network(prefix, f"{where}.properties.addressPrefixes[{i}]")
                region_of.setdefault(network, region if isinstance(region, str) and region else name[11:])
    if not whole:
        raise RangeFileError(f"{origin}: no 'AzureCloud' service tag: not Azure's Service Tags file")
    networks: dict[Network, str] = {}
    for where, prefix in whole:
        network = _network(prefix, where)
        networks.setdefault(network, region_of.get(network, ""))
    named = _AZURE_FILE_DATE.search(origin)
    date = f"{named[1]}-{named[2]}-{named[3]}" if named else f"not stated (file date {file_date})"
    return _published(networks, f"{date} (cloud {cloud}, change {change})", origin, "AzureCloud")


def read_oracle(raw: bytes, origin: str, file_date: str) -> Published:
    """`public_ip_ranges.json`: `last_updated_timestamp`, `regions` of {`region`, `cidrs`: [{`cidr`,
    `tags`}]}; CIDRs tagged "OCI" kept."""
    doc = _doc(raw, origin, "Oracle Cloud's public_ip_ranges.json", ("last_updated_timestamp", "regions"))
    updated = _field(doc, "last_updated_timestamp", str, origin)
    networks: dict[Network, str] = {}
    for where, region in _objects(doc.get("regions"), f"{origin}: regions"):
        name = _field(region, "region", str, where)
        for at, cidr in _objects(region.get("cidrs"), f"{where}.cidrs"):
            network = _network(cidr.get("cidr"), f"{at}.cidr")
            tags = cidr.get("tags")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RangeFileError(f"{at}: 'tags' must be a list of strings")
            if "OCI" in tags:
                networks.setdefault(network, name)
    return _published(networks, updated, origin, "OCI")


def read_geofeed(raw: bytes, origin: str, file_date: str) -> Published:
    """An RFC 8805 geofeed: CSV lines `prefix,country,region,city,postal` (all but the prefix optional; a
    lone address is its /32 or /128), `#` comments. It states no date: the file's own date is given."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RangeFileError(f"{origin}: not a geofeed: not UTF-8 text ({exc.reason})") from exc
    if text.lstrip().startswith(("{", "[", "<")):
        raise RangeFileError(f"{origin}: not a geofeed (RFC 8805 CSV): it looks like JSON or HTML")
    networks: dict[Network, str] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{origin}: line {number}"
        first = row[0].strip()
        try:
            network = ipaddress.ip_network(first, strict=True)
        except ValueError as exc:
            raise RangeFileError(f"{where}: {exc}") from exc
        place = ", ".join(field.strip() for field in reversed(row[1:4]) if field.strip())
        networks.setdefault(network, place)
    return _published(networks, f"not stated (file date {file_date})", origin, "geofeed")


PLATFORMS: Final[tuple[Platform, ...]] = (
    Platform("aws", "Amazon Web Services", "https://ip-ranges.amazonaws.com/ip-ranges.json",
             'service "EC2"', read_aws),
    Platform("gcp", "Google Cloud", "https://www.gstatic.com/ipranges/cloud.json",
             "every prefix (customers' resources)", read_gcp),
    Platform("azure", "Microsoft Azure",
             "https://www.microsoft.com/en-us/download/details.aspx?id=56519 (ServiceTags_Public_*.json)",
             'service tag "AzureCloud"', read_azure),
    Platform("oracle", "Oracle Cloud", "https://docs.oracle.com/iaas/tools/public_ip_ranges.json",
             'tag "OCI"', read_oracle),
    Platform("digitalocean", "DigitalOcean", "https://www.digitalocean.com/geo/google.csv",
             "every line (RFC 8805 geofeed)", read_geofeed),
    Platform("linode", "Linode (Akamai Cloud)", "https://geoip.linode.com/",
             "every line (RFC 8805 geofeed)", read_geofeed),
)  # fmt: skip
PLATFORM_BY_NAME: Final[Mapping[str, Platform]] = {p.name: p for p in PLATFORMS}
