"""The topics pixelpipe uses, created and kept at the configs `schemas.topics.Topics.configs` decides (applied
to existing topics too). Never creates or changes topics other than those it is given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

_TOPIC_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    timeout_s: float = 10.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, each with its ``configs`` (by name; `Topics.configs`), and
    bring the configs of those that exist into line (retention set by hand or by an older version is
    replaced: these settings are where it is decided). Returns the topics created. Failing to create raises
    `KafkaError`; failing to change an existing topic's configs (a broker that forbids it) is logged, since
    the topic still works."""
    wanted = {name: dict((configs or {}).get(name, {})) for name in names}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
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
