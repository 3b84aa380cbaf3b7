"""Verdicts: what the classifier says a hit was, and the machine-readable reasons it may give."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Verdict(StrEnum):
    HUMAN = "human"  # counts in opens / clicks
    MACHINE = "machine"  # a machine open on the reader's side (prefetch): machine_opens only
    BOT = "bot"  # crawlers, scripts, headless browsers, link scanners: neither; bot clicks reported
    INVALID = "invalid"  # the token did not verify: never counted

    @property
    def counted(self) -> bool:
        """Counted events go to the events table; the rest are filtered hits, stored with their reason."""
        return self in (Verdict.HUMAN, Verdict.MACHINE)


# The machine-open reasons that are Apple Mail Privacy Protection's prefetch (`processors.classify`'s rules
# apple_mpp and apple_mpp_asn): a message whose only opens have one of them says nothing of its reader (the
# MPP-adjusted open rate leaves it out, `api.sql.open_rates`).
MPP_REASONS: Final = ("apple_mpp", "apple_mpp_asn")


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    reason: str
    via_proxy: bool = False
