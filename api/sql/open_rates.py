"""Open rates that machine opens cannot inflate or hide: a campaign's implied opens and its MPP-adjusted open
rate, from the message sets of the rollups (``schemas/ddl/0002_rollups.sql``). Pure; every query is scoped by
``{account:String}``.

- **Implied open**: a message a person clicked (a human click) whose pixel never loaded (no open of any kind,
  human or machine): the click proves the message was opened with images blocked. Counted as opened
  (``unique_opens``) and apart (``implied_opens``); ``unique_pixel_opens`` keeps the pixel's own number. A
  clicked message with a machine open only is not implied: its pixel loaded (a prefetch, or a proxy that hid
  the person's open), so images were not blocked; it stays a machine-only open.
- **MPP-only message**: a message whose only opens are Apple Mail Privacy Protection's prefetch (machine opens
  with a reason of `schemas.verdicts.MPP_REASONS`; any human open, any other machine open makes it not
  MPP-only). Whether its reader opened it is unknowable, so the MPP-adjusted open rate leaves it out of both
  numerator and denominator: messages a person opened (pixel or implied) / (the rate basis - MPP-only
  messages). A person's click on an MPP-only message does not bring it back into the rate: that would keep,
  of the hidden readers, exactly those who clicked, and inflate the rate.

Exact: implied opens per bucket of message hashes (buckets never share a message), the human-click set minus
the opened-by-anyone set (the 'any' rows); MPP-only messages over the hour rows' message sets (hour rows keep
the reason, the messages rows do not), one row per distinct message.

Cost (measured on chDB, 2 loaded cores, a campaign of 1.4 M messages, 40 % opened by MPP): the MPP-only
count 0.5-2.6 s (a GROUP BY over every (hour, message) open), implied opens 0.2-0.6 s; the stats' other reads
take ~20 ms. Campaign stats compute them inside `api.campaign_reads` (kept while the campaign's rollup parts
stay), so a settled campaign pays once, but a large campaign being opened right now pays at every flush. The
way out is a per-bucket set of MPP-opened messages (a ``messages`` rollup row ``who = 'mpp'``, migration 0015,
and the non-MPP machine set beside it), counted per bucket and again only where parts changed, as
`api.delivery_numbers` does: not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.sql.common import CAMPAIGN_SCOPE, Query, rate
from schemas.verdicts import MPP_REASONS


@dataclass(frozen=True, slots=True)
class OpenFacts:
    """A campaign's messages opened only by Apple's prefetch, and its messages clicked but never opened."""

    mpp_only: int = 0
    implied: int = 0


def campaign_open_facts(db: str, account: str, campaign_id: str) -> Query:
    """Rows ``(fact, n)`` for 'mpp_only' and 'implied' (`shape_facts`). Reads ``rollups`` only."""
    return Query(
        f"""SELECT 'mpp_only' AS fact, countIf(only_mpp) AS n
            FROM (
              SELECT m, min(who = 'machine' AND label IN {{mpp_reasons:Array(String)}}) AS only_mpp
              FROM (
                SELECT who, label, arrayJoin(messages) AS m FROM {db}.rollups
                WHERE {CAMPAIGN_SCOPE} AND `rollup` = 'hour' AND kind = 'open'
                  AND who IN ('human', 'machine'))
              GROUP BY m)
            UNION ALL
            SELECT 'implied' AS fact,
                   sum(length(arrayDistinct(arrayConcat(opened, clicked))) - length(opened)) AS n
            FROM (
              SELECT bucket,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'open'))) AS opened,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'click'))) AS clicked
              FROM {db}.rollups
              WHERE {CAMPAIGN_SCOPE} AND `rollup` = 'messages'
                AND ((kind = 'open' AND who = 'any') OR (kind = 'click' AND who = 'human'))
              GROUP BY bucket)""",
        {"account": account, "campaign_id": campaign_id, "mpp_reasons": list(MPP_REASONS)},
    )


def campaigns_implied_opens(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Rows ``(campaign_id, n)``: implied opens of several campaigns (the campaign list), as
    `campaign_open_facts` counts them; campaigns without one have no row."""
    return Query(
        f"""SELECT campaign_id, sum(length(arrayDistinct(arrayConcat(opened, clicked))) - length(opened)) AS n
            FROM (
              SELECT campaign_id, bucket,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'open'))) AS opened,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'click'))) AS clicked
              FROM {db}.rollups
              WHERE account = {{account:String}} AND campaign_id IN {{campaign_ids:Array(String)}}
                AND `rollup` = 'messages'
                AND ((kind = 'open' AND who = 'any') OR (kind = 'click' AND who = 'human'))
              GROUP BY campaign_id, bucket)
            GROUP BY campaign_id HAVING n > 0""",
        {"account": account, "campaign_ids": list(campaign_ids)},
    )


