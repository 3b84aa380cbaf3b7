"""Kafka topics: their names and what each keeps, for how long. One place, so the edge, the processors and the
tests agree, and so retention is decided where the topics are defined (`bus.topics.ensure_topics`
creates them with these configs and brings existing ones into line).

Hits carry personal data on their way through Kafka: the raw and dead-letter topics hold full client addresses
and user agents, the enriched topic holds recipients' addresses in plain text (webhook and live-feed notices).
So no topic keeps the broker's default retention: each says how long a record may stay, and its segments roll
every hour so that deletion is not held back by a segment that is still open (Kafka deletes whole segments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class TopicRetention:
    """How long each delete-policy topic keeps a record, in hours (``PIXELPIPE_KAFKA_*_RETENTION_HOURS``).

    raw: long enough to ride out processors that are down over a weekend, short enough that client addresses
    do not pile up; deliveries (the mail services' events, with recipients' addresses) likewise. dead letter:
    a week to look at what could not be processed. enriched: a day, enough for a webhook dispatcher that was
    away to catch up (its outbox then holds the notices)."""

    raw_hours: int = 72
    dead_letter_hours: int = 168
    enriched_hours: int = 24
    deliveries_hours: int = 72


def deleting_after(hours: int) -> dict[str, str]:
    """Configs of a topic whose records are deleted ``hours`` after they were written (at most an hour later:
    the segment then rolls, plus the broker's retention check, 5 minutes by default)."""
    retention_ms = hours * HOUR_MS
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms),
        "segment.ms": str(min(retention_ms, HOUR_MS)),
    }


# The privacy topic is the suppression list on Kafka: each recipient's newest state must stay for ever (a
# process reads the topic from its beginning at every start), so it is compacted, never deleted by age. It
# holds keyed tags, never an address. Superseded states go: segments roll daily and any record becomes
# compactable within 7 days; a tombstone (pixelpipe writes none) stays a day for readers to see it.
PRIVACY_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": str(DAY_MS),
    "max.compaction.lag.ms": str(7 * DAY_MS),
    "delete.retention.ms": str(DAY_MS),
}
# The mail-services topic is the edges' directory of the senders' mail-service accounts on Kafka, kept the
# same way: each account's newest config for ever (a deletion is a record too), superseded ones compacted
# away. Credentials travel sealed (`schemas.mail_services`).
MAIL_SERVICES_CONFIGS = dict(PRIVACY_CONFIGS)


@dataclass(frozen=True, slots=True)
class Topics:
    raw_hits: str = "pixelpipe.hits.raw"
    dead_letter: str = "pixelpipe.hits.dead"
    enriched: str = "pixelpipe.hits.enriched"
    privacy: str = "pixelpipe.privacy"  # compacted: do-not-track and erasures (`schemas.privacy_change`)
    deliveries: str = "pixelpipe.deliveries"  # the mail services' events (`schemas.delivery_events`)
    mail_services: str = "pixelpipe.mail-services"  # compacted: the accounts (`schemas.mail_services`)
    retention: TopicRetention = field(default_factory=TopicRetention)

    @classmethod
    def with_prefix(cls, prefix: str, retention: TopicRetention | None = None) -> Topics:
        """Fresh topic names (tests give each case its own)."""
        base = cls()
        return cls(
            raw_hits=f"{prefix}.{base.raw_hits}",
            dead_letter=f"{prefix}.{base.dead_letter}",
            enriched=f"{prefix}.{base.enriched}",
            privacy=f"{prefix}.{base.privacy}",
            deliveries=f"{prefix}.{base.deliveries}",
            mail_services=f"{prefix}.{base.mail_services}",
            retention=retention or TopicRetention(),
        )

    def configs(self) -> dict[str, dict[str, str]]:
        """Every topic's configs, by name: what `ensure_topics` creates it with and keeps it at."""
        return {
            self.raw_hits: deleting_after(self.retention.raw_hours),
            self.dead_letter: deleting_after(self.retention.dead_letter_hours),
            self.enriched: deleting_after(self.retention.enriched_hours),
            self.privacy: dict(PRIVACY_CONFIGS),
            self.deliveries: deleting_after(self.retention.deliveries_hours),
            self.mail_services: dict(MAIL_SERVICES_CONFIGS),
        }
