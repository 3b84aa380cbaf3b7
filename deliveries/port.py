"""The ports between the delivery ingest and what it needs: the bus it publishes to and the directory of the
senders' mail-service accounts it checks requests against. Adapters: `deliveries.bus` (in memory, Kafka) and
`deliveries.directory`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.delivery_events import DeliveryEvent
from schemas.errors import PixelpipeError
from schemas.secret import Secret


class BusUnavailable(PixelpipeError, RuntimeError):
    """The events could not be made durable (bus full or away, spool unwritable): the ingest answers 503 and
    the provider retries. Never raised for an event that was acknowledged."""

    retriable = True


class DeliveryPublisher(Protocol):
    """Publishes delivery events and returns only once they are durable (on the bus, or the edge's spool)."""

    async def start(self) -> None: ...

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        """Durable when it returns; `BusUnavailable` when they could not be made so (nothing half-taken:
        a retry of the whole request is safe, `delivery_id` makes the events it repeats count once)."""
        ...

    def ready(self) -> bool: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MailService:
    """One sender's account at one mail service, as the ingest needs it: which URL is its own and the keys
    its requests are checked with (unsealed, never shown: each a `Secret`)."""

    account: str
    provider: str  # a `schemas.delivery_events.Provider`
    ingest_id: str  # the unguessable part of its ingest URL
    # by provider: sendgrid {"public_key"}, mailgun {"signing_key"}, postmark and report {"username",
    # "password"}, generic {"secret"}, ses {} (SNS signs with Amazon's certificates)
    credentials: Mapping[str, Secret] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # not secret: ses {"topic_arns": [...]}


class MailServiceDirectory(Protocol):
    """The mail-service accounts the edge knows, by the ingest id of their URL."""

    def find(self, ingest_id: str) -> MailService | None: ...
