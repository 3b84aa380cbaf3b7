"""A store error keeps ClickHouse's code and name, and says whether a retry may fix it: on the exceptions real
chDB raises through the store port, and on the texts a ClickHouse server sends that chDB cannot provoke."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import (
    GENERIC_CLICKHOUSE_ERROR,
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from schemas.errors import retriable
from schemas.store import Store, StoreError
from schemas.store_errors import UNFIXABLE, server_error, sort_failure


def _refusal(call: object) -> StoreError:
    assert callable(call)
    with pytest.raises(StoreError) as info:
        call()
    return info.value


@pytest.fixture
def table(store: Store) -> str:
    name = f"{store.database}.t"
    store.command(f"CREATE TABLE {name} (id UInt8, s String) ENGINE = MergeTree ORDER BY id")
    return name


@pytest.mark.parametrize(
    ("sql", "code", "name"),
    [
        ("SELECT * FROM {db}.no_such_table", 60, "UNKNOWN_TABLE"),
        ("SELECT no_such_column FROM {db}.t", 47, "UNKNOWN_IDENTIFIER"),
        ("SELECT toUInt8('abc')", 6, "CANNOT_PARSE_TEXT"),
        ("SELECT * FROM no_such_database_anywhere.t", 81, "UNKNOWN_DATABASE"),
    ],
)
def test_what_no_retry_fixes_is_final_with_its_code_and_name(
    store: Store, table: str, sql: str, code: int, name: str
) -> None:
    exc = _refusal(lambda: store.query(sql.format(db=store.database)))
    assert (exc.code, exc.name, exc.retriable, exc.away) == (code, name, False, False)
    assert retriable(exc) is False
    assert exc.label == f"{name} (code {code})"
    assert f"Code: {code}." in str(exc)


def test_a_row_the_table_refuses_is_final(store: Store, table: str) -> None:
    store.command(f"ALTER TABLE {table} ADD CONSTRAINT short CHECK length(s) < 3")
    exc = _refusal(lambda: store.insert("t", ["id", "s"], [[1, "long"]]))
    assert (exc.code, exc.name, exc.retriable) == (469, "VIOLATED_CONSTRAINT", False)


def test_a_column_the_table_lost_is_final_though_the_client_finds_it(store: Store, table: str) -> None:
    store.command(f"ALTER TABLE {table} DROP COLUMN s")
    exc = _refusal(lambda: store.insert("t", ["id", "s"], [[1, "x"]]))
    # clickhouse-connect compares the columns before it sends anything: no server code
    assert (exc.code, exc.name, exc.retriable) == (None, None, False)
    assert str(exc).startswith("ProgrammingError: Unrecognized column 's'")
    assert exc.label == "no server error code"


def test_a_value_the_column_type_cannot_hold_is_final(store: Store, table: str) -> None:
    exc = _refusal(lambda: store.insert("t", ["id", "s"], [["not a number", "x"]]))
    assert (exc.code, exc.name, exc.retriable) == (None, None, False)
    exc = _refusal(lambda: store.insert("t", ["id", "s"], [[300, "x"]]))  # UInt8
    assert (exc.code, exc.name, exc.retriable, str(exc).split(":")[0]) == (None, None, False, "DataError")


def test_overload_and_unknown_codes_may_pass(store: Store) -> None:
    exc = _refusal(
        lambda: store.query(
            "SELECT number FROM numbers(1000000) GROUP BY number SETTINGS max_memory_usage = 1000000"
        )
    )
    assert (exc.code, exc.name, exc.retriable) == (241, "MEMORY_LIMIT_EXCEEDED", True)
    exc = _refusal(lambda: store.query("SELECT throwIf(1)"))  # not known to be final: wait rather than lose
    assert (exc.code, exc.name, exc.retriable) == (395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO", True)
    assert exc.away is False  # the store answered: the API says 500, not "retry later"


@pytest.mark.parametrize(
    ("text", "code", "name", "may_pass"),
    [
        ("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than "
         "inserts. (TOO_MANY_PARTS) (version 24.3.1.1 (official build))", 252, "TOO_MANY_PARTS", True),
        ("Code: 159. DB::Exception: Timeout exceeded: elapsed 30.1 seconds, maximum: 30. (TIMEOUT_EXCEEDED)",
         159, "TIMEOUT_EXCEEDED", True),
        ("Code: 202. DB::Exception: Too many simultaneous queries. Maximum: 100. "
         "(TOO_MANY_SIMULTANEOUS_QUERIES)", 202, "TOO_MANY_SIMULTANEOUS_QUERIES", True),
        ("Code: 242. DB::Exception: Table is in readonly mode: replica_path=/t (TABLE_IS_READ_ONLY)",
         242, "TABLE_IS_READ_ONLY", True),
        ("Code: 209. DB::NetException: Timeout exceeded while reading from socket (SOCKET_TIMEOUT)",
         209, "SOCKET_TIMEOUT", True),
        ("Code: 16. DB::Exception: No such column user_agent in table db.events (NO_SUCH_COLUMN_IN_TABLE)",
         16, "NO_SUCH_COLUMN_IN_TABLE", False),
        ("Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH)",
         53, "TYPE_MISMATCH", False),
        ("Code: 321. DB::Exception: Value 70000 out of range of Int16 (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)",
         321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", False),
        ("Code: 41. DB::Exception: Cannot parse datetime: (at row 1) (CANNOT_PARSE_DATETIME)",
         41, "CANNOT_PARSE_DATETIME", False),
        ("Code: 999. DB::Exception: a future error (SOMETHING_NEW)", 999, "SOMETHING_NEW", True),
    ],
)  # fmt: skip
def test_a_server_text_without_attributes_is_read(text: str, code: int, name: str, may_pass: bool) -> None:
    failure = sort_failure(DatabaseError(text))  # as an older driver or another path hands it over
    assert (failure.code, failure.name, failure.retriable, failure.away) == (code, name, may_pass, False)


def test_a_code_without_a_name_is_named_when_it_is_final() -> None:
    assert server_error(DatabaseError(GENERIC_CLICKHOUSE_ERROR, code=60)) == (60, "UNKNOWN_TABLE")
    assert sort_failure(DatabaseError(GENERIC_CLICKHOUSE_ERROR, code=60)).retriable is False
    assert sort_failure(DatabaseError(GENERIC_CLICKHOUSE_ERROR, code=241)).retriable is True


def test_the_network_is_away_and_may_pass() -> None:
    for exc in (
        OperationalError("Error HTTPConnectionPool(host='h', port=8123) executing HTTP request attempt 1"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
    ):
        failure = sort_failure(exc)
        assert (failure.code, failure.name, failure.retriable, failure.away) == (None, None, True, True)


def test_a_name_in_parentheses_without_a_code_is_not_the_servers() -> None:
    assert server_error(ProgrammingError("Unrecognized column 'x' (UNKNOWN_TABLE)")) == (None, None)


def test_the_table_of_final_codes_agrees_with_clickhouse(store: Store) -> None:
    codes = sorted(UNFIXABLE)
    rows = store.query("SELECT arrayMap(c -> errorCodeToName(c), {codes:Array(UInt32)})", {"codes": codes})
    assert dict(zip(codes, rows[0][0], strict=True)) == UNFIXABLE
