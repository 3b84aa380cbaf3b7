"""Shared fixtures. One embedded ClickHouse engine per test process (chDB allows one data path per process);
each test gets its own database in it, so tests never see each other's rows. A new database is a copy of one
migrated once per process (tests/store_template.py), not migrated again for each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixelpipe import settings as settings_mod
from schemas.store import Store, parse_store_url
from tests.store_template import Copier

pytest_plugins = ["tests.kafka_broker"]

DATA = Path(__file__).parent / "data"
SECRET = "test-secret-0123456789abcdef"


_COPIER = Copier(Store.migrate)


def _copying_migrate(store: Store) -> list[int]:
    return _COPIER.migrate(store)


@pytest.fixture(scope="session", autouse=True)
def migrations_copier() -> Iterator[Copier]:
    """`Store.migrate`, for this process's tests: a new embedded database is copied from the schema that the
    migrations made once (tests/store_template.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "migrate", _copying_migrate)
        yield _COPIER


@pytest.fixture
def from_scratch() -> Iterator[None]:
    """The test's new databases are migrated from empty by `Store.migrate` itself, not copied."""
    with _COPIER.from_scratch():
        yield


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's chDB data directory. A client stays open on it for the whole session: chDB shuts its
    engine down when the last client on a path closes, and starting it again costs each next test's first
    connection about half a second (a test's components close theirs when they stop)."""
    path = tmp_path_factory.mktemp("chdb")
    keeper = Store.connect(parse_store_url(f"chdb://{path}?database=default"), migrate=False)
    try:
        yield path
    finally:
        keeper.close()


@pytest.fixture
def database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def env(chdb_path: Path, database: str, tmp_path: Path) -> dict[str, str]:
    """The environment of an embedded deployment under test, with two accounts."""
    return {
        "PIXELPIPE_SECRET": SECRET,
        "PIXELPIPE_API_KEYS": "acme=acme-key-123,globex=globex-key-456",
        "PIXELPIPE_DATA_DIR": str(tmp_path / "data"),
        "PIXELPIPE_CLICKHOUSE_URL": f"chdb://{chdb_path}?database={database}",
        "PIXELPIPE_GEOIP_CITY_DB": str(DATA / "GeoIP2-City-Test.mmdb"),
        "PIXELPIPE_GEOIP_ASN_DB": str(DATA / "GeoLite2-ASN-Test.mmdb"),
        "PIXELPIPE_TRUSTED_PROXIES": "127.0.0.0/8,::1/128",
        "PIXELPIPE_FLUSH_INTERVAL_MS": "100",
    }


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    s = Store.connect(parse_store_url(env["PIXELPIPE_CLICKHOUSE_URL"]))
    yield s
    s.command(f"DROP DATABASE IF EXISTS {s.database}")


@pytest.fixture
def settings(env: dict[str, str]) -> settings_mod.Settings:
    return settings_mod.load(env)
