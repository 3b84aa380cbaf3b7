"""How fast one client address may try API keys at sign-in: a token bucket per address.

A failed sign-in takes a token; a bucket refills at `REFILL_PER_S` up to `CAPACITY`. While a bucket is
empty every sign-in from that address is refused (429), a right key too: otherwise a guesser would learn
from the answer that a key is right while throttled. Someone who knows their key never fails, so never
waits; a guesser gets `CAPACITY` tries at once and then one every 1/`REFILL_PER_S` seconds.

One process's memory, bounded (`MAX_ADDRESSES`: past it, buckets that are full again are forgotten, then the
oldest). Several API processes each keep their own. Pure: the time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

CAPACITY: Final = 10.0
REFILL_PER_S: Final = 1 / 6  # ten failed attempts a minute, after the first ten
MAX_ADDRESSES: Final = 10_000


@dataclass(slots=True)
class SignInThrottle:
    capacity: float = CAPACITY
    refill_per_s: float = REFILL_PER_S
    max_addresses: int = MAX_ADDRESSES
    # address -> (tokens, when counted); addresses stay out of the repr
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self.capacity, now))
        return min(self.capacity, tokens + max(0.0, now - at) * self.refill_per_s)

    def wait_s(self, address: str, now: float) -> int:
        """Seconds before ``address`` may try again (0: now)."""
        tokens = self._tokens(address, now)
        if tokens >= 1:
            return 0
        return max(1, math.ceil((1 - tokens) / self.refill_per_s))

    def failed(self, address: str, now: float) -> None:
        """``address`` tried a key that is not configured."""
        tokens = self._tokens(address, now)
        self._buckets.pop(address, None)  # re-inserted last: the dict stays in the order of last failure
        self._buckets[address] = (max(0.0, tokens - 1), now)
        if len(self._buckets) > self.max_addresses:
            self._forget(now)

    def _forget(self, now: float) -> None:
        self._buckets = {a: b for a, b in self._buckets.items() if self._tokens(a, now) < self.capacity}
        while len(self._buckets) > self.max_addresses:
            del self._buckets[next(iter(self._buckets))]
