"""Reminders (issue 20): ``remind_if_unopened_after`` at registration, and what its time decides. Pure.

A registration may ask to be told when its message was not opened in time (``"3d"``, ``"12h"``, ``"90m"``):
`parse_after` reads that duration and holds it to `MIN_AFTER_S` .. `MAX_AFTER_S` (a test may lower the floor,
never below 1 s and never silently: ``PIXELPIPE_REMINDER_MIN_AFTER_SECONDS``, README's settings table). The
reminder is due at the send's ``sent_at`` plus the duration (`due_at_ms`), so registering the message again
gives the same due time.

At its due time `decide` names what happened before it, from the message's counted hits received up to then:

- ``opened``: a human open, or a human click (a click proves an open the pixel did not see: an *implied*
  open); nothing is sent.
- ``unknown``: only machine opens (Apple Mail Privacy Protection's prefetch, a security gateway): the
  person's own opens are hidden, so whether they read it is unknown — an ``unknown`` notice.
- ``not_opened``: nothing at all — a ``not_opened`` notice.

A reminder's row moves through `ReminderState`, and each state outranks the one before it in the store
(``reminders`` is a ReplacingMergeTree on `ReminderState.rank`): a registration repeated after the decision
writes a ``pending`` row that never undoes it. Its notice's id is `reminder_notice_id`, one per message, so a
notice emitted twice (a crash between the emission and its record) is the same notice: the webhook outbox
and the live feed drop the second.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from schemas.errors import PixelpipeError

MIN_AFTER_S: Final = 60  # a minute: anything shorter is not a reminder
MAX_AFTER_S: Final = 90 * 86_400  # 90 days: within every retention a send may have to be decided from
TEST_MIN_AFTER_S: Final = 1  # the lowest floor PIXELPIPE_REMINDER_MIN_AFTER_SECONDS may set (tests, demos)
MAX_AFTER_CHARS: Final = 32

_UNITS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(?:[0-9]{1,7}[smhdw])+")
_PART: Final = re.compile(r"([0-9]{1,7})([smhdw])")


class BadReminder(PixelpipeError, ValueError):
    """A ``remind_if_unopened_after`` that cannot be accepted; the message says why (a 400)."""


def parse_after(text: str, *, min_s: int = MIN_AFTER_S) -> int:
    """The duration ``text`` names, in seconds: one or more ``<number><unit>`` (``s``, ``m``, ``h``, ``d``,
    ``w``), such as ``3d``, ``12h``, ``90m``, ``1d12h``; at least ``min_s`` and at most `MAX_AFTER_S`."""
    value = text.strip().lower()
    if len(value) > MAX_AFTER_CHARS or not _DURATION.fullmatch(value):
        raise BadReminder(
            f"remind_if_unopened_after: {text[:MAX_AFTER_CHARS]!r} is not a duration such as '3d', '12h', "
            "'90m' or '1d12h' (units s, m, h, d, w)"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds < min_s:
        raise BadReminder(f"remind_if_unopened_after: {text!r} is shorter than {_words(min_s)}")
    if seconds > MAX_AFTER_S:
        raise BadReminder(f"remind_if_unopened_after: {text!r} is longer than {_words(MAX_AFTER_S)}")
    return seconds


def _words(seconds: int) -> str:
    for unit, size, name in (("d", 86_400, "day"), ("h", 3_600, "hour"), ("m", 60, "minute")):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {name}{'s' if n != 1 else ''} ({n}{unit})"
    return f"{seconds} second{'s' if seconds != 1 else ''} ({seconds}s)"


def due_at_ms(sent_at_ms: int, after_s: int) -> int:
    return sent_at_ms + after_s * 1000


class ReminderState(enum.Enum):
    """Where a reminder is. ``pending`` until its time; then ``decided`` (the outcome recorded before its
    notice is emitted), then ``sent`` (the notice handed to every sink); or ``opened`` (nothing to send)."""

    PENDING = "pending"
    DECIDED = "decided"
    SENT = "sent"
    OPENED = "opened"

    @property
    def rank(self) -> int:
        """The row's version in the store: a later state always wins over an earlier one."""
        return _RANKS[self]


_RANKS: Final = {
    ReminderState.PENDING: 1,
    ReminderState.DECIDED: 2,
    ReminderState.SENT: 3,
    ReminderState.OPENED: 3,
}

Outcome = str  # "opened", "unknown" or "not_opened"
OPENED: Final = "opened"
UNKNOWN: Final = "unknown"
NOT_OPENED: Final = "not_opened"


@dataclass(frozen=True, slots=True)
class Seen:
    """A message's counted hits received before its reminder was due."""

    human_opens: int = 0
    human_clicks: int = 0  # a person's click: an implied open
    machine_opens: int = 0


def decide(seen: Seen) -> Outcome:
    """What a reminder's time found: `OPENED` (a person's open, or their click), `UNKNOWN` (machine opens
    only) or `NOT_OPENED` (nothing)."""
    if seen.human_opens or seen.human_clicks:
        return OPENED
    if seen.machine_opens:
        return UNKNOWN
    return NOT_OPENED


def reminder_notice_id(account: str, message_id: str) -> str:
    """One reminder notice per message, whoever decides it and however often it is emitted."""
    digest = hashlib.sha256(f"{account}\x1f{message_id}".encode()).hexdigest()[:32]
    return f"rem_{digest}"


REMINDER_COLUMNS: Final = (
    "account", "campaign_id", "message_id", "recipient_tag", "registered_at", "sent_at", "due_at", "state",
    "version", "outcome", "machine_opens", "decided_at",
)  # fmt: skip
