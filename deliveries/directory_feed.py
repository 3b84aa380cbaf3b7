"""The edge's directory on Kafka: follows the compacted mail-services topic (`bus.compacted_topic`) into a
`deliveries.directory.MailServices`, from its beginning at every start (an edge has no store), then tails it;
and the API's publisher of the changes. The records carry the credentials sealed: each edge opens them with
``PIXELPIPE_SECRET``'s keyring, which every role has. The edge is not ready (``/readyz`` check
``mail_services``) until the feed has read the topic to where it ended at start.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge

from bus.compacted_topic import CompactedFeed, CompactedPublisher, FeedMetrics
from bus.kafka_config import KafkaConfig
from bus.topics import TopicSetup
from deliveries.directory import MailServices
from schemas.mail_services import (
    MailServiceNotPublished,
    MalformedMailService,
    StoredMailService,
    decode_mail_service,
    encode_mail_service,
)

log = logging.getLogger(__name__)

MAIL_SERVICE_METRICS = FeedMetrics(
    records=Counter("pixelpipe_mail_service_changes_total", "Mail-service changes read from their topic"),
    malformed=Counter(
        "pixelpipe_mail_service_malformed_total", "Records on the mail-services topic that are not"
    ),
    caught_up=Gauge(
        "pixelpipe_mail_services_caught_up", "1 once the mail-services topic was read to its end"
    ),
)


class MailServicePublisher(CompactedPublisher):
    """The API's producer of mail-service changes (idempotent, ``acks=all``), keyed by account, provider."""

    def __init__(
        self, kafka: KafkaConfig, topic: str, setup: TopicSetup, send_timeout_s: float = 5.0
    ) -> None:
        super().__init__(
            kafka,
            topic,
            setup,
            client="mail-services",
            not_published=MailServiceNotPublished,
            send_timeout_s=send_timeout_s,
        )

    def send_blocking(self, stored: StoredMailService) -> None:
        """Returns once the broker has the change (from a worker thread); `MailServiceNotPublished` else."""
        self.send_record_blocking(stored.key, encode_mail_service(stored))


class MailServiceFeed:
    """Keeps ``directory`` in step with the mail-services topic."""

    def __init__(self, kafka: KafkaConfig, topic: str, setup: TopicSetup, directory: MailServices) -> None:
        self.topic = topic
        self.directory = directory
        self._feed = CompactedFeed(
            kafka,
            topic,
            setup,
            name="mail-services feed",
            client="mail-services-feed",
            decode=decode_mail_service,
            malformed=MalformedMailService,
            apply=self._apply,
            metrics=MAIL_SERVICE_METRICS,
            on_caught_up=self._on_caught_up,
        )

    @property
    def caught_up(self) -> bool:
        return self._feed.caught_up

    def state(self) -> dict[str, Any]:
        """What ``/readyz`` shows."""
        return {
            "topic": self.topic,
            "caught_up": self.caught_up,
            "records": self._feed.records,
            "mail_services": len(self.directory),
        }

    async def start(self) -> None:
        await self._feed.start()

    async def stop(self) -> None:
        await self._feed.stop()

    async def _apply(self, changes: list[StoredMailService], caught_up: bool) -> None:
        if changes:
            self.directory.apply(changes)

    async def _on_caught_up(self) -> None:
        log.info("mail-services feed: caught up (%d records, %d mail services)", self._feed.records,
                 len(self.directory))  # fmt: skip
