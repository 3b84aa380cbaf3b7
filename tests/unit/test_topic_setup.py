"""`bus.kafka_config.KafkaConfig` names every client of a process, and `bus.topics.TopicSetup` ensures the
topics of its roles in one place: the start-up step retries in the background until they are there, a client
waiting for them joins the attempt under way instead of making its own, and a client whose wait ends before
the broker answers gets the error the edge spools on. (The broker is a stand-in for `ensure_topics` that
counts the calls; `tests/integration/test_topic_retention.py` runs the real one.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from aiokafka.errors import KafkaConnectionError

from bus import topics as topics_mod
from bus.kafka_config import KafkaConfig
from bus.topics import TopicSetup, role_topics
from schemas.backoff import Backoff
from schemas.topics import Topics

TOPICS = Topics()
COMPACTED_AND_ENRICHED = [TOPICS.enriched, TOPICS.privacy, TOPICS.mail_services]


def test_each_client_is_named_after_its_role() -> None:
    kafka = KafkaConfig("127.0.0.1:9092")
    assert [kafka.client(role) for role in ("edge", "processor", "privacy-feed")] == [
        "pixelpipe-edge",
        "pixelpipe-processor",
        "pixelpipe-privacy-feed",
    ]


@pytest.mark.parametrize(("partitions", "replication"), [(0, 1), (1, 0)])
def test_a_config_without_partitions_or_replicas_is_refused(partitions: int, replication: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        KafkaConfig("127.0.0.1:9092", partitions=partitions, replication_factor=replication)


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (
            {"edge"},
            [*(TOPICS.raw_hits, TOPICS.dead_letter, TOPICS.deliveries), *COMPACTED_AND_ENRICHED],
        ),
        (
            {"process"},
            [*(TOPICS.raw_hits, TOPICS.dead_letter, TOPICS.deliveries), *COMPACTED_AND_ENRICHED],
        ),
        ({"api"}, COMPACTED_AND_ENRICHED),
    ],
)
def test_the_topics_of_the_roles(roles: set[str], expected: list[str]) -> None:
    assert role_topics(TOPICS, roles) == expected


class _Broker:
    """Answers ``ensure_topics``: away for the first ``away`` calls, each taking ``delay_s``."""

    def __init__(self, away: int, delay_s: float = 0.0) -> None:
        self.away = away
        self.delay_s = delay_s
        self.calls: list[tuple[list[str], int]] = []

    async def __call__(
        self, kafka: KafkaConfig, names: Iterable[str], *, partitions: int, **_: object
    ) -> list[str]:
        self.calls.append((list(names), partitions))
        await asyncio.sleep(self.delay_s)
        if len(self.calls) <= self.away:
            raise KafkaConnectionError("no broker")
        return []


def _setup(monkeypatch: pytest.MonkeyPatch, broker: _Broker) -> TopicSetup:
    monkeypatch.setattr(topics_mod, "ensure_topics", broker)
    kafka = KafkaConfig("127.0.0.1:9092", partitions=3)
    return TopicSetup(kafka, TOPICS, role_topics(TOPICS, {"api"}), backoff=Backoff(0.01, 0.02))


async def test_the_start_up_step_retries_until_the_topics_are_there(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _Broker(away=2)
    setup = _setup(monkeypatch, broker)
    setup.start()
    async with asyncio.timeout(5):
        while not setup.done:  # noqa: ASYNC110 - the step has nothing to wait on from outside
            await asyncio.sleep(0.005)
    # three tries of the enriched topic (the config's partitions), then the compacted topics (one partition)
    assert broker.calls == [([TOPICS.enriched], 3)] * 3 + [([TOPICS.privacy, TOPICS.mail_services], 1)]
    await setup.ready()  # at once: nothing more is asked
    assert len(broker.calls) == 4
    await setup.stop()


async def test_a_client_joins_the_attempt_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _Broker(away=0, delay_s=0.05)
    setup = _setup(monkeypatch, broker)
    await asyncio.gather(setup.ready(), setup.ready(), setup.ready())
    assert broker.calls == [([TOPICS.enriched], 3), ([TOPICS.privacy, TOPICS.mail_services], 1)]


async def test_a_client_that_cannot_wait_gets_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _setup(monkeypatch, _Broker(away=1))
    with pytest.raises(KafkaConnectionError):
        await setup.ready()
    slow = _setup(monkeypatch, _Broker(away=0, delay_s=1.0))
    with pytest.raises(TimeoutError):
        await slow.ready(timeout_s=0.05)
    assert not slow.done
    await slow.stop()
