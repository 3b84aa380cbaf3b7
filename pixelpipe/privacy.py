"""How privacy changes reach every part of one process: the wiring of do-not-track and erasure.

Every process that can see a hit or a notice holds a `schemas.suppression.DoNotTrack`. In one process (no
Kafka) the API changes it directly and purges the notice path directly. With Kafka the API also publishes each
change to the privacy topic (`bus.privacy_feed.PrivacyPublisher`) and every process follows that topic
(`PrivacyFeed`): edges have no store and learn do-not-track only there; processors, webhook dispatchers and
API processes (their live feed) also purge an erased recipient's notification state (`notices.erasure`).
Processes with a store keep reloading it as well (`pixelpipe.app`).

Holds no business logic: it picks the pieces for the roles and hands them to each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api.engagement_backfill import EngagementBackfill
from api.export_jobs import ExportJobs
from api.privacy import PrivacyPropagation
from notices.erasure import NotificationEraser, without_suppressed
from notices.wiring import Notifications
from schemas.privacy_change import PrivacyChange
from schemas.suppression import DoNotTrack

if TYPE_CHECKING:
    from bus.privacy_feed import PrivacyFeed, PrivacyPublisher
    from bus.topics import TopicSetup


@dataclass
class PrivacyWiring:
    """This process's part in privacy changes. ``notifications`` is read at each use (tests replace it)."""

    do_not_track: DoNotTrack
    notifications: Callable[[], Notifications | None]
    feed: PrivacyFeed | None = None
    publisher: PrivacyPublisher | None = None
    exports: ExportJobs | None = None  # the API role's export files: an account's go with any erasure in it
    # The engagement backfill running in this process: an erasure meanwhile is erased again at its end.
    engagement_backfill: EngagementBackfill | None = None

    def readiness(self) -> dict[str, bool]:
        """Not ready until the privacy topic has been read to where it ended at start."""
        return {"privacy": self.feed.caught_up} if self.feed is not None else {}

    def state(self) -> dict[str, Any] | None:
        return self.feed.state() if self.feed is not None else None

    def hold_back_suppressed(self) -> None:
        """Notices of recipients suppressed after their hit was stored go nowhere (call before starting the
        notice path)."""
        n = self.notifications()
        if n is None:
            return
        if n.hub is not None:
            n.hub.sinks = [without_suppressed(sink, self.do_not_track) for sink in n.hub.sinks]
        for consumer in n.consumers:  # `notices.kafka.NoticeConsumer`s: the dispatcher, the live tail
            handler = getattr(consumer, "handler", None)
            if handler is not None:
                consumer.handler = without_suppressed(handler, self.do_not_track)  # type: ignore[attr-defined]

    async def start(self) -> None:
        if self.publisher is not None:
            await self.publisher.start()
        if self.feed is not None:
            await self.feed.start()

    async def stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self.publisher is not None:
            await self.publisher.stop()

    def propagation(self) -> PrivacyPropagation:
        """What the API's privacy handlers do beyond the store and this process's set."""
        return PrivacyPropagation(
            publish=self.publisher.send_blocking if self.publisher is not None else None,
            erase_notifications=self._erase_now if self._eraser() is not None else None,
            topic=self.publisher.topic if self.publisher is not None else "",
        )

    def _eraser(self) -> NotificationEraser | None:
        n = self.notifications()
        if n is None:
            return None
        lookup = n.hub.lookup if n.hub is not None else None
        if n.dispatcher is None and lookup is None and n.live is None:
            return None
        return NotificationEraser(n.dispatcher, lookup, n.live)

    def _erase_now(self, account: str, tags: Sequence[str], messages: Sequence[str]) -> dict[str, Any]:
        eraser = self._eraser()
        return eraser.erase_now(account, tags, messages) if eraser is not None else {}

    async def on_erased(self, changes: Sequence[PrivacyChange]) -> None:
        """The feed's hook: erased recipients leave this process's notice path, and the export files their
        accounts asked for before the erasure leave its disk (`api.export_jobs`: any may hold them; the
        process that answered the erasure deleted its own already). A later export holds nothing of theirs
        and stays when the feed hands the erasure again, as it does at every start."""
        if self.engagement_backfill is not None:  # kept only while it runs
            for change in changes:
                if change.erased:
                    self.engagement_backfill.erased(change.account, change.recipient_tags)
        eraser = self._eraser()
        if eraser is not None:
            await eraser.erase(changes)
        if self.exports is not None:
            latest: dict[str, int] = {}
            for change in changes:
                if change.erased:
                    latest[change.account] = max(latest.get(change.account, 0), change.at_ms)
            for account, at_ms in sorted(latest.items()):
                asked_by = datetime.fromtimestamp(at_ms / 1000, UTC)
                await asyncio.to_thread(self.exports.erase_account, account, asked_by=asked_by)


def privacy_wiring(
    kafka: TopicSetup | None,
    roles: frozenset[str],
    do_not_track: DoNotTrack,
    notifications: Callable[[], Notifications | None],
) -> PrivacyWiring:
    """``kafka``: the process's Kafka topics (their config and set-up); None: no Kafka."""
    wiring = PrivacyWiring(do_not_track, notifications)
    if kafka is None:
        return wiring
    from bus import privacy_feed  # noqa: PLC0415 - only distributed roles need aiokafka loaded

    config, topics = kafka.kafka, kafka.topics
    if "api" in roles:
        wiring.publisher = privacy_feed.PrivacyPublisher(config, topics, setup=kafka)
    wiring.feed = privacy_feed.PrivacyFeed(
        config, topics, do_not_track, on_erased=wiring.on_erased, setup=kafka
    )
    return wiring
