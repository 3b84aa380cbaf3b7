r"""Open rates that machine opens cannot inflate or hide: a campaign's implied opens and its MPP-adjusted open
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

Exact, per bucket of message hashes (0002's 'messages' buckets: a message is in one bucket only, so the
campaign's numbers are the sums over its buckets): implied opens = |clicked by a person \ opened by anyone|
(0002's 'click'/'human' and 'open'/'any' rows); MPP-only messages = |opened by anyone \ opened otherwise
than by Apple's prefetch| (the 'opened'/'not_mpp' rows of ``0015_mpp_sets.sql``). `api.open_numbers` counts
them per bucket (`campaigns_open_counts`) and again only for the buckets whose parts changed (`open_parts`),
as `api.delivery_numbers` does for the delivery numbers: a settled campaign costs nothing more (its stats are
kept, `api.campaign_reads`), a campaign being opened costs a signature query and the buckets its new opens
touched.

Before 0015 the MPP-only count was a GROUP BY over every (hour, message) open of the campaign, since hour rows
keep the reason and the message rows did not: 0.5-2.6 s for a campaign of 1.4 M messages on two loaded
cores, paid at every flush while the campaign was being opened (BENCHMARKS section 4, issue 20).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from api.sql.common import Query, bucket_parts, only_buckets, rate


@dataclass(frozen=True, slots=True)
class OpenFacts:
    """A campaign's messages opened only by Apple's prefetch, and its messages clicked but never opened."""

    mpp_only: int = 0
    implied: int = 0


# What `campaigns_open_counts` answers per bucket, in its column order (`api.open_numbers`' numbers).
OPEN_COUNTS: Final = ("mpp_only", "implied")

# The rollup rows the numbers are read from: opened by anyone and clicked by a person (0002), opened otherwise
# than by Apple's prefetch (0015).
_OPEN_ROWS: Final = (
    "account = {account:String} AND campaign_id IN {campaign_ids:Array(String)} "
    "AND ((`rollup` = 'messages' "
    "AND ((kind = 'open' AND who = 'any') OR (kind = 'click' AND who = 'human'))) "
    "OR (`rollup` = 'opened' AND kind = 'open' AND who = 'not_mpp'))"
)


def open_parts(db: str, account: str, campaign_ids: Sequence[str]) -> Query:
    """Per campaign and bucket of message hashes, a signature of the parts holding the rows its numbers are
    counted from (`api.sql.common.bucket_parts`), as `api.sql.deliveries.delivery_parts` signs the delivery
    numbers' rows."""
    return bucket_parts(db, _OPEN_ROWS, account, campaign_ids)


def campaigns_open_counts(
    db: str, account: str, campaign_ids: Sequence[str], buckets: Sequence[int] | None = None
) -> Query:
    """Per campaign and bucket of message hashes, its MPP-only messages and implied opens (`OPEN_COUNTS`):
    rows ``(campaign_id, bucket, mpp_only, implied)``, each a set difference of the bucket's sets (unions of
    its rows: parts not merged yet, replays). ``buckets``: only these (None: all)."""
    parameters: dict[str, Any] = {"account": account, "campaign_ids": list(campaign_ids)}
    only = only_buckets(parameters, buckets)
    return Query(
        f"""SELECT campaign_id, bucket,
                   length(arrayDistinct(arrayConcat(opened, not_mpp))) - length(not_mpp) AS mpp_only,
                   length(arrayDistinct(arrayConcat(opened, clicked))) - length(opened) AS implied
            FROM (
              SELECT campaign_id, bucket,
                     arrayDistinct(arrayFlatten(
                       groupArrayIf(messages, `rollup` = 'messages' AND kind = 'open'))) AS opened,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, kind = 'click'))) AS clicked,
                     arrayDistinct(arrayFlatten(groupArrayIf(messages, `rollup` = 'opened'))) AS not_mpp
              FROM {db}.rollups WHERE {_OPEN_ROWS}{only}
              GROUP BY campaign_id, bucket)""",
        parameters,
    )


def with_listed_implied_opens(page: dict[str, Any], implied: Mapping[str, int]) -> dict[str, Any]:
    """A page of the campaign list whose unique opens and open rates (over the sends tracked individually, as
    the list answers them) count each campaign's implied opens, as its summary does (`with_implied_opens`);
    ``implied_opens`` beside them."""
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


def shape_facts(counts: Sequence[int] | None) -> OpenFacts:
    """A campaign's `OPEN_COUNTS` (None: no rows, nothing opened nor clicked) as `OpenFacts`."""
    if counts is None:
        return OpenFacts()
    n = dict(zip(OPEN_COUNTS, counts, strict=True))
    return OpenFacts(mpp_only=int(n["mpp_only"]), implied=int(n["implied"]))


def with_implied_opens(summary: dict[str, Any], facts: OpenFacts) -> dict[str, Any]:
    """A campaign summary (`api.sql.campaigns.shape_summary`, open rate over the sends tracked individually:
    ``tracked_sends`` where some are not, else sent) whose unique opens and open rate count implied opens:
    ``unique_opens`` = ``unique_pixel_opens`` + ``implied_opens`` (with the machine switch, the pixel's opens
    by anyone: an implied message has none, so the sum stays a count of messages). ``opens`` (pixel loads) is
    unchanged."""
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
