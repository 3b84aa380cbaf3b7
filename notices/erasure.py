"""What the notice path forgets of a recipient: the erasure of notification state, and notices of suppressed
recipients held back.

An erased recipient's address is in the webhook outbox (the bodies, kept 24 h after delivery, and pending
ones retried for over an hour), in `notices.making.MessageLookup`'s cache and in the live feed's ring of
recent notices (`Last-Event-ID` resumes); `NotificationEraser` drops all three, found by the recipient's
tags (every notice carries its hit's tag) or, when the caller knows them (the API in the same process), by
message id. `without_suppressed` wraps a notice sink so that a notice of a
recipient who opted out or was erased after the hit was stored (it was on its way: in the hub's queue or on
the ``enriched`` topic) is not delivered after the purge.

In one process the API calls `NotificationEraser.erase_now` directly; in Kafka mode each process with a
dispatcher gets the erasure from the privacy topic (`bus.privacy_feed.PrivacyFeed`, ``on_erased``).
Never touches ClickHouse (the API erases the stored rows).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from notices.dispatcher import WebhookDispatcher
from notices.hub import NoticeSink
from notices.live import LiveFeed
from notices.making import MessageLookup
from schemas.notices import Notice
from schemas.privacy_change import PrivacyChange
from schemas.suppression import DoNotTrack

log = logging.getLogger(__name__)

PURGE_TIMEOUT_S: Final = 10.0


class NotificationEraser:
    """Drops an erased recipient from this process's webhook outbox, message cache and live feed."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher | None,
        lookup: MessageLookup | None,
        live: LiveFeed | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.lookup = lookup
        self.live = live

    def erase_now(
        self, account: str, recipient_tags: Iterable[str], message_ids: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Blocking, from any thread but the event loop's. What was purged: outbox rows (pending, and
        finished: delivered, failed or cancelled), cached messages and live-feed notices."""
        tags = list(recipient_tags)
        purged: dict[str, Any] = {}
        if self.dispatcher is not None:
            states = self.dispatcher.forget(account, tags, message_ids).result(PURGE_TIMEOUT_S)
            pending = states.get("pending", 0)
            purged["webhook_deliveries"] = {"pending": pending, "finished": sum(states.values()) - pending}
        if self.lookup is not None:
            purged["cached_messages"] = self.lookup.forget(account, tags, message_ids)
        if self.live is not None:
            purged["live_notices"] = self.live.forget(account, tags)
        return purged

    async def erase(self, changes: Sequence[PrivacyChange]) -> None:
        """The privacy feed's ``on_erased`` hook: by tags (the topic carries neither address nor messages)."""
        totals: collections.Counter[str] = collections.Counter()
        for change in changes:
            if self.dispatcher is not None:
                future = self.dispatcher.forget(change.account, change.recipient_tags)
                states = await asyncio.wrap_future(future)
                totals.update(states)
            if self.lookup is not None:
                totals["cached_messages"] += self.lookup.forget(change.account, change.recipient_tags)
            if self.live is not None:
                totals["live_notices"] += self.live.forget(change.account, change.recipient_tags)
        if sum(totals.values()):
            log.info("erasure: purged %s for %d erased recipients", dict(totals), len(changes))


def without_suppressed(sink: NoticeSink, do_not_track: DoNotTrack) -> NoticeSink:
    """``sink``, minus the notices of recipients who are suppressed now (opted out or erased)."""

    async def deliver(notices: Sequence[Notice]) -> None:
        kept = [n for n in notices if not (n.recipient_tag and do_not_track.suppressed_hex(n.recipient_tag))]
        if kept:
            await sink(kept)

    deliver.__qualname__ = getattr(sink, "__qualname__", "sink")
    return deliver
