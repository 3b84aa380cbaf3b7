"""The store port: ClickHouse through clickhouse-connect, embedded (chDB) or a server, behind one small class.

clickhouse-connect already speaks both transports; this port adds what pixelpipe needs on top: one URL
format for both, the database made and migrated at start, errors that keep ClickHouse's code and name and
say whether a retry may help (`schemas.store_errors`; never the password), and calls serialised where the
engine needs it (chDB runs one engine per process). Callers on an event loop run these blocking calls in a
worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from schemas.ddl import migrations
from schemas.errors import PixelpipeError
from schemas.secret import MASK, Secret
from schemas.store_errors import SERIALISING, sort_failure

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "pixelpipe"


class StoreError(PixelpipeError):
    """A store call failed. ``retriable``: the same call may succeed later; ``code``/``name``: ClickHouse's
    error (None when the server did not answer one); ``away``: the store could not be reached at all."""

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        code: int | None = None,
        name: str | None = None,
        away: bool | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.code = code
        self.name = name
        self.away = retriable if away is None else away

    @property
    def label(self) -> str:
        """The server's name and code (``UNKNOWN_TABLE (code 60)``), or that it gave none."""
        if self.code is None and self.name is None:
            return "no server error code"
        return f"{self.name or 'unnamed'} (code {self.code if self.code is not None else '?'})"


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where the store lives, parsed from ``PIXELPIPE_CLICKHOUSE_URL``."""

    embedded: bool
    database: str
    path: str = ""  # chDB data directory
    host: str = ""
    port: int = 0
    username: str = "default"
    password: Secret = field(default=Secret(""), repr=False)  # shows as ***; `redacted` is what to show
    secure: bool = False

    @property
    def redacted(self) -> str:
        if self.embedded:
            return f"chdb://{self.path} (database {self.database})"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}:***@{self.host}:{self.port}/{self.database}"


def parse_store_url(url: str) -> StoreTarget:
    """``chdb://PATH[?database=NAME]`` or ``http(s)://user:pass@host:port/db``; raise ValueError otherwise."""
    if url.startswith("chdb://"):
        rest, _, query = url.removeprefix("chdb://").partition("?")
        if not rest:
            raise ValueError("chdb:// needs a data directory, e.g. chdb://./data/clickhouse")
        database = parse_qs(query).get("database", [DEFAULT_DATABASE])[0]
        _check_database(database)
        return StoreTarget(embedded=True, database=database, path=str(Path(rest).resolve()))
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected chdb://PATH or http(s)://user:pass@host:port/db")
    try:
        port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
    except ValueError as exc:
        raise ValueError("the port is not a number") from exc
    database = unquote(parsed.path.strip("/")) or DEFAULT_DATABASE
    _check_database(database)
    return StoreTarget(
        embedded=False,
        database=database,
        host=parsed.hostname,
        port=port,
        username=unquote(parsed.username or "default"),
        password=Secret(unquote(parsed.password or "")),
        secure=parsed.scheme == "https",
    )


def _check_database(name: str) -> None:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r} must be letters, digits and underscores")


def _wrap(exc: Exception, target: StoreTarget) -> StoreError:
    failure = sort_failure(exc)
    message = f"{failure.cause}: {exc}"
    if password := target.password.reveal():
        message = message.replace(password, MASK)  # were a server or a client ever to echo it
    return StoreError(
        message, retriable=failure.retriable, code=failure.code, name=failure.name, away=failure.away
    )


class Store:
    """Inserts, queries and commands against one database. Thread-safe."""

    def __init__(self, client: Client, target: StoreTarget) -> None:
        self._client = client
        self.target = target
        self.database = target.database
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, target: StoreTarget, *, migrate: bool = True) -> Store:
        try:
            if target.embedded:
                Path(target.path).mkdir(mode=0o700, parents=True, exist_ok=True)  # personal data: owner only
                client = clickhouse_connect.get_client(interface="chdb", path=target.path)
            else:
                client = clickhouse_connect.get_client(
                    host=target.host,
                    port=target.port,
                    username=target.username,
                    password=target.password.reveal(),
                    secure=target.secure,
                    autogenerate_session_id=False,
                    connect_timeout=5,
                    send_receive_timeout=30,
                )
        except (ClickHouseError, OSError) as exc:
            raise _wrap(exc, target) from exc
        store = cls(client, target)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> list[int]:
        """Create the database and apply every migration not yet applied; return the versions applied now."""
        db = self.database
        self.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self.command(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {row[0] for row in self.query(f"SELECT version FROM {db}.schema_migrations")}
        applied = []
        for migration in migrations(db):
            if migration.version in done:
                continue
            for statement in migration.statements:
                self.command(statement)
            self.insert("schema_migrations", ["version", "name"], [[migration.version, migration.name]])
            applied.append(migration.version)
            log.info("applied schema migration %04d_%s", migration.version, migration.name)
        return applied

    def apply_retention(self, *, events_days: int, filtered_days: int) -> None:
        """Set each table's TTL (idempotent; old parts are trimmed at their next merge, not rewritten now)."""
        plan = (
            ("sends", "sent_at", events_days),
            ("events", "received_at", events_days),
            ("filtered_hits", "received_at", filtered_days),
            ("deliveries", "occurred_at", events_days),
            ("reads", "opened_at", events_days),  # read time goes with the counted hits it measured
        )
        for table, column, days in plan:
            self.command(
                f"ALTER TABLE {self.database}.{table} "
                f"MODIFY TTL toDateTime({column}) + INTERVAL {int(days)} DAY "
                "SETTINGS materialize_ttl_after_modify = 0"
            )

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None:
        """Insert rows; with a dedup token, a retry of the same batch is stored once."""
        if not rows:
            return
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            with self._lock:
                self._client.insert(
                    f"{self.database}.{table}", rows, column_names=list(columns), settings=settings
                )
        except (ClickHouseError, OSError, *SERIALISING) as exc:  # serialising: a value its column refuses
            raise _wrap(exc, self.target) from exc

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                result = self._client.query(sql, parameters=dict(parameters or {}))
        except (ClickHouseError, OSError) as exc:
            raise _wrap(exc, self.target) from exc
        return [tuple(row) for row in result.result_rows]

    def query_dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self._lock:
                result = self._client.query(sql, parameters=dict(parameters or {}))
        except (ClickHouseError, OSError) as exc:
            raise _wrap(exc, self.target) from exc
        return list(result.named_results())

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        try:
            with self._lock:
                self._client.command(sql, parameters=dict(parameters or {}) or None)
        except (ClickHouseError, OSError) as exc:
            raise _wrap(exc, self.target) from exc

    def ping(self) -> bool:
        try:
            with self._lock:
                return bool(self._client.ping())
        except Exception:  # a health probe answers yes or no, whatever the failure
            return False

    def close(self) -> None:
        with self._lock:
            self._client.close()
