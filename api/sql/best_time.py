"""The best time to send: the modal hour and weekday at which an audience (a campaign's, the campaigns a
recipient was sent, the account's) or one recipient opens, each open in its reader's own time zone (GeoIP).
Owns the read of the ``slot`` rollup and the fallback rule (`MIN_SAMPLE`, `first_sufficient`). Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.sql.exact import ROLLUP_KEYS, ExactRead

MIN_SAMPLE: Final = 5  # fewer human opens than this: best time falls back to a wider audience


WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def audience_slots(db: str, account: str, campaign_ids: Sequence[str] | None) -> ExactRead:
    """Human opens per (time zone, UTC quarter hour as epoch seconds) of some campaigns' audience, or of the
    whole account's (``campaign_ids`` None: the rows the view keeps under campaign_id '')."""
    parameters: dict[str, Any] = {"account": account}
    if campaign_ids is None:
        where = "account = {account:String} AND campaign_id = '' AND rollup = 'slot'"
        keys: tuple[str, ...] = ROLLUP_KEYS
    else:
        where = (
            "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)} AND rollup = 'slot'"
        )
        parameters["campaign_ids"] = list(campaign_ids)
        keys = ("campaign_id", *ROLLUP_KEYS)
    return ExactRead(
        f"{db}.rollups",
        where,
        keys=keys,
        sizes=(("opens", "hits"),),
        parameters=parameters,
        out=(("time_zone", "label"), ("slot", "toUnixTimestamp(at)")),
    )


@dataclass(frozen=True, slots=True)
class BestTime:
    """When an audience opens: the modal hour and weekday in local time, and the histograms behind them."""

    basis: str  # "recipient" | "campaign" | "campaigns" | "account" | "none"
    hour: int | None
    weekday: str | None
    timezone: str | None  # the recipient's zone; None for an audience (each reader's own zone)
    sample_size: int
    hours: tuple[int, ...]
    weekdays: tuple[int, ...]
    # Opens per weekday (Mon first) and hour: the grid the two histograms sum; the dashboard's heatmap.
    grid: tuple[tuple[int, ...], ...] = ((0,) * 24,) * 7

    def as_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "hour": self.hour,
            "weekday": self.weekday,
            "timezone": self.timezone,
            "sample_size": self.sample_size,
            "by_hour": list(self.hours),
            "by_weekday": dict(zip(WEEKDAYS, self.weekdays, strict=True)),
            "by_weekday_hour": {day: list(hours) for day, hours in zip(WEEKDAYS, self.grid, strict=True)},
        }


NO_BEST_TIME: Final = BestTime("none", None, None, None, 0, (0,) * 24, (0,) * 7)


def _mode(histogram: Sequence[int]) -> int:
    # Ties go to the earliest hour or weekday, so the answer is stable.
    return max(range(len(histogram)), key=lambda i: (histogram[i], -i))


def best_time(local_times: Iterable[tuple[datetime, int]], basis: str, timezone: str | None) -> BestTime:
    """Mode of the hour of day and of the weekday over ``(local time, weight)``; `NO_BEST_TIME`'s basis "none"
    is for the caller to pick when no level reaches `MIN_SAMPLE`."""
    hours = [0] * 24
    weekdays = [0] * 7
    grid = [[0] * 24 for _ in range(7)]
    for at, weight in local_times:
        hours[at.hour] += weight
        weekdays[at.weekday()] += weight
        grid[at.weekday()][at.hour] += weight
    sample = sum(hours)
    cells = tuple(tuple(row) for row in grid)
    if not sample:
        return BestTime(basis, None, None, timezone, 0, tuple(hours), tuple(weekdays), cells)
    return BestTime(
        basis, _mode(hours), WEEKDAYS[_mode(weekdays)], timezone, sample, tuple(hours), tuple(weekdays), cells
    )


def recipient_best_time(opens: Sequence[tuple[int, str]]) -> BestTime:
    """A recipient's best time from their human opens ``(epoch ms, GeoIP time zone)``: every open in the
    recipient's zone (the mode over opens that have one; proxy opens carry none but are the same person)."""
    zones = Counter(tz for _, tz in opens if tz)
    if not zones:
        return best_time((), "recipient", None)
    name = min(zones, key=lambda z: (-zones[z], z))
    tz = ZoneInfo(name)
    return best_time(((datetime.fromtimestamp(ms / 1000, tz), 1) for ms, _ in opens), "recipient", name)


def audience_best_time(rows: Iterable[tuple[Any, ...]], basis: str) -> BestTime:
    """An audience's best time from ``(time zone, UTC slot epoch seconds, opens)``: each open in its reader's
    own zone. Unknown zone names (a GeoIP database newer than tzdata) are skipped."""

    def local() -> Iterable[tuple[datetime, int]]:
        zones: dict[str, ZoneInfo | None] = {}
        for name, slot, opens in rows:
            if name not in zones:
                try:
                    zones[name] = ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    zones[name] = None
            tz = zones[name]
            if tz is not None:
                yield datetime.fromtimestamp(int(slot), tz), int(opens)

    return best_time(local(), basis, None)


def first_sufficient(*candidates: BestTime) -> BestTime:
    """The first level with at least `MIN_SAMPLE` opens, else "none"."""
    for candidate in candidates:
        if candidate.sample_size >= MIN_SAMPLE:
            return candidate
    return NO_BEST_TIME
