"""Every topic pixelpipe creates on a real broker carries its retention (never the broker's default), and a
topic that already exists is brought into line, keeping what an operator set on it besides."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bus.kafka_config import KafkaConfig
from bus.topics import TopicSetup, ensure_topics
from ingest.kafka_publisher import KafkaPublisher
from notices.kafka import NoticeProducer
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_components
from processors.kafka_source import KafkaSource
from schemas.topics import TopicRetention, Topics

HOUR = 3_600_000
_UNKNOWN_TOPIC = 3  # Kafka error UNKNOWN_TOPIC_OR_PARTITION
KEYS = ("cleanup.policy", "retention.ms", "segment.ms", "max.compaction.lag.ms", "delete.retention.ms")


async def described(bootstrap: str, *names: str) -> dict[str, dict[str, str]]:
    """The effective configs of ``names`` that retention is made of (and ``min.insync.replicas``). A topic
    just created may be unknown to the broker that answers for a moment: asked again until it is known."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    out: dict[str, dict[str, str]] = {}
    try:
        deadline = time.monotonic() + 30
        while len(out) < len(names):
            wanted = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names if n not in out]
            for response in await admin.describe_configs(wanted):
                for code, _, _, name, entries, *_ in response.resources:
                    if code == _UNKNOWN_TOPIC and time.monotonic() < deadline:
                        continue
                    assert code == 0, (code, name)
                    out[name] = {e[0]: e[1] for e in entries if e[0] in (*KEYS, "min.insync.replicas")}
            if len(out) < len(names):
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return out


@pytest.mark.kafka
async def test_the_processor_creates_its_topics_with_their_retention(
    kafka_bootstrap: str, kafka_group: str
) -> None:
    topics = Topics.with_prefix(
        f"ret{kafka_group[2:]}", TopicRetention(raw_hours=5, dead_letter_hours=48, enriched_hours=2)
    )
    source = KafkaSource(KafkaConfig(kafka_bootstrap), topics, kafka_group)
    await source.start()  # creates raw, dead letter and enriched
    await source.stop()
    await TopicSetup(KafkaConfig(kafka_bootstrap), topics, [topics.privacy]).ready()
    configs = await described(
        kafka_bootstrap, topics.raw_hits, topics.dead_letter, topics.enriched, topics.privacy
    )
    assert {name: {k: v for k, v in c.items() if k in KEYS} for name, c in configs.items()} == {
        topics.raw_hits: {
            "cleanup.policy": "delete",
            "retention.ms": str(5 * HOUR),
            "segment.ms": str(HOUR),
            "max.compaction.lag.ms": "9223372036854775807",  # the broker's: not a compacted topic
            "delete.retention.ms": "86400000",
        },
        topics.dead_letter: {
            "cleanup.policy": "delete",
            "retention.ms": str(48 * HOUR),
            "segment.ms": str(HOUR),
            "max.compaction.lag.ms": "9223372036854775807",
            "delete.retention.ms": "86400000",
        },
        topics.enriched: {
            "cleanup.policy": "delete",
            "retention.ms": str(2 * HOUR),
            "segment.ms": str(HOUR),
            "max.compaction.lag.ms": "9223372036854775807",
            "delete.retention.ms": "86400000",
        },
        topics.privacy: {
            "cleanup.policy": "compact",
            "retention.ms": "604800000",  # the broker's default; compaction never deletes by age
            "segment.ms": str(24 * HOUR),
            "max.compaction.lag.ms": str(7 * 24 * HOUR),
            "delete.retention.ms": str(24 * HOUR),
        },
    }


