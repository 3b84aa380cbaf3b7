"""Which process decides reminders on Kafka: the lease (issue 20).

Every process with the processor role runs a `notices.reminders.ReminderScheduler`; only the lease holder's
makes passes. The lease is Kafka's own group protocol: each such process joins the group
``pixelpipe-reminders`` (``PREFIX.pixelpipe-reminders`` under ``PIXELPIPE_TOPIC_PREFIX``) on the privacy
topic, which has exactly one partition, and the member assigned that partition holds the lease. A process
that stops leaves the group (the partition moves at once); one that dies loses it after the session timeout
(10 s). The consumer never commits and reads only what is published after it joined (the privacy topic's
records are few and small; they are dropped). A rebalance may leave two processes deciding for a moment:
the notices they emit have the same ids and are dropped downstream (`notices.reminders`).

Must never read or commit offsets that anyone else relies on: its group is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bus.kafka_config import KafkaConfig
from bus.topics import TopicSetup
from schemas.topics import Topics

log = logging.getLogger(__name__)

REMINDER_GROUP = "pixelpipe-reminders"


def reminder_group(topic_prefix: str = "") -> str:
    """The reminder deciders' group: per pipeline, like the topics."""
    return f"{topic_prefix}.{REMINDER_GROUP}" if topic_prefix else REMINDER_GROUP


class ReminderLease:
    """Membership of `reminder_group` on the privacy topic; `held` while this member has its partition."""

    def __init__(
        self, kafka: KafkaConfig, topics: Topics, *, group_id: str, setup: TopicSetup | None = None
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.group_id = group_id
        self._setup = setup or TopicSetup(kafka, topics, [topics.privacy])
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def held(self) -> bool:
        consumer = self._consumer
        return consumer is not None and bool(consumer.assignment())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pixelpipe-reminder-lease")

    async def _run(self) -> None:
        await self._setup.ready()
        consumer = self.kafka.consumer("reminders", group_id=self.group_id, auto_offset_reset="latest")
        consumer.subscribe([self.topics.privacy])
        await consumer.start()
        self._consumer = consumer
        while True:  # polling keeps the membership (max.poll.interval); the records are not ours to read
            try:
                await consumer.getmany(timeout_ms=1000, max_records=100)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: the group protocol sorts membership out again
                log.warning("reminder lease: %s", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group: another member takes the lease at once
