"""`Secret`: a value that never shows — not in a repr, a str, an f-string, a %-format, JSON or a pickle.

Only `reveal()` gives it, at the one place that hands it to the library that needs it (the ClickHouse client
for the store's password). Equal and hashable by value, so a settings object holding one still compares.
"""

from __future__ import annotations

import hmac
from typing import Final, NoReturn, final

MASK: Final = "***"


@final
class Secret:
    """A secret string; shows as ``***``. ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self  # immutable: `dataclasses.replace`/`asdict` and `copy` keep the same object

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        # A pickle is bytes that end up in files and queues; a process gets its secrets from its environment.
        raise TypeError("a Secret is not pickled")