@pytest.mark.kafka
async def test_the_notice_producer_creates_the_enriched_topic_with_its_retention(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    producer = NoticeProducer(KafkaConfig(kafka_bootstrap), kafka_topics)
    await producer.start()
    await producer.stop()
    configs = await described(kafka_bootstrap, kafka_topics.enriched)
    assert configs[kafka_topics.enriched]["retention.ms"] == str(24 * HOUR)  # the default: a day
    assert configs[kafka_topics.enriched]["segment.ms"] == str(HOUR)


@pytest.mark.kafka
async def test_an_existing_topic_is_brought_into_line_and_keeps_the_operators_other_configs(
    kafka_bootstrap: str, kafka_topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    # as an older pixelpipe (or a person) left it: the broker's default retention, one config set by hand
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(kafka_topics.raw_hits, 2, 1, topic_configs={"min.insync.replicas": "1"})]
        )
    finally:
        await admin.close()
    before = await described(kafka_bootstrap, kafka_topics.raw_hits)
    assert before[kafka_topics.raw_hits]["retention.ms"] == "604800000"  # the broker's 7 days

    created = await ensure_topics(
        KafkaConfig(kafka_bootstrap),
        [kafka_topics.raw_hits, kafka_topics.enriched],
        partitions=2,
        configs=kafka_topics.configs(),
    )
    assert created == [kafka_topics.enriched]
    after = await described(kafka_bootstrap, kafka_topics.raw_hits, kafka_topics.enriched)
    assert after[kafka_topics.raw_hits] == {
        "cleanup.policy": "delete",
        "retention.ms": str(72 * HOUR),
        "segment.ms": str(HOUR),
        "max.compaction.lag.ms": "9223372036854775807",
        "delete.retention.ms": "86400000",
        "min.insync.replicas": "1",  # kept
    }
    assert after[kafka_topics.enriched]["retention.ms"] == str(24 * HOUR)

    # A second start finds nothing to change, and a changed setting is applied at the next start.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bus.topics"):
        assert (
            await ensure_topics(
                KafkaConfig(kafka_bootstrap),
                [kafka_topics.raw_hits],
                partitions=2,
                configs=kafka_topics.configs(),
            )
            == []
        )
    assert caplog.records == []
    shorter = TopicRetention(raw_hours=24)
    with caplog.at_level(logging.INFO, logger="bus.topics"):
        await ensure_topics(
            KafkaConfig(kafka_bootstrap),
            [kafka_topics.raw_hits],
            partitions=2,
            configs=Topics.with_prefix(kafka_topics.raw_hits.split(".")[0], shorter).configs(),
        )
    assert [r.getMessage() for r in caplog.records] == [
        f"topic {kafka_topics.raw_hits}: configs changed to pixelpipe's (retention.ms 259200000 -> 86400000)"
    ]
    again = await described(kafka_bootstrap, kafka_topics.raw_hits)
    assert again[kafka_topics.raw_hits]["retention.ms"] == str(24 * HOUR)
    assert again[kafka_topics.raw_hits]["min.insync.replicas"] == "1"


@pytest.mark.kafka
async def test_an_edge_started_from_the_settings_creates_its_topics_with_the_chosen_retention(
    kafka_bootstrap: str, kafka_group: str, tmp_path: Path
) -> None:
    prefix = f"edge{kafka_group[2:]}"
    settings = settings_mod.load(
        {
            "PIXELPIPE_DATA_DIR": str(tmp_path),
            "PIXELPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "PIXELPIPE_TOPIC_PREFIX": prefix,
            "PIXELPIPE_KAFKA_RAW_RETENTION_HOURS": "6",
            "PIXELPIPE_KAFKA_DEAD_LETTER_RETENTION_HOURS": "30",
            "PIXELPIPE_KAFKA_ENRICHED_RETENTION_HOURS": "3",
        }
    )
    components = build_components(settings, frozenset({"edge"}))
    publisher = components.publisher
    assert isinstance(publisher, KafkaPublisher)
    await publisher.start()  # connects and creates the topics while the broker is there
    await publisher.stop()
    topics = Topics.with_prefix(prefix)
    configs = await described(kafka_bootstrap, topics.raw_hits, topics.dead_letter, topics.enriched)
    assert {name: c["retention.ms"] for name, c in configs.items()} == {
        topics.raw_hits: str(6 * HOUR),
        topics.dead_letter: str(30 * HOUR),
        topics.enriched: str(3 * HOUR),
    }
