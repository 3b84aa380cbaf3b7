"""Bad input over real HTTP: every malformed request gets a 4xx that names what the client sent, never a
5xx; and a 5xx, should one happen, is logged with its cause."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.conftest import SECRET
from tests.integration.helpers import embedded_env, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[httpx.Client]:
    env = embedded_env(tmp_path_factory.mktemp("data"), chdb_path)
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10, headers=ACME) as client:
        r = client.post("/v1/messages", json={"campaign_id": "c1", "recipient": "a@example.org"})
        assert r.status_code == 201, r.text
        yield client
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def _detail(response: httpx.Response) -> str:
    body = response.json()
    assert body["status_code"] == response.status_code
    return str(body["detail"])


@pytest.mark.parametrize(
    "tz",
    [
        "right/UTC",
        "right/America/New_York",
        "posix/Europe/Paris",
        "Nowhere/City",
        "../../etc/passwd",
        "UTC\x00",
        "",
        "Europe/Nowhere",
    ],
)
def test_a_time_zone_clickhouse_cannot_use_is_a_400_naming_tz(api: httpx.Client, tz: str) -> None:
    r = api.get(
        "/v1/campaigns/c1/timeseries",
        params={"tz": tz, "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
    )
    assert r.status_code == 400, r.text
    assert "tz" in _detail(r)


@pytest.mark.parametrize(
    ("start", "tz"),
    [
        ("0001-01-01T00:00:00Z", "America/New_York"),
        ("9999-12-31T20:00:00Z", "Pacific/Kiritimati"),
        ("0001-01-01T00:00:00", "Pacific/Kiritimati"),
        ("9999-12-31T23:59:59", "America/New_York"),
    ],
)
def test_a_range_at_the_ends_of_the_calendar_is_a_400_naming_from(
    api: httpx.Client, start: str, tz: str
) -> None:
    r = api.get("/v1/campaigns/c1/timeseries", params={"from": start, "tz": tz, "bucket": "day"})
    assert r.status_code == 400, r.text
    assert "from" in _detail(r)


def test_to_before_from_names_both_as_sent(api: httpx.Client) -> None:
    r = api.get(
        "/v1/campaigns/c1/timeseries",
        params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    )
    assert r.status_code == 400, r.text
    assert _detail(r) == "'to' must be after 'from'"


def test_json_nested_a_thousand_levels_is_a_400(api: httpx.Client) -> None:
    body = b'{"campaign_id": "c", "recipient": "a@example.org", "links": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    r = api.post("/v1/messages", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    deep = b"[" * 1000 + b"]" * 1000
    r = api.post("/v1/messages", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def test_a_body_that_is_not_utf8_is_a_400(api: httpx.Client) -> None:
    body = '{"campaign_id": "c\xe9", "recipient": "a@example.org"}'.encode("latin-1")
    r = api.post("/v1/messages", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    r = api.post("/v1/messages/batch", content=b"\xff\xfe{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    "link",
    [
        "https://user:s3cret-pw@shop.example.com/a",
        "https://token@shop.example.com/",
        "http://:pw@example.com/",
    ],
)
def test_a_link_with_credentials_is_refused_without_repeating_them(api: httpx.Client, link: str) -> None:
    for path in ("/v1/messages", "/v1/instrument"):
        r = api.post(path, json={"campaign_id": "c2", "recipient": "b@example.org", "links": [link]})
        assert r.status_code == 400, r.text
        assert _detail(r) == (
            "links[0]: Expected `str` that is an absolute http(s) URL with a host "
            "and no user name or password"
        )
        assert "s3cret" not in r.text
    html = f'<a href="{link}">shop</a>'  # links found in the HTML: checked when registered
    r = api.post("/v1/instrument", json={"campaign_id": "c2", "recipient": "b@example.org", "html": html})
    assert r.status_code == 400, r.text
    detail = _detail(r)
    assert detail.startswith("links: 'http")
    assert detail.endswith("carries a user name or password (user:pass@host); remove them")
    assert "s3cret" not in r.text
    assert "token@" not in detail
    assert ":pw@" not in detail
    assert api.get("/v1/campaigns/c2/stats").status_code == 404  # nothing was stored


def _sent_at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_a_send_older_than_the_retention_is_refused_naming_it(api: httpx.Client) -> None:
    old = {"campaign_id": "c3", "recipient": "c@example.org", "sent_at": _sent_at(-timedelta(days=397))}
    r = api.post("/v1/messages", json=old)
    assert r.status_code == 400, r.text
    assert _detail(r).startswith("sent_at: ")
    assert "older than the retention of 396 days (PIXELPIPE_RETENTION_DAYS)" in _detail(r)
    r = api.post("/v1/messages/batch", json={"messages": [{**old, "sent_at": _sent_at(timedelta())}, old]})
    assert r.status_code == 400, r.text
    assert _detail(r).startswith("messages[1]: sent_at: ")
    assert api.get("/v1/campaigns/c3/stats").status_code == 404
    within = {**old, "sent_at": _sent_at(-timedelta(days=395))}
    assert api.post("/v1/messages", json=within).status_code == 201


def test_a_send_in_the_future_beyond_the_clock_skew_is_refused(api: httpx.Client) -> None:
    ahead = {"campaign_id": "c4", "recipient": "d@example.org", "sent_at": _sent_at(timedelta(hours=1))}
    r = api.post("/v1/messages", json=ahead)
    assert r.status_code == 400, r.text
    assert _detail(r).startswith("sent_at: ")
    assert "more than 15 minutes in the future" in _detail(r)
    skewed = {**ahead, "sent_at": _sent_at(timedelta(minutes=5))}
    assert api.post("/v1/messages", json=skewed).status_code == 201


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_5xx_is_logged_with_its_cause_and_the_route_not_the_path(tmp_path: Path, chdb_path: Path) -> None:
    env = {
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123",
        "PIXELPIPE_DATA_DIR": str(tmp_path / "data"),
        "PIXELPIPE_CLICKHOUSE_URL": f"chdb://{chdb_path}?database=t_{uuid.uuid4().hex[:12]}",
    }
    components = build_components(settings_mod.load(env), frozenset({"api"}))
    app, _ = build_app(components)
    assert components.store is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=10, headers=ACME) as client:
        components.store.command(f"DROP DATABASE {components.store.database}")  # every read now fails
        # On the logger itself: the app's logging set-up replaces the root's handlers (and pytest's).
        records = _Records()
        logging.getLogger("api.errors").addHandler(records)
        try:
            r = client.get("/v1/recipients/victim@example.org")
        finally:
            logging.getLogger("api.errors").removeHandler(records)
        assert r.status_code == 500
        assert r.json() == {"status_code": 500, "detail": "Internal Server Error"}
    [record] = records.records
    assert record.getMessage().startswith("GET /v1/recipients/{recipient} failed: StoreError: ")
    assert record.exc_info is not None
    assert "victim" not in record.getMessage()


def test_a_malformed_parameter_is_named_as_the_client_sent_it(api: httpx.Client) -> None:
    r = api.get("/v1/campaigns/c1/timeseries", params={"to": "garbage"})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "status_code": 400,
        "detail": "to: Invalid RFC3339 encoded datetime",
        "extra": [{"message": "Invalid RFC3339 encoded datetime", "key": "to", "source": "query"}],
    }


def test_metrics_says_its_charset_once(api: httpx.Client) -> None:
    r = api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"


def test_405_lists_every_method_of_the_path(api: httpx.Client) -> None:
    expected = {
        "/v1/messages": "GET, OPTIONS, POST",
        "/v1/recipients/a@example.org": "DELETE, GET, OPTIONS",
        "/v1/recipients/a@example.org/do-not-track": "DELETE, OPTIONS, PUT",
        "/v1/webhooks/w1": "DELETE, GET, OPTIONS",
        "/v1/campaigns/c1/stats": "GET, OPTIONS",
    }
    for path, allow in expected.items():
        r = api.request("PATCH", path)
        assert r.status_code == 405, path
        assert ", ".join(sorted(r.headers["allow"].split(", "))) == allow, path


def test_a_client_that_leaves_before_its_body_is_no_server_error(api: httpx.Client) -> None:
    """Not a 5xx (nothing failed here), so no error and no traceback in the log, only a note: one error per
    dropped upload would let any client fill the log (and the body deadline closes such connections)."""
    records = _Records()
    records.setLevel(logging.INFO)
    logger = logging.getLogger("api.errors")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        url = httpx.URL(str(api.base_url))
        assert url.port is not None
        with socket.create_connection((url.host, url.port), timeout=5) as sock:
            head = (
                "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme-key-123\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            sock.sendall(head.encode() + b'{"campaign_id": ')
        wait_for(lambda: list(records.records), bool)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in records.records] == [
        ("INFO", "POST /v1/messages: the client left before sending its whole body", None)
    ]
