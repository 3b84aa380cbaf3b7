"""A campaign's breakdowns: opens and clicks per country, mail client, device type or OS, and clicks per
link (destination URL), read from the rollups. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from api.sql.common import CAMPAIGN_SCOPE, Query
from api.sql.exact import ROLLUP_KEYS, ExactRead

Dimension = Literal["country", "client", "device", "os"]


def breakdown(db: str, account: str, campaign_id: str, by: Dimension, *, include_machine: bool) -> ExactRead:
    """Distinct hits and messages of a campaign per value of one dimension, by kind."""
    verdicts = "('human', 'machine')" if include_machine else "('human')"
    return ExactRead(
        f"{db}.rollups",
        f"{CAMPAIGN_SCOPE} AND rollup = {{dimension:String}} AND who IN {verdicts}",
        # Without machine opens `who` is fixed, so each (kind, label, bucket) is one row once merged; with
        # them, the human and machine rows of a key are unioned (a message opened by both counts once).
        keys=("kind", "label", "at", "bucket"),
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id, "dimension": by},
        out=(("value", "label"), ("kind", "kind")),
    )


def breakdowns(
    db: str, account: str, campaign_id: str, dimensions: Sequence[Dimension], include_machine: bool
) -> ExactRead:
    """`breakdown` of several dimensions in one read: rows ``(dimension, value, kind, hits, messages)``;
    split them with `shape_breakdowns`. Each dimension's keys are `breakdown`'s, under its own ``rollup``,
    so its numbers are the same."""
    verdicts = "('human', 'machine')" if include_machine else "('human')"
    return ExactRead(
        f"{db}.rollups",
        f"{CAMPAIGN_SCOPE} AND `rollup` IN {{dimensions:Array(String)}} AND who IN {verdicts}",
        keys=("`rollup`", "kind", "label", "at", "bucket"),
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id, "dimensions": list(dimensions)},
        out=(("dimension", "`rollup`"), ("value", "label"), ("kind", "kind")),
    )


def shape_breakdowns(
    rows: Iterable[tuple[Any, ...]], dimensions: Sequence[Dimension]
) -> dict[str, list[dict[str, Any]]]:
    """`breakdowns` rows as each dimension's `shape_breakdown` rows (empty for a dimension without any)."""
    by: dict[str, list[tuple[Any, ...]]] = {d: [] for d in dimensions}
    for dimension, *row in rows:
        by[dimension].append(tuple(row))
    return {d: shape_breakdown(dimension_rows) for d, dimension_rows in by.items()}


def shape_breakdown(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows ``{key, opens, unique_opens, clicks, unique_clicks}``, most opens first; ``key`` null: unknown."""
    table: dict[str, dict[str, Any]] = {}
    for value, kind, hits, messages in rows:
        row = table.setdefault(
            value, {"key": value or None, "opens": 0, "unique_opens": 0, "clicks": 0, "unique_clicks": 0}
        )
        if kind == "open":
            row["opens"], row["unique_opens"] = int(hits), int(messages)
        else:
            row["clicks"], row["unique_clicks"] = int(hits), int(messages)
    return sorted(table.values(), key=lambda r: (-r["opens"], -r["clicks"], r["key"] or ""))


_LINKS: Final = f"{CAMPAIGN_SCOPE} AND rollup = 'url' AND kind = 'click'"


def link_clicks(db: str, account: str, campaign_id: str) -> ExactRead:
    """Clicks per destination URL and verdict: human (counted) and bot (link scanners, bursts)."""
    return ExactRead(
        f"{db}.rollups",
        _LINKS,
        keys=ROLLUP_KEYS,
        sizes=(("hits", "hits"), ("messages", "messages")),
        parameters={"account": account, "campaign_id": campaign_id},
        out=(("value", "label"), ("verdict", "who")),
    )


def link_indexes(db: str, account: str, campaign_id: str) -> Query:
    """Each clicked URL's link index in the message (the lowest, if messages list it differently)."""
    return Query(
        f"SELECT label, min(link_index) FROM {db}.rollups WHERE {_LINKS} GROUP BY label",
        {"account": account, "campaign_id": campaign_id},
    )


def shape_links(
    rows: Iterable[tuple[Any, ...]], index_rows: Iterable[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Rows ``{link_index, url, clicks, unique_clicks, bot_clicks}``, most clicks first."""
    indexes = {url: int(index) for url, index in index_rows}
    table: dict[str, dict[str, Any]] = {}
    for url, verdict, hits, messages in rows:
        row = table.setdefault(
            url,
            {
                "link_index": indexes.get(url, -1),
                "url": url,
                "clicks": 0,
                "unique_clicks": 0,
                "bot_clicks": 0,
            },
        )
        if verdict == "human":
            row["clicks"], row["unique_clicks"] = int(hits), int(messages)
        elif verdict == "bot":
            row["bot_clicks"] += int(hits)
    return sorted(table.values(), key=lambda r: (-r["clicks"], -r["bot_clicks"], r["link_index"], r["url"]))
