"""The notice stage's retries: a webhook's schedule is the shared backoff's, and a batch of notices on its way
to a sink is never given up, even on a failure the error tree calls final (said once, loudly)."""

import asyncio
import logging

import pytest

from notices.retries import RetryPolicy, until_taken
from schemas.backoff import Backoff
from schemas.errors import PixelpipeError


def test_a_webhook_retry_waits_as_the_shared_backoff_does_and_jitter_only_lengthens_it() -> None:
    policy = RetryPolicy(first_delay_s=1, max_delay_s=8, max_attempts=6, jitter=0.1)
    assert policy.schedule() == [Backoff(1, 8).delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert policy.backoff.jittered(3, draw=lambda: 0.0) == 4.0
    assert policy.backoff.jittered(3, draw=lambda: 1.0) == pytest.approx(4.4)


def test_a_batch_is_handed_on_through_failures_that_may_pass_and_those_that_may_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.notices")
    failures = [
        PixelpipeError("topic refused"),
        PixelpipeError("topic refused"),
        ConnectionError("away"),
        TypeError("a bug"),
    ]
    calls: list[int] = []

    async def sink() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "taken"

    caplog.set_level(logging.WARNING, logger="test.notices")
    taken = asyncio.run(until_taken(sink, what="sink", backoff=Backoff(0.001, 0.002), log=log))
    assert (taken, len(calls)) == ("taken", 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per streak, with its traceback
    assert errors[0].exc_info is not None
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 4


def test_stopping_gives_up_at_the_next_failure() -> None:
    async def sink() -> None:
        raise ConnectionError("away")

    with pytest.raises(ConnectionError):
        asyncio.run(
            until_taken(
                sink,
                what="sink",
                backoff=Backoff(0.001, 0.002),
                log=logging.getLogger("t"),
                give_up=lambda: True,
            )
        )


def test_the_default_backoff_doubles_from_1s_to_10min_and_covers_more_than_an_hour() -> None:
    policy = RetryPolicy()
    assert policy.schedule() == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600, 600]
    assert policy.max_attempts == 16
    assert policy.span_s == 4023  # 67 minutes from the first attempt to the last
    assert policy.span_s >= 3600


def test_backoff_is_capped_and_bad_policies_are_rejected() -> None:
    policy = RetryPolicy(first_delay_s=0.5, max_delay_s=3, max_attempts=6)
    assert policy.schedule() == [0.5, 1, 2, 3, 3]
    assert policy.delay(10_000) == 3
    for bad in (
        {"first_delay_s": 0},
        {"first_delay_s": 5, "max_delay_s": 1},
        {"max_attempts": 0},
        {"jitter": 2},
    ):
        with pytest.raises(ValueError, match="need"):
            RetryPolicy(**bad)  # type: ignore[arg-type]
