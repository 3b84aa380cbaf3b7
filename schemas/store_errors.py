"""What a failed store call was: ClickHouse's error code and name, and whether a retry may fix it. Pure.

clickhouse-connect raises the server's (and chDB's) errors with ``code`` and ``name`` set (``Code: 60.
DB::Exception: … (UNKNOWN_TABLE)``); its own checks, made before anything is sent (a column the table does
not have, a value the column type cannot hold), raise `DataError`/`ProgrammingError` without a code, and a
value its serialiser cannot convert escapes as a plain `ValueError`/`TypeError`.

The decision leans on the side of waiting: a failure is final only when the same rows into the same schema
must fail again — the schema does not have what the rows carry (a table, a column), or a row holds a value
the column refuses. The store being away, slow or overloaded, an unknown code, and what an operator fixes
outside the data (credentials, permissions, a read-only replica, settings) are retried: a hit dead-lettered
is work for a person, a hit waited for is not.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

from clickhouse_connect.driver.exceptions import DataError, OperationalError, ProgrammingError
from clickhouse_connect.driver.exceptions import Error as DriverError

# ClickHouse's codes whose failure no retry fixes (its src/Common/ErrorCodes.cpp; checked against chDB's
# errorCodeToName by tests/unit/test_store_errors.py). Keyed by code: a message may carry the code alone.
UNFIXABLE: Final[dict[int, str]] = {
    # the schema has not what the rows carry
    7: "INCORRECT_NUMBER_OF_COLUMNS",
    8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    47: "UNKNOWN_IDENTIFIER",
    60: "UNKNOWN_TABLE",
    81: "UNKNOWN_DATABASE",
    # a row holds a value its column refuses
    6: "CANNOT_PARSE_TEXT",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    53: "TYPE_MISMATCH",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    128: "TOO_LARGE_ARRAY_SIZE",
    131: "TOO_LARGE_STRING_SIZE",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    376: "CANNOT_PARSE_UUID",
    467: "CANNOT_PARSE_BOOL",
    469: "VIOLATED_CONSTRAINT",
    675: "CANNOT_PARSE_IPV4",
    676: "CANNOT_PARSE_IPV6",
}
_UNFIXABLE_NAMES: Final = frozenset(UNFIXABLE.values())

# What clickhouse-connect's serialiser lets escape when a value does not fit its column's type.
SERIALISING: Final = (ValueError, TypeError, OverflowError, struct.error)

_CODE: Final = re.compile(r"\bCode:\s*(\d+)")
_NAME: Final = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """A failed store call, sorted: ``code``/``name`` ClickHouse's (None when the failure is not the
    server's), ``retriable`` whether the same call may succeed later, ``away`` whether the store could not be
    reached at all (the network, a timeout), ``cause`` the failure's type."""

    code: int | None
    name: str | None
    retriable: bool
    away: bool
    cause: str


def server_error(exc: BaseException) -> tuple[int | None, str | None]:
    """ClickHouse's error code and name in ``exc``: clickhouse-connect's attributes, else its message."""
    code = getattr(exc, "code", None) if isinstance(exc, DriverError) else None
    name = getattr(exc, "name", None) if isinstance(exc, DriverError) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    name = name if isinstance(name, str) and name else None
    if code is None and name is None:
        text = str(exc)
        if (found := _CODE.search(text)) is None:
            return None, None  # no server spoke: a name-like "(WORD)" alone is not the server's
        code = int(found.group(1))
        names = _NAME.findall(text[found.end() :])
        name = names[-1] if names else None
    if name is None and code is not None:
        name = UNFIXABLE.get(code)
    return code, name


def sort_failure(exc: BaseException) -> StoreFailure:
    """Code, name, and whether a retry may help (module docstring)."""
    code, name = server_error(exc)
    away = isinstance(exc, (OperationalError, OSError))
    if name is not None or code is not None:
        unfixable = name in _UNFIXABLE_NAMES or code in UNFIXABLE or (name or "").startswith("CANNOT_PARSE_")
    else:  # the client's own checks and serialiser refused the rows before sending them
        unfixable = isinstance(exc, (DataError, ProgrammingError, *SERIALISING)) and not away
    return StoreFailure(code, name, not unfixable, away, type(exc).__name__)
