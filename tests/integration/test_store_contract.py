"""One contract for the store port, run against every ClickHouse we can reach: embedded chDB always; a
ClickHouse server when PIXELPIPE_TEST_CLICKHOUSE_URL names one or a Docker engine can start one (it must have
or be able to pull the server image: no package registry ships a ClickHouse server to build one from)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from processors.rows import STORED_EVENT_COLUMNS, plan_inserts
from schemas.store import Store, StoreError, StoreTarget, parse_store_url
from tests.kafka_broker import _docker_reachable as docker_reachable
from tests.kafka_broker import image_missing

CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
NO_SERVER = (
    "the ClickHouse-server half of the store contract did not run: PIXELPIPE_TEST_CLICKHOUSE_URL is not set "
    "and no Docker engine answered (DOCKER_HOST or /var/run/docker.sock) to start "
    "clickhouse/clickhouse-server"
)


@dataclass(frozen=True)
class ServerChoice:
    url: str | None
    why_not: str = NO_SERVER  # the skip reason when url is None


@pytest.fixture(scope="session")
def clickhouse_server_url() -> Iterator[ServerChoice]:
    url = os.environ.get("PIXELPIPE_TEST_CLICKHOUSE_URL")
    if url or not docker_reachable():
        yield ServerChoice(url)
        return
    missing = image_missing(CLICKHOUSE_IMAGE)
    if missing is not None:
        yield ServerChoice(None, missing)
        return
    from testcontainers.community.clickhouse import ClickHouseContainer

    with ClickHouseContainer(CLICKHOUSE_IMAGE, port=8123) as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
        yield ServerChoice(f"http://{container.username}:{container.password}@{host}:{port}/default")


@pytest.fixture(params=["chdb", "server"])
def contract_store(
    request: pytest.FixtureRequest, chdb_path: Path, clickhouse_server_url: ServerChoice
) -> Iterator[Store]:
    database = f"c_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        target = parse_store_url(f"chdb://{chdb_path}?database={database}")
    else:
        url = clickhouse_server_url.url
        if url is None:
            pytest.skip(clickhouse_server_url.why_not)  # -ra prints it in the summary, in CI too
        base = parse_store_url(url)
        target = StoreTarget(**{**base.__dict__, "database": database})  # type: ignore[arg-type]
    store = Store.connect(target)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {database}")


def _row(hit_id: str) -> list[object]:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "hit_id": hit_id, "kind": "open", "account": "acme", "campaign_id": "c", "message_id": "m",
        "sent_at": now, "received_at": now, "link_index": -1, "url": "", "verdict": "human",
        "reason": "ua:client", "via_proxy": False, "country": "GB", "city": "London",
        "time_zone": "Europe/London", "asn": 0, "as_org": "", "ip": "81.2.69.0", "device": "desktop",
        "os": "Mac OS X", "client": "Apple Mail", "user_agent": "UA", "source": "memory:0:1",
        "recipient_tag": "",
    }  # fmt: skip
    return [values[c] for c in STORED_EVENT_COLUMNS]


def test_migrations_are_idempotent(from_scratch: None, contract_store: Store) -> None:
    # from_scratch first: the database is migrated from empty, not copied (tests/store_template.py)
    assert contract_store.migrate() == []
    tables = {r[0] for r in contract_store.query(f"SHOW TABLES FROM {contract_store.database}")}
    assert {"sends", "events", "filtered_hits", "schema_migrations", "suppressions"} <= tables


def test_a_retried_batch_is_stored_once(contract_store: Store) -> None:
    (plan,) = plan_inserts({"events": [_row(f"h{i}") for i in range(100)]})
    for _ in range(3):  # the processor's retry after a timeout, and a replay of the same batch
        contract_store.insert(plan.table, plan.columns, plan.rows, dedup_token=plan.dedup_token)
    db = contract_store.database
    assert contract_store.query(f"SELECT count(), uniqExact(hit_id) FROM {db}.events") == [(100, 100)]
    (other,) = plan_inserts({"events": [_row(f"h{i}") for i in range(100, 150)]})
    contract_store.insert(other.table, other.columns, other.rows, dedup_token=other.dedup_token)
    assert contract_store.query(f"SELECT count() FROM {db}.events") == [(150,)]


def test_parameters_are_bound_not_spliced(contract_store: Store) -> None:
    hostile = "x' OR 1=1 --"
    assert contract_store.query("SELECT {v:String}", {"v": hostile}) == [(hostile,)]


def test_answers_in_clickhouse_formats_raw_and_streamed(contract_store: Store) -> None:
    """What exports read (issue 20): an answer in ClickHouse's own format, whole or in pieces as they come,
    with bound parameters; a failure mid-way is a StoreError."""
    sql = "SELECT number AS n, {label:String} AS label FROM numbers(100000)"
    pieces = list(contract_store.raw_stream(sql, {"label": "a,b"}, fmt="CSV", piece=1 << 16))
    assert all(len(p) <= 1 << 16 for p in pieces)
    assert len(pieces) > 1
    lines = b"".join(pieces).splitlines()
    assert len(lines) == 100_000
    assert lines[0] == b'0,"a,b"'
    assert lines[-1] == b'99999,"a,b"'
    arrow = contract_store.raw_query("SELECT number AS n FROM numbers(3)", fmt="Arrow")
    assert pa.ipc.open_file(pa.py_buffer(arrow)).read_all().column("n").to_pylist() == [0, 1, 2]
    with pytest.raises(StoreError):
        list(contract_store.raw_stream("SELECT * FROM no_such_table_anywhere", fmt="JSONEachRow"))
    assert contract_store.query("SELECT 1") == [(1,)]  # the store is free again


def test_errors_are_typed(contract_store: Store) -> None:
    with pytest.raises(StoreError) as info:
        contract_store.query("SELECT * FROM no_such_table_anywhere")
    assert info.value.retriable is False
