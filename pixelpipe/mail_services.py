"""How mail-service accounts reach the edges of a deployment: the wiring of the edge's directory and the API's
propagation.

An edge (`deliveries.directory.MailServices`) is fed by what its process has: the store at start when it has
one (`pixelpipe serve`), the API at once on each change when the API runs here, and with Kafka the compacted
mail-services topic (`deliveries.directory_feed`), which a store-less edge reads from its beginning. The API
publishes each change there when Kafka is set. The API never imports `deliveries/`: it is handed plain
callables (`api.mail_services.MailServicePropagation`).

Holds no business logic: it picks the pieces for the roles and hands them to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.mail_services import MailServicePropagation
from deliveries.directory import MailServices, load_mail_services
from schemas.store import Store
from schemas.tokens import Keyring

if TYPE_CHECKING:
    from bus.topics import TopicSetup
    from deliveries.directory_feed import MailServiceFeed, MailServicePublisher


@dataclass
class MailServiceWiring:
    """This process's part in mail-service accounts."""

    directory: MailServices | None = None  # an edge's
    feed: MailServiceFeed | None = None  # an edge's, on Kafka
    publisher: MailServicePublisher | None = None  # the API's, on Kafka

    def readiness(self) -> dict[str, bool]:
        """An edge is not ready until the mail-services topic has been read to where it ended at start."""
        return {"mail_services": self.feed.caught_up} if self.feed is not None else {}

    def state(self) -> dict[str, Any] | None:
        return self.feed.state() if self.feed is not None else None

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

    def propagation(self) -> MailServicePropagation:
        """What the API's mail-service handlers do beyond the store."""
        return MailServicePropagation(
            publish=self.publisher.send_blocking if self.publisher is not None else None,
            apply_here=self.directory.apply_one if self.directory is not None else None,
        )


def mail_service_wiring(
    kafka: TopicSetup | None, roles: frozenset[str], keyring: Keyring, store: Store | None
) -> MailServiceWiring:
    """``kafka``: the process's Kafka topics (their config and set-up); None: no Kafka."""
    wiring = MailServiceWiring()
    if "edge" in roles:
        wiring.directory = MailServices(keyring)
        if store is not None:
            wiring.directory.apply(load_mail_services(store))
    if kafka is None:
        return wiring
    from deliveries.directory_feed import (  # noqa: PLC0415 - only distributed roles need aiokafka loaded
        MailServiceFeed,
        MailServicePublisher,
    )

    topic = kafka.topics.mail_services
    if "api" in roles:
        wiring.publisher = MailServicePublisher(kafka.kafka, topic, kafka)
    if wiring.directory is not None:
        wiring.feed = MailServiceFeed(kafka.kafka, topic, kafka, wiring.directory)
    return wiring
