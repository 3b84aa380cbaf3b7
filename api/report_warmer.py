"""Campaign reports kept ready for the dashboard.

A campaign's report is kept while the data parts holding its rollup rows stay (`api.campaign_reads`), and
computed again on the next request after they changed: ~0.6 s for a campaign of 1.4 M messages in the 10 M
event set, most of the dashboard's 1 s budget (BENCHMARKS section 8). The warmer does that computing in the
background instead of in a person's navigation:

- **At start**, each account's `WARM_PER_ACCOUNT` largest campaigns (most rollup rows: the slow ones; a small
  campaign's report takes milliseconds) and as many of its newest (the ones a sender opens next) get their
  default report (`ReportAsk`'s defaults: people only, hourly, UTC, as the dashboard first asks in UTC).
- **While asked**: every report the API answered in the last `KEEP_ASKING_S` is asked for again every
  `INTERVAL_S`. A settled campaign's costs one signature query (its answer is kept); one being opened right
  now is computed again after each flush, so the person's next navigation finds it kept.

It only reads, through the same `campaign_report` the route calls, so what it keeps is exactly the route's
answer. A failing read is logged and tried at the next round; nothing it does can fail a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from api.sql import timeseries

log = logging.getLogger(__name__)

INTERVAL_S: Final = 5.0
KEEP_ASKING_S: Final = 900.0  # a report nobody asked for in 15 minutes is left to the next request
MAX_ASKS: Final = 64  # reports refreshed at once, the most recently asked kept


@dataclass(frozen=True, slots=True)
class ReportAsk:
    """One report as a request names it."""

    account: str
    campaign_id: str
    include_machine: bool = False
    bucket: timeseries.Bucket = "hour"
    tz: str = "UTC"


Compute = Callable[[ReportAsk], object]
Seed = Callable[[], list[ReportAsk]]


class ReportWarmer:
    """The reports asked for lately, computed again in a background thread (see the module)."""

    def __init__(
        self,
        compute: Compute,
        seed: Seed,
        *,
        interval_s: float = INTERVAL_S,
        keep_asking_s: float = KEEP_ASKING_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._seed = seed
        self._interval_s = interval_s
        self._keep_asking_s = keep_asking_s
        self._clock = clock
        self._asked: dict[ReportAsk, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ReportWarmer({len(self._asked)} asked)"

    def asked(self, ask: ReportAsk) -> None:
        """A request answered ``ask``: keep it ready for a while."""
        with self._lock:
            self._asked.pop(ask, None)
            self._asked[ask] = self._clock()
            while len(self._asked) > MAX_ASKS:
                del self._asked[next(iter(self._asked))]

    def due(self) -> list[ReportAsk]:
        """The asks to compute this round (those asked within `keep_asking_s`); the older are forgotten."""
        now = self._clock()
        with self._lock:
            for ask in [a for a, at in self._asked.items() if now - at > self._keep_asking_s]:
                del self._asked[ask]
            return list(self._asked)

    def run_once(self) -> int:
        """Compute every due report; how many were computed without error."""
        done = 0
        for ask in self.due():
            if self._stopping.is_set():
                break
            try:
                self._compute(ask)
                done += 1
            except Exception:  # a report the next request will compute (and answer its error) itself
                log.warning(
                    "could not keep the report of %s/%s ready", ask.account, ask.campaign_id, exc_info=True
                )
        return done

    def start(self) -> None:
        """Seed, then refresh every `interval_s` in a daemon thread until `stop`."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="report-warmer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the report being computed (joined up to ``timeout_s``)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        try:
            seeded = self._seed()
        except Exception:
            log.warning("could not list the campaigns whose reports to keep ready", exc_info=True)
            seeded = []
        for ask in seeded:
            self.asked(ask)
        while not self._stopping.is_set():
            self.run_once()
            self._stopping.wait(self._interval_s)
