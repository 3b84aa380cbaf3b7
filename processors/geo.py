"""GeoIP enrichment: an address to a country, city, time zone and autonomous system.

Owns the MaxMind readers and the lookup cache in front of them. A lookup never raises (a hit with a garbled,
private or unknown address is still a hit, only without a place) and never leaves the machine: the databases
are local files, opened memory-mapped. It says where an address is, never what the hit was: that is
`processors.classify`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import maxminddb

from processors.address import ClientAddress, parse_address
from schemas.errors import PixelpipeError

LOOKUP_CACHE_SIZE: Final = 65_536  # distinct addresses; mail providers' proxies repeat a lot
PLACES_SIZE: Final = 65_536  # distinct answers kept for reuse; far fewer than addresses (a city, a network)


class GeoDatabaseError(PixelpipeError, ValueError):
    """A MaxMind database file that cannot be opened or read: raised at start, never per hit."""


@dataclass(frozen=True, slots=True)
class Geo:
    """Where an address is. Empty strings and ``asn == 0`` mean unknown."""

    country: str = ""  # ISO 3166-1 alpha-2
    city: str = ""  # English name
    time_zone: str = ""  # IANA name
    asn: int = 0
    as_org: str = ""


EMPTY_GEO: Final = Geo()


def bundled_city_db() -> Path:
    """The GeoLite2-City snapshot that ships with `maxminddb-geolite2` (built July 2018)."""
    from geolite2 import geolite2  # noqa: PLC0415 - imported only when no database was configured

    return Path(geolite2.filename)


def _open(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise GeoDatabaseError(f"{path}: {exc}") from exc


def _str_at(record: Any, *path: str) -> str:
    for key in path:
        if not isinstance(record, dict):
            return ""
        record = record.get(key)
    return record if isinstance(record, str) else ""


def _place(city: Any) -> tuple[str, str, str]:
    """Country, city and time zone of a City record: `_str_at` three times, unrolled (every cold lookup)."""
    if not isinstance(city, dict):
        return ("", "", "")
    country, town, location = city.get("country"), city.get("city"), city.get("location")
    iso = country.get("iso_code") if isinstance(country, dict) else None
    names = town.get("names") if isinstance(town, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    zone = location.get("time_zone") if isinstance(location, dict) else None
    return (
        iso if isinstance(iso, str) else "",
        name if isinstance(name, str) else "",
        zone if isinstance(zone, str) else "",
    )


class GeoLookup:
    """City (required; the bundled 2018 snapshot when none is given) and ASN (optional) lookups."""

    def __init__(self, city_db: Path | None, asn_db: Path | None) -> None:
        self.bundled_snapshot: bool = city_db is None
        self.city_db_path: Path = bundled_city_db() if city_db is None else city_db
        self.asn_db_path: Path | None = asn_db
        self._city: maxminddb.Reader | None = _open(self.city_db_path)
        try:
            self._asn: maxminddb.Reader | None = None if asn_db is None else _open(asn_db)
        except GeoDatabaseError:
            self._city.close()
            raise
        self._city_build_epoch: int = int(self._city.metadata().build_epoch)
        self._asn_build_epoch: int | None = (
            None if self._asn is None else int(self._asn.metadata().build_epoch)
        )
        # Per instance, so two lookups over different files never share answers.
        self._cached = functools.lru_cache(maxsize=LOOKUP_CACHE_SIZE)(self._lookup)
        # One Geo per distinct answer: building a frozen dataclass costs more than finding it again.
        self._places: dict[tuple[str, str, str, int, str], Geo] = {}

    @property
    def city_db_build_date(self) -> date:
        """When the city database was built (the bundled snapshot says 2018-07-03)."""
        return datetime.fromtimestamp(self._city_build_epoch, UTC).date()

    @property
    def asn_db_build_date(self) -> date | None:
        if self._asn_build_epoch is None:
            return None
        return datetime.fromtimestamp(self._asn_build_epoch, UTC).date()

    def lookup(self, ip: str) -> Geo:
        """Never raises: an address that is not public, not parseable or not in the databases → `Geo()`."""
        return self.lookup_address(parse_address(ip))

    def lookup_address(self, address: ClientAddress | None) -> Geo:
        """`lookup` of an address already parsed (None: not an address)."""
        # Private, loopback, link-local, documentation and reserved space is nobody's location.
        if address is None or not address.is_global:
            return EMPTY_GEO
        return self._cached(address.text)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def _lookup(self, ip: str) -> Geo:
        """``ip``: the text of a public address (`ClientAddress.text`); maxminddb parses text the fastest."""
        city = self._get(self._city, ip)
        asn = None if self._asn is None else self._get(self._asn, ip)
        return self._geo(city, asn)

    def _geo(self, city: Any, asn: Any) -> Geo:
        if city is None and asn is None:
            return EMPTY_GEO
        if isinstance(asn, dict):
            number = asn.get("autonomous_system_number")
            network = (
                number if isinstance(number, int) and not isinstance(number, bool) else 0,
                _str_at(asn, "autonomous_system_organization"),
            )
        else:
            network = (0, "")
        key = (*_place(city), *network)
        place = self._places.get(key)
        if place is None:
            if len(self._places) >= PLACES_SIZE:
                self._places.clear()
            place = self._places[key] = Geo(*key)
        return place

    @staticmethod
    def _get(reader: maxminddb.Reader | None, ip: str) -> Any:
        if reader is None:
            return None
        try:
            return reader.get(ip)
        # An IPv6 address in an IPv4-only database, a closed reader, a corrupt record: no place, no error.
        except (ValueError, TypeError, maxminddb.InvalidDatabaseError):
            return None

    def close(self) -> None:
        """Release the readers. Idempotent; later lookups answer `Geo()`."""
        self._cached.cache_clear()
        self._places.clear()
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()
        self._city = self._asn = None

    def __enter__(self) -> GeoLookup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
