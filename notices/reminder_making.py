"""Making reminder notices (issue 20): a decided reminder as the notice its webhooks and live feed get. Pure.

Its id is `schemas.reminders.reminder_notice_id` (one per message), its type the outcome (``not_opened`` or
``unknown``), ``at_ms`` when it was due, ``created_at_ms`` when it was decided (recorded with the decision,
so a notice emitted again after a crash is the same notice, byte for byte). Its recipient is filled as a
hit's is (`notices.making.MessageLookup`, from ``sends``); its tag is the one registration stored, so
do-not-track and erasure find it as they find a hit's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from schemas.notices import Notice, NoticeType
from schemas.reminders import reminder_notice_id


@dataclass(frozen=True, slots=True)
class DueReminder:
    """One row of ``reminders`` as the scheduler reads it (times in epoch milliseconds)."""

    account: str
    campaign_id: str
    message_id: str
    recipient_tag: str
    registered_at_ms: int
    sent_at_ms: int
    due_at_ms: int
    state: str
    outcome: str = ""  # a decided one's: not_opened or unknown
    machine_opens: int = 0
    decided_at_ms: int = 0


def reminder_notice(due: DueReminder) -> Notice:
    """The notice of a decided reminder (``outcome`` not_opened or unknown); a hit's and a delivery's fields
    keep their empty defaults (few notices: the plain constructor, not the hot path's)."""
    return Notice(
        id=reminder_notice_id(due.account, due.message_id),
        type=cast(NoticeType, due.outcome),
        account=due.account,
        campaign_id=due.campaign_id,
        message_id=due.message_id,
        at_ms=due.due_at_ms,
        created_at_ms=due.decided_at_ms,
        verdict="",
        reason="",
        sent_at_ms=due.sent_at_ms,
        recipient_tag=due.recipient_tag,
        registered_at_ms=due.registered_at_ms,
        machine_opens=due.machine_opens,
    )
