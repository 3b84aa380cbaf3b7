"""Backoff: how long every retry loop waits after a failure, in one place.

`Backoff` is the policy (pure): ``first_s`` after the first failure, doubling, capped at ``max_s``, with up to
``jitter`` of each delay added (never less, so a span only grows). `Retry` is one loop's state: the failures
since its last success. `retrying` is the loop most callers need: call until it works, wait between failures,
and give up at once on a failure that `schemas.errors.retriable` says no retry can fix.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from schemas.errors import retriable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first_s`` after the first failure, doubling, capped at ``max_s``."""

    first_s: float = 0.1
    max_s: float = 5.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.max_s < self.first_s:
            raise ValueError("need 0 < first_s <= max_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("need 0 <= jitter <= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based), without jitter."""
        return float(min(self.first_s * 2 ** min(max(failures, 1) - 1, 62), self.max_s))

    def jittered(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """`delay` plus up to ``jitter`` of it."""
        base = self.delay(failures)
        return base + base * self.jitter * draw() if self.jitter else base


class Retry:
    """One loop's failures since its last success, and the wait each asks for."""

    __slots__ = ("backoff", "failures")

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        return self.backoff.jittered(self.failures)

    def succeeded(self) -> None:
        self.failures = 0


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    log: logging.Logger,
    give_up: Callable[[], bool] = lambda: False,
    may_pass: Callable[[BaseException], bool] = retriable,
) -> T:
    """Await ``call()`` until it returns. A failure that ``may_pass`` is logged and tried again after the next
    delay; one that may not, or any failure once ``give_up()`` is true (stopping), is raised."""
    retry = Retry(backoff)
    while True:
        try:
            return await call()
        except Exception as exc:
            if give_up() or not may_pass(exc):
                raise
            delay = retry.failed()
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
