"""Fresh embedded databases at the newest schema version, copied from one migrated once per test process.

Nearly every test connects a store to a database of its own that does not exist yet, so `Store.migrate`
applied every migration again for each (tens of DDL statements; about 3 s per database on chDB). Here the
migrations run once per process, on a database used only for that; what they made is read back as ClickHouse
shows it (each table's and view's CREATE statement: columns, codecs, indexes, engine, order, TTL, settings)
with the versions they recorded, and the database is dropped. A test's new database is then made from those
statements, tables before the views that read them, with the same rows in ``schema_migrations``, and
`Store.migrate` finds every version applied, as it would after migrating.

Only new databases of an embedded store are copied; a database that exists (a test that builds an older
schema first) and a ClickHouse server are migrated as always. `from_scratch` turns the copy off for a test
that is about applying the migrations to an empty database (tests/integration/test_store_contract.py), and
tests/unit/test_store_template.py checks that a copy and a database migrated from scratch are the same.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from schemas.store import Store

_PLACEHOLDER = "{db}"
_VIEW_ENGINES = frozenset({"MaterializedView", "View", "LiveView", "WindowView"})


@dataclass(frozen=True, slots=True)
class MigratedSchema:
    """What the migrations make in an empty database: its CREATE statements, with ``{db}`` for the database
    (tables first, then views), and the (version, name) rows of ``schema_migrations``."""

    statements: tuple[str, ...]
    versions: tuple[tuple[int, str], ...]

    def create_in(self, store: Store) -> None:
        """Make ``store``'s database (absent until now) as the migrations would."""
        db = store.database
        store.command(f"CREATE DATABASE {db}")
        for statement in self.statements:
            store.command(statement.replace(_PLACEHOLDER, db))
        store.insert("schema_migrations", ("version", "name"), [list(v) for v in self.versions])


def read_schema(store: Store, database: str) -> MigratedSchema:
    """The schema of ``database`` as statements that make it again under another name."""
    rows = store.query(
        "SELECT name, engine, create_table_query FROM system.tables WHERE database = {db:String} "
        "ORDER BY name",
        {"db": database},
    )
    named = re.compile(rf"(?<![\w.`]){re.escape(database)}\.")
    tables = [(engine in _VIEW_ENGINES, named.sub(f"{_PLACEHOLDER}.", query)) for _, engine, query in rows]
    if any(database in query.replace(f"{_PLACEHOLDER}.", "") for _, query in tables):
        raise RuntimeError(f"{database} is named in a CREATE statement other than as a table's database")
    versions = store.query(f"SELECT version, name FROM {database}.schema_migrations FINAL ORDER BY version")
    return MigratedSchema(
        statements=tuple(query for _, query in sorted(tables, key=lambda t: t[0])),
        versions=tuple((int(v), str(n)) for v, n in versions),
    )


def migrate_scratch(store: Store, migrate: Callable[[Store], list[int]]) -> MigratedSchema:
    """Apply every migration (``migrate``, the real `Store.migrate`) to a database of its own on ``store``'s
    engine, read what they made, and drop it."""
    database = f"template_{uuid.uuid4().hex[:12]}"
    scratch = Store.connect(replace(store.target, database=database), migrate=False)
    try:
        migrate(scratch)
        return read_schema(scratch, database)
    finally:
        scratch.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        scratch.close()


class Copier:
    """`Store.migrate` for tests: a new embedded database is copied from this process's migrated schema."""

    def __init__(self, migrate: Callable[[Store], list[int]]) -> None:
        self._migrate = migrate  # the real one
        self._schema: MigratedSchema | None = None
        self._lock = threading.Lock()
        self.copying = True

    def schema(self, store: Store) -> MigratedSchema:
        with self._lock:
            if self._schema is None:
                self._schema = migrate_scratch(store, self._migrate)
            return self._schema

    def migrate(self, store: Store) -> list[int]:
        if self.copying and store.target.embedded and not _exists(store):
            self.schema(store).create_in(store)
        return self._migrate(store)  # finds every version applied: nothing more to do, as after migrating

    @contextmanager
    def from_scratch(self) -> Iterator[None]:
        """Within: every database is migrated as `Store.migrate` does, copied from nothing."""
        self.copying = False
        try:
            yield
        finally:
            self.copying = True


def _exists(store: Store) -> bool:
    query = "SELECT count() FROM system.databases WHERE name = {db:String}"
    return bool(store.query(query, {"db": store.database})[0][0])
