"""The topics pixelpipe uses, created and kept at the configs `schemas.topics.Topics.configs` decides (applied
to existing topics too), in one place: `TopicSetup`.

The wiring makes one `TopicSetup` per process, for the topics of the roles it runs (`role_topics`), and starts
it with the process: a start-up step retried in the background (`schemas.backoff`) while the broker is away.
The clients that need the topics wait for it (`TopicSetup.ready`), which joins the attempt under way or makes
one, and raises as that attempt does: so an edge whose broker is away at start still starts and spools, and a
consumer's start fails as it always did. Never creates or changes topics other than those it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bus.kafka_config import KafkaConfig
from schemas.backoff import Backoff, retrying
from schemas.topics import Topics

log = logging.getLogger(__name__)

_TOPIC_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS


def role_topics(topics: Topics, roles: Iterable[str]) -> list[str]:
    """The topics a process of ``roles`` uses on Kafka: the privacy topic (every process follows it), the
    enriched one (the processor publishes notices, the dispatcher and the API's live feed read them) and the
    mail-services topic (the API publishes the accounts' configs, every edge follows them); the raw
    and dead-letter topics, and the mail services' delivery events, where hits and delivery events are
    published or processed. (An edge also creates the enriched topic, as it always has: a deployment's topics
    are there as soon as its first role is.)"""
    hits = bool(set(roles) & {"edge", "process"})
    bus = [topics.raw_hits, topics.dead_letter, topics.deliveries] if hits else []
    return [*bus, topics.enriched, topics.privacy, topics.mail_services]


class TopicSetup:
    """The topics of one process, ensured (created, configs brought into line) until it succeeds once.

    `start` is the process's start-up step: it tries in the background, with ``backoff`` between failures,
    until the topics are there. `ready` is what a client awaits before it needs them: at once when they are
    there, else it joins the attempt under way (or makes one) and raises what that attempt raises
    (`KafkaError`, `OSError`, `TimeoutError`), after at most its ``timeout_s``. The privacy topic gets one
    partition (a recipient's records stay in order across a key rotation), so does the mail-services topic
    (a small state every edge reads whole), the others the config's."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Topics,
        names: Iterable[str],
        *,
        timeout_s: float = 10.0,
        backoff: Backoff = Backoff(0.5, 10.0),  # noqa: B008 - frozen: one value for every setup
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.names = tuple(names)
        self.timeout_s = timeout_s
        self.backoff = backoff
        self._done = False
        self._attempt: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self._done

    async def ready(self, timeout_s: float | None = None) -> None:
        """Returns once the topics are there (see the class docstring)."""
        if self._done:
            return
        attempt = self._attempt
        if attempt is None or attempt.done():
            attempt = self._attempt = asyncio.ensure_future(self._ensure())
            attempt.add_done_callback(_retrieve)  # a caller that timed out no longer looks at it
        await asyncio.wait_for(asyncio.shield(attempt), self.timeout_s if timeout_s is None else timeout_s)

    def start(self) -> None:
        """The start-up step: ensure the topics in the background, retrying until they are there. A failure
        no retry can fix (`schemas.errors.retriable`) ends it, logged; clients then meet it in `ready`."""
        if self._task is None and not self._done:
            self._task = asyncio.create_task(self._until_ready(), name="pixelpipe-topic-setup")

    async def stop(self) -> None:
        for task in (self._task, self._attempt):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    async def _until_ready(self) -> None:
        try:
            await retrying(
                self.ready, what=f"creating topics {list(self.names)}", backoff=self.backoff, log=log
            )
        except Exception:
            log.exception("cannot create topics %s; the clients that need them will try again", self.names)

    async def _ensure(self) -> None:
        configs = self.topics.configs()
        single = (self.topics.privacy, self.topics.mail_services)  # one partition each
        one = [name for name in self.names if name in single]
        others = [name for name in self.names if name not in single]
        if others:
            await ensure_topics(
                self.kafka,
                others,
                partitions=self.kafka.partitions,
                configs=configs,
                timeout_s=self.timeout_s,
            )
        if one:
            await ensure_topics(self.kafka, one, partitions=1, configs=configs, timeout_s=self.timeout_s)
        self._done = True


def _retrieve(attempt: asyncio.Future[None]) -> None:
    if not attempt.cancelled():
        attempt.exception()  # marked as retrieved: asyncio would log it as never looked at


async def ensure_topics(
    kafka: KafkaConfig,
    names: Iterable[str],
    *,
    partitions: int,
    timeout_s: float = 10.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, each with its ``configs`` (by name; `Topics.configs`), and
    bring the configs of those that exist into line (retention set by hand or by an older version is
    replaced: these settings are where it is decided). Returns the topics created. Failing to create raises
    `KafkaError`; failing to change an existing topic's configs (a broker that forbids it) is logged, since
    the topic still works."""
    wanted = {name: dict((configs or {}).get(name, {})) for name in names}
    replication_factor = kafka.replication_factor
    admin = kafka.admin(timeout_s)
    created: list[str] = []
    async with asyncio.timeout(timeout_s):
        await admin.start()
        try:
            new = [
                NewTopic(name, partitions, replication_factor, topic_configs=topic_configs)
                for name, topic_configs in wanted.items()
            ]
            try:
                response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                response = None
            for error in response.topic_errors if response is not None else ():
                name, code = error[0], error[1]
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_EXISTS:
                    raise KafkaError(f"creating topic {name} failed: error {code} {error[2:]}")
            existing = {n: c for n, c in wanted.items() if c and n not in created}
            if existing:
                await _align_configs(admin, existing)
        finally:
            await admin.close()
    if created:
        log.info("created topics %s (%d partitions, replication %d)", created, partitions, replication_factor)
    return created


# DescribeConfigs' config_source (v1+): a value set on the topic itself, as opposed to broker or default ones.
_TOPIC_CONFIG_SOURCE: Final = 1


ConfigChanges = dict[str, tuple[str | None, str]]  # config -> (current value or None, wanted value)


def config_changes(wanted: Mapping[str, str], current: Mapping[str, str]) -> ConfigChanges:
    """The configs of ``wanted`` whose value differs from ``current`` (the topic's effective configs)."""
    return {k: (current.get(k), v) for k, v in wanted.items() if current.get(k) != v}


def altered_configs(wanted: Mapping[str, str], set_on_topic: Mapping[str, str]) -> dict[str, str]:
    """The full set of configs to send with AlterConfigs, which replaces every config set on the topic: those
    already set there (say, ``min.insync.replicas`` by an operator) kept, ours over them. (aiokafka has no
    IncrementalAlterConfigs.)"""
    return {**set_on_topic, **wanted}


async def _align_configs(admin: AIOKafkaAdminClient, wanted: Mapping[str, Mapping[str, str]]) -> None:
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
        )
    except KafkaError as exc:
        log.warning("cannot read the configs of topics %s to set their retention: %r", sorted(wanted), exc)
        return
    for response in described:
        for resource in response.resources:
            error_code, error_message, _, name, entries = resource[:5]
            if name not in wanted:
                continue
            if error_code != 0:
                log.warning("cannot read topic %s's configs: error %d %s", name, error_code, error_message)
                continue
            current = {entry[0]: entry[1] for entry in entries}
            changes = config_changes(wanted[name], current)
            if not changes:
                continue
            # v0 has is_default where v1+ has config_source in the same place
            on_topic = {
                entry[0]: entry[1]
                for entry in entries
                if (entry[3] == _TOPIC_CONFIG_SOURCE if response.API_VERSION >= 1 else not entry[3])
                and entry[1] is not None
            }
            await _alter(admin, name, altered_configs(wanted[name], on_topic), changes)


async def _alter(
    admin: AIOKafkaAdminClient,
    name: str,
    configs: Mapping[str, str],
    changes: ConfigChanges,
) -> None:
    shown = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(changes.items()))
    try:
        responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))])
    except KafkaError as exc:
        log.warning("cannot change the configs of topic %s (%s): %r", name, shown, exc)
        return
    for response in responses:
        for error_code, error_message, _, resource_name in response.resources:
            if error_code != 0:
                log.warning(
                    "cannot change the configs of topic %s (%s): error %d %s",
                    resource_name,
                    shown,
                    error_code,
                    error_message,
                )
                return
    log.info("topic %s: configs changed to pixelpipe's (%s)", name, shown)
