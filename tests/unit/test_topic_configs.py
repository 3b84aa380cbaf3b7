"""What each Kafka topic keeps and for how long (`schemas.topics`), read from the settings, and the plan for
bringing an existing topic's configs into line (`bus.topics`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.topics import altered_configs, config_changes
from pixelpipe.settings import load
from schemas.topics import TopicRetention, Topics
from tests.settings_env import refusal

HOUR = 3_600_000


def test_every_topic_has_an_explicit_retention_by_default() -> None:
    assert Topics().configs() == {
        "pixelpipe.hits.raw": {
            "cleanup.policy": "delete",
            "retention.ms": "259200000",
            "segment.ms": "3600000",
        },
        "pixelpipe.hits.dead": {
            "cleanup.policy": "delete",
            "retention.ms": "604800000",
            "segment.ms": "3600000",
        },
        "pixelpipe.hits.enriched": {
            "cleanup.policy": "delete",
            "retention.ms": "86400000",
            "segment.ms": "3600000",
        },
        "pixelpipe.deliveries": {
            "cleanup.policy": "delete",
            "retention.ms": "259200000",
            "segment.ms": "3600000",
        },
        "pixelpipe.privacy": {
            "cleanup.policy": "compact",
            "segment.ms": "86400000",
            "max.compaction.lag.ms": "604800000",
            "delete.retention.ms": "86400000",
        },
        "pixelpipe.mail-services": {
            "cleanup.policy": "compact",
            "segment.ms": "86400000",
            "max.compaction.lag.ms": "604800000",
            "delete.retention.ms": "86400000",
        },
    }


def test_a_retention_shorter_than_an_hour_rolls_segments_as_often() -> None:
    configs = Topics.with_prefix("p", TopicRetention(raw_hours=1)).configs()
    assert configs["p.pixelpipe.hits.raw"] == {
        "cleanup.policy": "delete",
        "retention.ms": str(HOUR),
        "segment.ms": str(HOUR),
    }


def test_the_settings_choose_the_retention(tmp_path: Path) -> None:
    s = load(
        {
            "PIXELPIPE_DATA_DIR": str(tmp_path),
            "PIXELPIPE_KAFKA_RAW_RETENTION_HOURS": "24",
            "PIXELPIPE_KAFKA_DEAD_LETTER_RETENTION_HOURS": "720",
            "PIXELPIPE_KAFKA_ENRICHED_RETENTION_HOURS": "6",
        }
    )
    assert s.kafka_retention == TopicRetention(raw_hours=24, dead_letter_hours=720, enriched_hours=6)
    assert load({"PIXELPIPE_DATA_DIR": str(tmp_path)}).kafka_retention == TopicRetention(72, 168, 24)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PIXELPIPE_KAFKA_RAW_RETENTION_HOURS", "0"),
        ("PIXELPIPE_KAFKA_RAW_RETENTION_HOURS", "721"),
        ("PIXELPIPE_KAFKA_RAW_RETENTION_HOURS", "3d"),
        ("PIXELPIPE_KAFKA_DEAD_LETTER_RETENTION_HOURS", "2161"),
        ("PIXELPIPE_KAFKA_ENRICHED_RETENTION_HOURS", "-1"),
    ],
)
def test_a_retention_out_of_range_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    refusal(tmp_path, variable, value, base={})


def test_only_configs_that_differ_are_changes() -> None:
    wanted = {"cleanup.policy": "delete", "retention.ms": "259200000", "segment.ms": "3600000"}
    current = {"cleanup.policy": "delete", "retention.ms": "604800000", "segment.ms": "604800000", "x": "1"}
    assert config_changes(wanted, current) == {
        "retention.ms": ("604800000", "259200000"),
        "segment.ms": ("604800000", "3600000"),
    }
    assert config_changes(wanted, {**current, **wanted}) == {}
    assert config_changes({"max.compaction.lag.ms": "1"}, {}) == {"max.compaction.lag.ms": (None, "1")}


def test_an_alteration_keeps_what_was_set_on_the_topic_and_puts_ours_over_it() -> None:
    on_topic = {"min.insync.replicas": "2", "retention.ms": "604800000"}
    wanted = {"retention.ms": "259200000", "segment.ms": "3600000"}
    assert altered_configs(wanted, on_topic) == {
        "min.insync.replicas": "2",
        "retention.ms": "259200000",
        "segment.ms": "3600000",
    }
