"""The click-burst window: the only state in classification.

A link scanner opens every link of a message within a second or two of the first; a person does not. So a
click that looks human is *held* for ``window_ms`` before it is counted. If another *distinct* link of the
same message is clicked within the window, every click of that burst becomes a bot click (reason
``click_burst``); otherwise the click is released as it was. Clicks already judged bots are not held but
still take part in the burst test. Opens are never held.

Time is event time (the edge's ``received_at``), so a replay from Kafka judges the same clicks the same way.
A held click is released when the event-time watermark has passed the end of its window, or, when the
source is caught up, when the wall clock has (a quiet stream has no watermark to advance). Holding is
bounded: at most ``window_ms`` plus one flush interval of delay, well inside the API's 3 s limit.

The caller never commits a bus offset at or past a held click (see `held_offsets`), so a crash loses no
held click: it is read again and judged again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from schemas.verdicts import Classification, Verdict

T = TypeVar("T")

BURST = Classification(Verdict.BOT, "click_burst")


@dataclass(slots=True)
class _Click(Generic[T]):
    at_ms: int
    link_index: int
    item: T
    classification: Classification
    partition: int
    offset: int
    held: bool


@dataclass(slots=True)
class _Message(Generic[T]):
    clicks: list[_Click[T]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    item: T
    classification: Classification


class ClickBurstWindow(Generic[T]):
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._messages: dict[tuple[str, str], _Message[T]] = {}
        self.watermark_ms = 0

    def __len__(self) -> int:
        return sum(1 for m in self._messages.values() for c in m.clicks if c.held)

    def admit(
        self,
        *,
        key: tuple[str, str],
        at_ms: int,
        link_index: int,
        item: T,
        classification: Classification,
        partition: int,
        offset: int,
    ) -> list[Released[T]]:
        """Take one click; return what can be stored now (the click itself when it is not held)."""
        self.watermark_ms = max(self.watermark_ms, at_ms)
        message = self._messages.setdefault(key, _Message())
        # Keep only clicks within the window of this one (event time, either direction for skew).
        message.clicks = [c for c in message.clicks if c.held or abs(at_ms - c.at_ms) <= self.window_ms]
        recent = [c for c in message.clicks if abs(at_ms - c.at_ms) <= self.window_ms]
        burst = any(c.link_index != link_index for c in recent)
        if burst:
            for c in recent:
                if c.held or c.classification.verdict is Verdict.HUMAN:
                    c.classification = BURST
            if classification.verdict is Verdict.HUMAN:
                classification = BURST
        hold = self.window_ms > 0 and classification.verdict is Verdict.HUMAN
        message.clicks.append(_Click(at_ms, link_index, item, classification, partition, offset, hold))
        if hold:
            return []
        return [Released(item, classification)]

    def release(self, now_ms: int, *, caught_up: bool) -> list[Released[T]]:
        """Clicks whose window has closed, with their final classification, in arrival order."""
        out: list[Released[T]] = []
        empty = []
        for key, message in self._messages.items():
            for c in message.clicks:
                closes = c.at_ms + self.window_ms
                if c.held and (self.watermark_ms > closes or (caught_up and now_ms > closes)):
                    c.held = False
                    out.append(Released(c.item, c.classification))
            horizon = max(self.watermark_ms, now_ms if caught_up else 0) - self.window_ms
            message.clicks = [c for c in message.clicks if c.held or c.at_ms >= horizon]
            if not message.clicks:
                empty.append(key)
        for key in empty:
            del self._messages[key]
        return out

    def flush_all(self) -> list[Released[T]]:
        """Release every held click now (shutdown): judged on what was seen so far."""
        out = [
            Released(c.item, c.classification) for m in self._messages.values() for c in m.clicks if c.held
        ]
        self._messages.clear()
        return out

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the clicks read from partitions this consumer no longer owns: their new owner reads them again
        from the committed offset, which is below every click held here."""
        for key in list(self._messages):
            message = self._messages[key]
            message.clicks = [c for c in message.clicks if c.partition not in partitions]
            if not message.clicks:
                del self._messages[key]

    def held_offsets(self) -> dict[int, int]:
        """The lowest bus offset still held, per partition: commits must stay below it."""
        lowest: dict[int, int] = {}
        for message in self._messages.values():
            for c in message.clicks:
                if c.held and (c.partition not in lowest or c.offset < lowest[c.partition]):
                    lowest[c.partition] = c.offset
        return lowest
