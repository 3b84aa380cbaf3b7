"""How the notice stage retries: the schedule of webhook delivery attempts (`RetryPolicy`), after which a
delivery is given up.

Pure: the dispatcher keeps each delivery's next attempt in the outbox and never sleeps for one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``first_delay_s`` after the first failure, doubling, capped at ``max_delay_s``;
    ``max_attempts`` attempts in all. The defaults (1 s … 512 s, then every 10 min, 16 attempts) keep trying
    for 67 minutes. ``jitter`` adds up to that fraction of each delay (never less: the span only grows)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 600.0
    max_attempts: int = 16
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.first_delay_s <= 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")
        if self.max_attempts < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need max_attempts >= 1 and 0 <= jitter <= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based), without jitter."""
        return float(min(self.first_delay_s * 2 ** min(failures - 1, 62), self.max_delay_s))

    def schedule(self) -> list[float]:
        """Every wait between attempts, in order."""
        return [self.delay(n) for n in range(1, self.max_attempts)]

    @property
    def span_s(self) -> float:
        """From the first attempt to the last, at least (without jitter)."""
        return sum(self.schedule())
