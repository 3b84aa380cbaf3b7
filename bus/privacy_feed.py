"""Privacy changes on Kafka: the API publishes them (`PrivacyPublisher`); every process keeps its do-not-track
set in step with them (`PrivacyFeed`).

The ``privacy`` topic is compacted, one partition, keyed by recipient (`schemas.privacy_change`). The feed
reads it without a consumer group, from the beginning at every start, applies each record to the process's
`schemas.suppression.DoNotTrack` in order, and then keeps tailing it. It is caught up once it has read up to
the end offsets the topic had when it started; until then the process is not ready (``/readyz``). Erasures go
on to ``on_erased`` (the webhook outbox, the message cache and the live feed forget the recipient): while
catching up only those whose newest record is still an erasure, so a replay never purges what a later opt-in
made.

Never carries a plain address; never commits offsets; never stops on a malformed record (logged, counted,
skipped). A broker that is away at start is retried with backoff (`schemas.backoff`), in the background: a
process starts without it (an edge keeps answering, its spool keeps hits), and stays not ready until the feed
has caught up. The privacy topic is ensured through the process's `bus.topics.TopicSetup`. The machinery of
a followed compacted topic is `bus.compacted_topic`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from bus.compacted_topic import CompactedFeed, CompactedPublisher, FeedMetrics
from bus.kafka_config import KafkaConfig
from bus.topics import TopicSetup
from schemas.backoff import Backoff, Retry
from schemas.errors import retriable
from schemas.privacy_change import (
    MalformedPrivacyChange,
    PrivacyChange,
    PrivacyNotPublished,
    decode_privacy_change,
    encode_privacy_change,
)
from schemas.suppression import DoNotTrack
from schemas.topics import Topics

log = logging.getLogger(__name__)

PRIVACY_METRICS = FeedMetrics(
    records=Counter("pixelpipe_privacy_changes_total", "Privacy changes read from the privacy topic"),
    malformed=Counter("pixelpipe_privacy_malformed_total", "Records on the privacy topic that are not"),
    caught_up=Gauge("pixelpipe_privacy_caught_up", "1 once the privacy topic was read to its end"),
)

ErasureHook = Callable[[Sequence[PrivacyChange]], Awaitable[None]]


def privacy_topic(kafka: KafkaConfig, topics: Topics) -> TopicSetup:
    """The privacy topic alone, for a publisher or a feed not given the process's `TopicSetup`."""
    return TopicSetup(kafka, topics, [topics.privacy])


class PrivacyPublisher(CompactedPublisher):
    """The API's producer of privacy changes (idempotent, ``acks=all``)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        *,
        setup: TopicSetup | None = None,
        send_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(
            kafka,
            topics.privacy,
            setup or privacy_topic(kafka, topics),
            client="privacy",
            not_published=PrivacyNotPublished,
            send_timeout_s=send_timeout_s,
        )

    async def send(self, change: PrivacyChange) -> None:
        """Returns once the broker has the change; raises `PrivacyNotPublished` after ``send_timeout_s``."""
        await self.send_record(change.key, encode_privacy_change(change))

    def send_blocking(self, change: PrivacyChange) -> None:
        """`send` from a worker thread (the API's sync handlers); never call it on the event loop."""
        self.send_record_blocking(change.key, encode_privacy_change(change))


class PrivacyFeed:
    """Keeps ``do_not_track`` in step with the privacy topic (read from the beginning, then tailed)."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        do_not_track: DoNotTrack,
        *,
        on_erased: ErasureHook | None = None,
        setup: TopicSetup | None = None,
        max_records: int = 5000,
        backoff: Backoff = Backoff(0.5, 10.0),  # noqa: B008 - frozen: one value for every feed
    ) -> None:
        self.topic = topics.privacy
        self.do_not_track = do_not_track
        self.on_erased = on_erased
        self._backoff = backoff
        self._latest_erasures: dict[bytes, PrivacyChange] = {}  # while catching up: newest record per key
        self._feed = CompactedFeed(
            kafka,
            topics.privacy,
            setup or privacy_topic(kafka, topics),
            name="privacy feed",
            client="privacy-feed",
            decode=decode_privacy_change,
            malformed=MalformedPrivacyChange,
            apply=self._apply,
            metrics=PRIVACY_METRICS,
            on_caught_up=self._on_caught_up,
            max_records=max_records,
            backoff=backoff,
        )

    @property
    def caught_up(self) -> bool:
        return self._feed.caught_up

    @property
    def records(self) -> int:
        return self._feed.records

    async def wait_caught_up(self, timeout_s: float) -> bool:
        return await self._feed.wait_caught_up(timeout_s)

    def state(self) -> dict[str, Any]:
        """What ``/readyz`` shows."""
        return {
            "topic": self.topic,
            "caught_up": self.caught_up,
            "records": self.records,
            "suppressed": len(self.do_not_track),
        }

    async def start(self) -> None:
        await self._feed.start()

    async def stop(self) -> None:
        await self._feed.stop()

    async def _apply(self, changes: list[PrivacyChange], caught_up: bool) -> None:
        if changes:
            self.do_not_track.apply((c.tags, not c.tracking) for c in changes)
        if caught_up:
            erased = [c for c in changes if c.erased]
            if erased:
                await self._erased(erased)
            return
        for c in changes:
            self._latest_erasures[c.key] = c

    async def _on_caught_up(self) -> None:
        log.info("privacy feed: caught up (%d records, %d suppressed)", self.records, len(self.do_not_track))
        erased = [c for c in self._latest_erasures.values() if c.erased]
        self._latest_erasures.clear()
        if erased:
            await self._erased(erased)

    async def _erased(self, erased: Sequence[PrivacyChange]) -> None:
        if self.on_erased is None:
            return
        retry = Retry(self._backoff)
        for attempt in range(1, 6):
            try:
                await self.on_erased(erased)
            except Exception as exc:  # the outbox's disk: try a few times; the set is applied already
                if attempt == 5 or not retriable(exc):
                    log.exception("privacy feed: could not purge notifications of %d erasures", len(erased))
                    return
                delay = retry.failed()
                log.warning("privacy feed: purging notifications failed (%r); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            else:
                return
