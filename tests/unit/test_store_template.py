"""The tests' new databases are copies of one migrated once per process (tests/store_template.py): a copy
must be the database that `Store.migrate` makes from empty, in every table, column, index, view, setting and
recorded version, and it must behave as one (its views fill the rollups)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.registry import SEND_COLUMNS
from schemas.store import Store, parse_store_url
from tests.store_template import Copier


def _connect(chdb_path: Path, database: str) -> Store:
    return Store.connect(parse_store_url(f"chdb://{chdb_path}?database={database}"), migrate=False)


def _describe(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything ClickHouse says about a database's schema, its name written ``{db}``."""
    db = {"db": store.database}
    named = "replaceAll({q}, {{db:String}} || '.', '{{db}}.')"
    return {
        "tables": store.query(
            f"SELECT name, engine, {named.format(q='create_table_query')}, {named.format(q='engine_full')}, "
            "partition_key, sorting_key, primary_key "
            "FROM system.tables WHERE database = {db:String} ORDER BY name",
            db,
        ),
        "columns": store.query(
            "SELECT table, name, position, type, default_kind, default_expression, compression_codec, "
            "comment, is_in_partition_key, is_in_sorting_key, is_in_primary_key "
            "FROM system.columns WHERE database = {db:String} ORDER BY table, position",
            db,
        ),
        "indexes": store.query(
            "SELECT table, name, type_full, expr, granularity FROM system.data_skipping_indices "
            "WHERE database = {db:String} ORDER BY table, name",
            db,
        ),
        "versions": store.query(
            f"SELECT version, name FROM {store.database}.schema_migrations FINAL ORDER BY version"
        ),
    }


def test_a_copied_database_is_the_migrated_one(chdb_path: Path, migrations_copier: Copier) -> None:
    migrated = _connect(chdb_path, f"t_{uuid.uuid4().hex[:12]}")
    copied = _connect(chdb_path, f"t_{uuid.uuid4().hex[:12]}")
    try:
        with migrations_copier.from_scratch():
            applied = migrated.migrate()
        assert applied == sorted(applied)
        assert len(applied) >= 12  # every migration, from empty
        migrations_copier.schema(copied).create_in(copied)
        assert copied.migrate() == []  # nothing left to apply
        assert _describe(copied) == _describe(migrated)
        assert [v for v, _ in _describe(copied)["versions"]] == applied

        # and it behaves as one: a send reaches the rollups and the campaign catalog through the views
        at = datetime.now(UTC)
        for store in (migrated, copied):
            store.insert("sends", SEND_COLUMNS, [["acme", "c", "m1", "ann@example.com", at, at, []]])
        counts = "SELECT (SELECT count() FROM {db}.rollups), (SELECT count() FROM {db}.campaign_catalog)"
        assert copied.query(counts.format(db=copied.database)) == migrated.query(
            counts.format(db=migrated.database)
        )
        assert copied.query(counts.format(db=copied.database))[0][0] > 0
    finally:
        for store in (migrated, copied):
            store.command(f"DROP DATABASE IF EXISTS {store.database}")
            store.close()


def test_an_existing_database_is_migrated_not_copied(chdb_path: Path) -> None:
    store = _connect(chdb_path, f"t_{uuid.uuid4().hex[:12]}")
    try:
        store.command(f"CREATE DATABASE {store.database}")  # a test that builds an older schema first
        applied = store.migrate()
        assert len(applied) >= 12
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()
