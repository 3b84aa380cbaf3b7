"""The notice path of one process, assembled: which pieces run for its roles (`in_process` for one process
with the in-process bus; `on_kafka` for the roles of a process on Kafka) and the order they start and stop in
(`Notifications`), so that nothing is lost.

Holds no business logic: it builds the pieces and hands them to each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from notices.attempts import AttemptLog
from notices.directory import WebhookDirectory, store_webhooks
from notices.dispatcher import WebhookDispatcher
from notices.hub import NoticeHub
from notices.live import LiveFeed
from notices.making import MessageLookup, Stored
from notices.retries import RetryPolicy
from processors.reads import StoredRead
from schemas.delivery_events import DeliveryEvent
from schemas.store import Store
from schemas.tokens import Keyring
from schemas.topics import Topics

if TYPE_CHECKING:
    from bus.kafka_config import KafkaConfig
    from bus.topics import TopicSetup


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Notifications:
    """What one process runs of the notice path, started and stopped in the order that loses nothing.

    Start: dispatcher (opens the outbox) → producers → hub → consumers. Stop, after the processor has drained:
    live streams end → the hub hands on what is queued → consumers → dispatcher → producers.
    """

    hub: NoticeHub | None = None
    live: LiveFeed | None = None
    dispatcher: WebhookDispatcher | None = None
    producers: list[Service] = dataclasses.field(default_factory=list)
    consumers: list[Service] = dataclasses.field(default_factory=list)

    def listeners(self) -> list[Callable[[Stored], None]]:
        """What the processor's ``on_stored`` must call."""
        return [self.hub.publish] if self.hub is not None else []

    def read_listeners(self) -> list[Callable[[Sequence[StoredRead]], None]]:
        """What the processor's ``on_reads_stored`` must call with a flush's stored read records (right after
        ``on_stored``; on the event loop, never blocks): `NoticeHub.publish_reads`, whose ``read`` notices
        `durable` covers too."""
        return [self.hub.publish_reads] if self.hub is not None else []

    def delivery_listeners(self) -> list[Callable[[Sequence[DeliveryEvent]], None]]:
        """What the delivery loader's ``on_stored`` must call with the events it stored (on the event loop;
        never blocks): `NoticeHub.publish_deliveries`, whose notices `durable` covers too."""
        return [self.hub.publish_deliveries] if self.hub is not None else []

    def durable(self) -> asyncio.Future[None]:
        """The processor's and the delivery loader's ``notices_durable`` ticket: `NoticeHub.durable`, or
        done at once without a hub."""
        if self.hub is not None:
            return self.hub.durable()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def start(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.start()
        for producer in self.producers:
            await producer.start()
        if self.hub is not None:
            await self.hub.start()
        for consumer in self.consumers:
            await consumer.start()

    async def stop(self) -> None:
        if self.live is not None:
            self.live.close()
        if self.hub is not None:
            await self.hub.stop()
        for consumer in self.consumers:
            await consumer.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        for producer in self.producers:
            await producer.stop()


def in_process(
    store: Store,
    outbox_path: Path,
    *,
    keyring: Keyring,
    allow_private: bool = False,
    policy: RetryPolicy | None = None,
    heartbeat_s: float = 15.0,
    refresh_s: float = 1.0,
) -> Notifications:
    """One process with the in-process bus: the hub feeds the live feed and the dispatcher directly."""
    live = LiveFeed(heartbeat_s=heartbeat_s)
    dispatcher = WebhookDispatcher(
        outbox_path=outbox_path,
        directory=WebhookDirectory(store_webhooks(store, keyring), refresh_s=refresh_s),
        policy=policy,
        attempt_log=AttemptLog(store),
        allow_private=allow_private,
    )
    hub = NoticeHub(lookup=MessageLookup(store), sinks=[live.accept, dispatcher.accept], keyring=keyring)
    return Notifications(hub=hub, live=live, dispatcher=dispatcher)


def on_kafka(
    store: Store | None,
    outbox_path: Path,
    *,
    roles: frozenset[str],
    kafka: KafkaConfig,
    topics: Topics,
    setup: TopicSetup | None,
    topic_prefix: str,
    keyring: Keyring,
    allow_private: bool = False,
) -> Notifications:
    """A process on Kafka: with the processor, the hub publishes to the ``enriched`` topic and the dispatcher
    consumes it as its own group (`notices.kafka.notify_group`) beside the processor; with the API, a
    group-less consumer tails the topic for this process's live feed."""
    from notices import kafka as notice_bus  # noqa: PLC0415 - only distributed roles need aiokafka loaded

    n = Notifications()
    if "process" in roles:
        assert store is not None  # noqa: S101 - the processor role always has a store
        producer = notice_bus.NoticeProducer(kafka, topics, setup=setup)
        n.producers.append(producer)
        n.hub = NoticeHub(lookup=MessageLookup(store), sinks=[producer.send], keyring=keyring)
        n.dispatcher = WebhookDispatcher(
            outbox_path=outbox_path,
            directory=WebhookDirectory(store_webhooks(store, keyring)),
            attempt_log=AttemptLog(store),
            allow_private=allow_private,
        )
        group = notice_bus.notify_group(topic_prefix)
        n.consumers.append(
            notice_bus.NoticeConsumer(kafka, topics, n.dispatcher.accept, group_id=group, setup=setup)
        )
    if "api" in roles:
        n.live = LiveFeed()
        n.consumers.append(
            notice_bus.NoticeConsumer(kafka, topics, n.live.accept, group_id=None, setup=setup)
        )
    return n
