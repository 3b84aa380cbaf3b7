import asyncio
import logging
import sqlite3

import pytest

from schemas.backoff import Backoff, Retry, retrying
from schemas.errors import PixelpipeError, retriable


def test_delays_double_from_the_first_and_stop_at_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10_000) == 3.0  # no overflow however long it fails


def test_jitter_only_lengthens_a_delay() -> None:
    backoff = Backoff(first_s=1.0, max_s=8.0, jitter=0.1)
    assert backoff.jittered(3, draw=lambda: 0.0) == 4.0
    assert backoff.jittered(3, draw=lambda: 1.0) == pytest.approx(4.4)


@pytest.mark.parametrize(("first", "cap", "jitter"), [(0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 2.0, 1.5)])
def test_a_policy_that_cannot_work_is_refused(first: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="need"):
        Backoff(first_s=first, max_s=cap, jitter=jitter)


def test_a_success_starts_the_count_again() -> None:
    retry = Retry(Backoff(first_s=1.0, max_s=60.0))
    assert [retry.failed(), retry.failed(), retry.failed()] == [1.0, 2.0, 4.0]
    retry.succeeded()
    assert retry.failed() == 1.0


def test_errors_say_whether_a_retry_may_pass() -> None:
    assert retriable(PixelpipeError("away", retriable=True))
    assert not retriable(PixelpipeError("schema mismatch"))
    assert retriable(ConnectionRefusedError())
    assert retriable(TimeoutError())
    assert not retriable(TypeError("a bug"))
    assert retriable(sqlite3.OperationalError("database is locked"))  # the outbox's disk, for now
    assert not retriable(sqlite3.IntegrityError("UNIQUE constraint failed"))


def test_retrying_tries_until_it_works_and_raises_what_no_retry_fixes() -> None:
    log = logging.getLogger("test")
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise PixelpipeError("away", retriable=True)
        return "stored"

    async def broken() -> str:
        calls.append(1)
        raise PixelpipeError("type mismatch")

    fast = Backoff(first_s=0.001, max_s=0.001)
    assert asyncio.run(retrying(flaky, what="insert", backoff=fast, log=log)) == "stored"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(PixelpipeError, match="type mismatch"):
        asyncio.run(retrying(broken, what="insert", backoff=fast, log=log))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(PixelpipeError, match="away"):
        asyncio.run(retrying(flaky, what="insert", backoff=fast, log=log, give_up=lambda: True))
    assert len(calls) == 1
