"""Kafka topic names. One place, so the edge, the processors and the tests agree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    raw_hits: str = "pixelpipe.hits.raw"
    dead_letter: str = "pixelpipe.hits.dead"
    enriched: str = "pixelpipe.hits.enriched"
    privacy: str = "pixelpipe.privacy"  # compacted: do-not-track and erasures (`schemas.privacy_change`)

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """Fresh topic names (tests give each case its own)."""
        base = cls()
        return cls(
            raw_hits=f"{prefix}.{base.raw_hits}",
            dead_letter=f"{prefix}.{base.dead_letter}",
            enriched=f"{prefix}.{base.enriched}",
            privacy=f"{prefix}.{base.privacy}",
        )