def with_listed_implied_opens(page: dict[str, Any], implied: Mapping[str, int]) -> dict[str, Any]:
    """A page of the campaign list whose unique opens and open rates (over sent) count each campaign's implied
    opens, as its summary does (`with_implied_opens`); ``implied_opens`` beside them."""
    items = []
    for item in page["items"]:
        n = int(implied.get(item["campaign_id"], 0))
        unique_opens = int(item["unique_opens"]) + n
        basis = int(item.get("tracked_sends", item["sent"]))  # the sends tracked individually (issue 19)
        items.append(
            {
                **item,
                "unique_opens": unique_opens,
                "implied_opens": n,
                "open_rate": rate(unique_opens, basis),
            }
        )
    return {**page, "items": items}


def shape_facts(rows: Iterable[tuple[Any, ...]]) -> OpenFacts:
    """`campaign_open_facts` rows as `OpenFacts` (a missing fact is 0)."""
    n = {str(fact): int(value) for fact, value in rows}
    return OpenFacts(mpp_only=n.get("mpp_only", 0), implied=n.get("implied", 0))


def with_implied_opens(summary: dict[str, Any], facts: OpenFacts) -> dict[str, Any]:
    """A campaign summary (`api.sql.campaigns.shape_summary`, open rate over the sends tracked individually:
    ``tracked_sends`` where some are not, else sent) whose unique opens and open rate count implied opens: ``unique_opens`` = ``unique_pixel_opens`` + ``implied_opens`` (with the machine
    switch, the pixel's opens by anyone: an implied message has none, so the sum stays a count of messages).
    ``opens`` (pixel loads) is unchanged."""
    pixel = int(summary["unique_opens"])
    unique_opens = pixel + facts.implied
    out = dict(summary)
    out["unique_opens"] = unique_opens
    out["unique_pixel_opens"] = pixel
    out["implied_opens"] = facts.implied
    out["open_rate"] = rate(unique_opens, int(summary.get("tracked_sends", summary["sent"])))
    return out


def mpp_adjusted_open_rate(person_opened: int, basis: int, mpp_only: int) -> float:
    """Messages a person opened (pixel or implied) over the rate basis less the MPP-only messages; 0.0 when
    nothing is left (as `api.sql.common.rate`)."""
    return rate(person_opened, max(basis - mpp_only, 0))


def with_mpp_adjusted(summary: dict[str, Any], facts: OpenFacts, *, person_opened: int) -> dict[str, Any]:
    """A campaign summary with ``mpp_only_messages`` and ``mpp_adjusted_open_rate``, over its rate basis
    (``rate_basis``: delivered, tracked_sends or tracked_delivered, as `api.sql.deliveries.with_deliveries`
    and `api.sql.campaigns.shape_summary` set it), else sent.
    ``person_opened``: messages a person opened, pixel or implied, whatever the machine switch says."""
    basis = summary.get(str(summary.get("rate_basis") or "sent"))  # each basis is answered under its name
    if basis is None:
        basis = summary["sent"]
    return {
        **summary,
        "mpp_only_messages": facts.mpp_only,
        "mpp_adjusted_open_rate": mpp_adjusted_open_rate(person_opened, int(basis), facts.mpp_only),
    }
