"""The root of pixelpipe's errors, and the one question every retry loop asks of a failure: may it pass?

Every error pixelpipe raises on purpose derives from `PixelpipeError` (the ones that are also a `ValueError`
or a `RuntimeError` keep that base too, so callers that catch those still do). Its `retriable` flag says
whether the same call may succeed later — the store or the broker was away — or cannot, however often it is
tried: a schema mismatch, a row the store refuses, a forged token. `retriable()` answers for any exception:
ours say so themselves, aiokafka's carry the same flag, the network's and the disk's may pass (`OSError`,
`TimeoutError`; SQLite's `OperationalError`: a database locked, full or unreadable for now), and anything else
is a bug or bad data, which no retry fixes.
"""

from __future__ import annotations

import sqlite3


class PixelpipeError(Exception):
    """An error pixelpipe raises on purpose. ``retriable``: the same call may succeed later."""

    retriable: bool = False

    def __init__(self, *args: object, retriable: bool | None = None) -> None:
        super().__init__(*args)
        if retriable is not None:
            self.retriable = retriable


def retriable(exc: BaseException) -> bool:
    """Whether trying the same call again may succeed."""
    flag = getattr(exc, "retriable", None)  # ours, and aiokafka's KafkaError
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, (OSError, TimeoutError, sqlite3.OperationalError))
