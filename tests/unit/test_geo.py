"""GeoIP lookups against MaxMind's official test databases; expected values are from their source JSON
(MaxMind-DB test-data: GeoIP2-City-Test.json, GeoLite2-ASN-Test.json)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from processors.geo import Geo, GeoDatabaseError, GeoLookup

DATA = Path(__file__).parents[1] / "data"
CITY_DB = DATA / "GeoIP2-City-Test.mmdb"
ASN_DB = DATA / "GeoLite2-ASN-Test.mmdb"


@pytest.fixture(scope="module")
def geo() -> Iterator[GeoLookup]:
    lookup = GeoLookup(CITY_DB, ASN_DB)
    yield lookup
    lookup.close()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.160", Geo("GB", "London", "Europe/London")),
        ("2.125.160.217", Geo("GB", "Boxford", "Europe/London")),
        ("89.160.20.128", Geo("SE", "Linköping", "Europe/Stockholm", 29518, "Bredband2 AB")),
        ("216.160.83.56", Geo("US", "Milton", "America/Los_Angeles", 209)),
        (
            "214.78.120.5",
            Geo("US", "San Diego", "America/Los_Angeles", 721, "DoD Network Information Center"),
        ),
        ("175.16.199.1", Geo("CN", "Changchun", "Asia/Harbin")),
        ("2001:480:10::1", Geo("US", "San Diego", "America/Los_Angeles")),
        ("2001:218::1", Geo("JP", "", "Asia/Tokyo")),
        # ASN only: the city test database has no entry for these.
        ("1.0.0.1", Geo(asn=15169, as_org="Google Inc.")),
        ("50.130.1.1", Geo(asn=7922, as_org="Comcast Cable Communications, Inc.")),
        ("2001:1700::1", Geo(asn=6730, as_org="Sunrise Communications AG")),
        # A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6.
        ("::ffff:81.2.69.160", Geo("GB", "London", "Europe/London")),
    ],
)
def test_lookup_returns_the_test_databases_values(geo: GeoLookup, ip: str, expected: Geo) -> None:
    assert geo.lookup(ip) == expected


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "not-an-ip",
        "999.1.1.1",
        "1.2.3",
        "10.1.2.3",  # private
        "192.168.0.1",
        "127.0.0.1",
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "192.0.2.1",  # documentation
        "2001:db8::1",
        "0.0.0.0",
        "8.8.8.8",  # public but absent from the test databases
    ],
)
def test_unknown_or_non_public_addresses_have_no_place(geo: GeoLookup, ip: str) -> None:
    assert geo.lookup(ip) == Geo()


def test_without_an_asn_database_the_network_is_unknown() -> None:
    with GeoLookup(CITY_DB, None) as lookup:
        assert lookup.lookup("89.160.20.128") == Geo("SE", "Linköping", "Europe/Stockholm")
        assert lookup.asn_db_build_date is None
        assert lookup.bundled_snapshot is False


def test_lookups_are_cached(geo: GeoLookup) -> None:
    before = geo.cache_info()
    geo.lookup("81.2.69.161")
    geo.lookup("81.2.69.161")
    after = geo.cache_info()
    assert after.hits - before.hits == 1
    assert after.misses - before.misses == 1
    assert after.maxsize == 65_536


def test_build_dates_come_from_the_metadata(geo: GeoLookup) -> None:
    # Both test databases say build_epoch 1770245369 (2026-02-04T22:49:29Z).
    assert geo.city_db_build_date == date(2026, 2, 4)
    assert geo.asn_db_build_date == date(2026, 2, 4)


def test_without_a_city_database_the_bundled_2018_snapshot_is_used() -> None:
    with GeoLookup(None, None) as lookup:
        assert lookup.bundled_snapshot is True
        assert lookup.city_db_build_date == date(2018, 7, 3)
        assert lookup.city_db_path.name == "GeoLite2-City.mmdb"
        assert lookup.lookup("17.58.63.200").country == "US"  # Apple's 17.0.0.0/8
        assert lookup.lookup("10.0.0.1") == Geo()


def test_close_is_idempotent_and_later_lookups_are_empty() -> None:
    lookup = GeoLookup(CITY_DB, ASN_DB)
    assert lookup.lookup("81.2.69.160").city == "London"
    lookup.close()
    lookup.close()
    assert lookup.lookup("81.2.69.160") == Geo()


def test_a_missing_or_corrupt_database_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(GeoDatabaseError, match=r"nope\.mmdb"):
        GeoLookup(missing, None)
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a maxmind database" * 10)
    with pytest.raises(GeoDatabaseError, match=r"garbage\.mmdb"):
        GeoLookup(CITY_DB, garbage)


def test_a_parsed_address_is_looked_up_as_its_text(geo: GeoLookup) -> None:
    from processors.address import parse_address

    assert geo.lookup_address(parse_address("::ffff:81.2.69.160")) == Geo("GB", "London", "Europe/London")
    assert geo.lookup_address(parse_address("10.1.2.3")) == Geo()
    assert geo.lookup_address(None) == Geo()


def test_private_space_never_reaches_the_cache_and_answers_are_shared(geo: GeoLookup) -> None:
    before = geo.cache_info()
    assert geo.lookup("192.168.7.7") == Geo()
    assert geo.cache_info() == before
    # Two addresses of one city network: two cache entries, one Geo.
    assert geo.lookup("81.2.69.142") is geo.lookup("81.2.69.143")
