"""Filtered hits: hits counted nowhere (verdicts ``bot`` and ``invalid``), as every answer that reports them
says them. One shaper, `tally`, for the message stats, the campaign stats and summary, and
``/v1/campaigns/{id}/filtered``.

Two sources feed it, by what the answer is about: a message's filtered hits are read from ``filtered_hits``
by its index (`filtered_breakdown`), a campaign's from the rollups (`api.sql.campaigns.campaign_hits`); both
give rows ``(kind, verdict, reason, hits)``. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from api.sql.common import Query

FILTERED_VERDICTS = ("bot", "invalid")


def filtered_breakdown(db: str, account: str, campaign_id: str, message_id: str | None = None) -> Query:
    where = "account = {account:String} AND campaign_id = {campaign_id:String}"
    parameters: dict[str, Any] = {"account": account, "campaign_id": campaign_id}
    if message_id is not None:
        where += " AND message_id = {message_id:String}"
        parameters["message_id"] = message_id
    return Query(
        f"""SELECT kind, verdict, reason, uniqExact(hit_id) AS hits
            FROM {db}.filtered_hits WHERE {where}
            GROUP BY kind, verdict, reason ORDER BY hits DESC, reason""",
        parameters,
    )


def _most_first(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True)
class Filtered:
    """Filtered hits of a message or campaign, and its machine opens by reason."""

    bot_clicks: int
    bot_opens: int
    by_reason: dict[str, int]  # filtered hits per reason, most first
    listed: list[dict[str, Any]]  # per (kind, verdict, reason), most first
    machine_opens_by_reason: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The answer of ``/v1/campaigns/{id}/filtered`` (without its campaign id)."""
        return {
            "filtered": self.listed,
            "filtered_total": sum(f["hits"] for f in self.listed),
            "machine_opens_by_reason": self.machine_opens_by_reason,
            "machine_opens": sum(self.machine_opens_by_reason.values()),
        }


def tally(rows: Iterable[tuple[Any, ...]]) -> Filtered:
    """Rows ``(kind, verdict, reason, hits)`` (counted hits too: they are left out) as `Filtered`."""
    bot: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    machine: Counter[str] = Counter()
    listed = []
    for kind, verdict, reason, n in rows:
        if verdict in FILTERED_VERDICTS:
            listed.append({"kind": kind, "verdict": verdict, "reason": reason, "hits": int(n)})
            by_reason[reason] += int(n)
            if verdict == "bot":
                bot[kind] += int(n)
        elif verdict == "machine" and kind == "open":
            machine[reason] += int(n)
    listed.sort(key=lambda f: (-f["hits"], f["verdict"], f["reason"], f["kind"]))
    return Filtered(bot["click"], bot["open"], _most_first(by_reason), listed, _most_first(machine))


def shape_filtered(hit_rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """Filtered hits (bot, invalid) by verdict and reason, and machine opens by reason."""
    return tally(hit_rows).as_dict()
