"""The API's pure input checks: request bodies, query names, time zones and instants, sent_at, links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.errors import body_problem, unknown_query
from api.registry import BadMessage, check_link, check_sent_at
from api.sql.common import BadQuery
from api.sql.timeseries import instant, zone

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_body_problem() -> None:
    assert body_problem(b'{"a": [1, 2]}') is None
    assert body_problem(b"{not json") is None  # left to the decoder's own 400
    assert body_problem(b"[" * 1000 + b"]" * 1000) == "request body: JSON nested too deeply"
    assert body_problem(b'{"a": "\xe9"}') == "request body: not UTF-8 (byte 7); JSON must be UTF-8 encoded"


def test_unknown_query() -> None:
    assert unknown_query(["limit"], frozenset({"limit", "cursor"})) is None
    assert unknown_query(["include_machines", "zz"], frozenset({"include_machine"})) == (
        "unknown query parameter 'include_machines' (this route takes: include_machine)"
    )
    assert unknown_query(["x"], frozenset()) == "unknown query parameter 'x' (this route takes: none)"


@pytest.mark.parametrize("name", ["right/UTC", "posix/Europe/Paris", "Europe/Nowhere", "", "../etc/passwd"])
def test_a_zone_outside_the_iana_names_is_refused_naming_tz(name: str) -> None:
    with pytest.raises(BadQuery, match=r"^tz: unknown time zone "):
        zone(name)


def test_an_iana_zone_is_read() -> None:
    assert zone("Asia/Kolkata") == ZoneInfo("Asia/Kolkata")


@pytest.mark.parametrize(
    ("value", "tz"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "America/New_York"),
        (datetime(9999, 12, 31, 20, tzinfo=UTC), "Pacific/Kiritimati"),
        (datetime(1, 1, 1), "Pacific/Kiritimati"),  # noqa: DTZ001 - naive on purpose: read in tz
        (datetime(9999, 12, 31, 23, 59), "America/New_York"),  # noqa: DTZ001
        (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), "UTC"),
        (datetime(2106, 1, 1, tzinfo=UTC), "UTC"),
    ],
)
def test_an_instant_outside_the_stores_range_is_refused_naming_the_parameter(
    value: datetime, tz: str
) -> None:
    with pytest.raises(BadQuery, match=r"^'from' must be between 1970-01-01T00:00:00\+00:00 and 2106"):
        instant("from", value, ZoneInfo(tz))


def test_an_instant_without_offset_is_read_in_the_zone() -> None:
    at = instant("to", datetime(2026, 7, 1, 9, 0), ZoneInfo("Europe/Paris"))  # noqa: DTZ001
    assert at.astimezone(UTC) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_sent_at_within_the_retention_and_the_clock_skew() -> None:
    check_sent_at(NOW - timedelta(days=396) + timedelta(seconds=1), now=NOW, retention_days=396)
    check_sent_at(NOW + timedelta(minutes=15), now=NOW, retention_days=396)
    with pytest.raises(
        BadMessage, match=r"older than the retention of 396 days \(PIXELPIPE_RETENTION_DAYS\)"
    ):
        check_sent_at(NOW - timedelta(days=396, seconds=1), now=NOW, retention_days=396)
    with pytest.raises(BadMessage, match=r"^sent_at: .* is more than 15 minutes in the future$"):
        check_sent_at(NOW + timedelta(minutes=15, seconds=1), now=NOW, retention_days=396)


def test_a_link_with_credentials_is_refused_and_the_answer_hides_them() -> None:
    assert check_link(" https://shop.example.com/a?x=1 ") == "https://shop.example.com/a?x=1"
    with pytest.raises(BadMessage) as caught:
        check_link("https://ann:hunter2@shop.example.com/a")
    assert str(caught.value) == (
        "links: 'https://***@shop.example.com/a' carries a user name or password (user:pass@host); "
        "remove them"
    )
