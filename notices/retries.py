"""How the notice stage retries, on the shared backoff (`schemas.backoff`): the schedule of webhook delivery
attempts (`RetryPolicy`, after which a delivery is given up), and handing a batch of notices on
(`until_taken`, which never gives one up).

Must never drop a batch of notices on the way to the outbox or the ``enriched`` topic: past that point the
processor's offsets, or the notice consumer's, are committed, and the notices would be lost for good.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from schemas.backoff import Backoff, retrying
from schemas.errors import retriable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``first_delay_s`` after the first failure, doubling, capped at ``max_delay_s``;
    ``max_attempts`` attempts in all. The defaults (1 s … 512 s, then every 10 min, 16 attempts) keep trying
    for 67 minutes. ``jitter`` adds up to that fraction of each delay (never less: the span only grows)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 600.0
    max_attempts: int = 16
    jitter: float = 0.1
    backoff: Backoff = field(init=False, repr=False, compare=False)  # the same schedule, as every loop's

    def __post_init__(self) -> None:
        if self.first_delay_s <= 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")
        if self.max_attempts < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need max_attempts >= 1 and 0 <= jitter <= 1")
        object.__setattr__(self, "backoff", Backoff(self.first_delay_s, self.max_delay_s, self.jitter))

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based), without jitter."""
        return self.backoff.delay(failures)

    def schedule(self) -> list[float]:
        """Every wait between attempts, in order."""
        return [self.delay(n) for n in range(1, self.max_attempts)]

    @property
    def span_s(self) -> float:
        """From the first attempt to the last, at least (without jitter)."""
        return sum(self.schedule())


async def until_taken(
    step: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    log: logging.Logger,
    give_up: Callable[[], bool] = lambda: False,
) -> T:
    """Await ``step()`` (a sink or a lookup taking a batch of notices) until it returns; raise only once
    ``give_up()`` (stopping).

    A failure that `schemas.errors.retriable` says may pass — the broker, the store or the disk was away — is
    retried after the next delay for as long as it lasts. One it says cannot pass is retried as well, and said
    loudly (an error with its traceback, once per streak), because giving the batch up is worse for the user
    on every count:

    - It loses webhooks of counted hits for good, silently. The batch would count as handed on: the processor
      then commits the raw offsets of hits whose notices reached no sink (the consumer, records whose
      deliveries are not in the outbox), and nothing reads them again. A stall loses nothing, and ends by
      itself once the cause is fixed (a topic's ACL, a full disk, a release with the bug fixed).
    - The flag is not to be trusted here: aiokafka marks `KafkaTimeoutError` (a broker away for longer than
      a send may wait) and the errors after which `RenewingProducer` renews itself (`OutOfOrderSequenceNumber`
      after a broker restart) as not retriable, though the next try succeeds; `sqlite3.OperationalError`
      (the outbox's disk full or locked) carries no flag at all.
    - A stall shows: on Kafka the processor stops fetching after a few flushes wait
      (``pixelpipe_flushes_awaiting_notices``, logged every 10 s); in one process the hub's queue fills and
      drops past its bound, counted in ``pixelpipe_notices_dropped_total``.
    """
    said = False

    def may_pass(exc: BaseException) -> bool:
        nonlocal said
        if not retriable(exc) and not said:
            said = True
            log.error("%s failed with an error a retry may not fix; retrying anyway", what, exc_info=exc)
        return True

    return await retrying(step, what=what, backoff=backoff, log=log, give_up=give_up, may_pass=may_pass)
