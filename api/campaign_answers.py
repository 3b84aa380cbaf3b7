"""What each campaign route answers, as functions of the request's context: the summary, the breakdowns, the
time series, the links, the filtered hits, the best time, and the whole report in one answer
(``GET /v1/campaigns/{id}/report``, the dashboard's first paint). `api.campaigns` holds the routes and only
validates and calls these, so a part of the report and its own route are the same code and the same numbers.

The report reads what the separate routes read, with fewer queries and one campaign check: the filtered hits
are the summary's hour rows (`api.sql.campaigns.campaign_counts` holds `campaign_hits`' rows), the four
breakdowns are one exact read (`api.sql.breakdowns.breakdowns`). It is kept, like the stats inputs, while
the parts holding the campaign's rollup rows stay the same (`api.campaign_reads`: every part of it is read
from those rows), so a settled campaign's report costs one signature query; the campaign pixel's opens
(issue 19, a table of their own) are read each time, and so is the best time when it falls back to the whole
account's audience below 5 opens, which other campaigns change.
Never writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.exceptions import NotFoundException

from api.context import ApiContext
from api.sql import aggregate_opens as aggregate
from api.sql import best_time as bt
from api.sql import breakdowns, deliveries, filtered, reads, timeseries
from api.sql import campaigns as sql
from api.sql import open_rates as rates
from api.sql.common import Query
from api.sql.exact import ExactRead

Rows = list[tuple[Any, ...]]
DIMENSIONS: tuple[breakdowns.Dimension, ...] = ("client", "device", "os", "country")


def require_campaign(ctx: ApiContext, account: str, campaign_id: str) -> None:
    """NotFoundException unless the account sent the campaign or had a hit of it."""
    if not ctx.read(sql.campaign_known(ctx.store.database, account, campaign_id)):
        raise NotFoundException(f"no campaign {campaign_id!r}")


# A campaign's hour rows, message rows, delivery numbers, read time (issue 18), and MPP-only messages and
# implied opens (issue 20).
Counted = tuple[Rows, Rows, tuple[int, ...] | None, dict[str, Any], rates.OpenFacts]


def _counted(ctx: ApiContext, account: str, campaign_id: str, *, include_machine: bool) -> Counted:
    """The campaign's hour rows ``(kind, verdict, reason, hits)``, its message rows, its delivery numbers and
    its read time and its `api.sql.open_rates.OpenFacts`; NotFoundException for a campaign the account never
    sent nor had a hit of."""
    db = ctx.store.database

    def counted() -> Counted:
        counts = ctx.read(sql.campaign_counts(db, account, campaign_id, include_machine=include_machine))
        hit_rows, message_rows = sql.split_counts(counts)
        if not hit_rows and not any(n for *_, n in message_rows):
            # Nothing counted: unknown, or every send erased before an open (still listed, so zeros, as the
            # other campaign routes answer).
            require_campaign(ctx, account, campaign_id)
        # The messages by delivery status and those counted as sent without a send (`unregistered_messages`'
        # number), per bucket, counted again only where the data changed (`api.delivery_numbers`).
        numbers = ctx.delivery_numbers.read(ctx.read, db, account, [campaign_id]).get(campaign_id)
        # Read time (issue 18) from ``reads``, mirrored into the rollups' parts (0010): never stale.
        read_rows: Rows = []
        if ctx.read(reads.campaign_has_reads(db, account, campaign_id)):
            read_rows = ctx.read(reads.campaign_read_time(db, account, campaign_id))
        read_time = reads.shape_read_time(read_rows[0] if read_rows else None)
        # MPP-only messages and implied opens, per bucket, counted again only where the data changed
        # (`api.open_numbers`).
        facts = ctx.open_numbers.facts(ctx.read, db, account, [campaign_id])[campaign_id]
        return hit_rows, message_rows, numbers, read_time, facts

    # Read again only when the parts holding the campaign's rollup rows changed (`api.campaign_reads`).
    kept = ctx.campaign_reads
    return kept.read(ctx.read, db, account, campaign_id, variant=include_machine, compute=counted)


def _summary(
    campaign_id: str,
    counted: Counted,
    aggregate_rows: Rows,
    *,
    include_machine: bool,
    delivery_fields: bool,
) -> dict[str, Any]:
    hit_rows, message_rows, numbers, read_time, facts = counted
    summary = sql.shape_summary(
        campaign_id,
        hit_rows,
        message_rows,
        include_machine=include_machine,
        unregistered=numbers[deliveries.COUNTS.index("unregistered")] if numbers else 0,
    )
    # Unique opens and rates count implied opens; the MPP-adjusted rate beside them (`api.sql.open_rates`).
    summary = rates.with_implied_opens(summary, facts)
    human = sum(int(n) for event, who, n in message_rows if (event, who) == ("open", "human"))
    # The campaign pixel's opens (issue 19), when it has any or sent one.
    summary.update(aggregate.shape_aggregate(aggregate_rows, include_machine=include_machine) or {})
    if delivery_fields or read_time["measured"] or read_time["unknown"]:
        summary["read_time"] = dict(read_time)  # a copy: the kept value is shared
    delivery = None
    if any(kind == "delivery" for kind, *_ in hit_rows):  # the delivery events' hour rollups
        delivery = numbers
    if delivery is not None or delivery_fields:
        # /stats answers the sends tracked individually (the rates' basis), all of them too
        if delivery_fields:
            summary.setdefault("tracked_sends", summary["sent"])
        summary = deliveries.with_deliveries(summary, delivery)
    return rates.with_mpp_adjusted(summary, facts, person_opened=human + facts.implied)


def _aggregate_rows(ctx: ApiContext, account: str, campaign_id: str) -> Rows:
    """The campaign pixel's counts (issue 19): never kept, a small table of its own."""
    return ctx.read(aggregate.aggregate_counts(ctx.store.database, account, campaign_id))


def campaign_summary(
    ctx: ApiContext, account: str, campaign_id: str, *, include_machine: bool, delivery_fields: bool
) -> dict[str, Any]:
    """The campaign's stats from the rollups; NotFoundException for a campaign the account never sent nor
    had a hit of. With delivery data, its delivery numbers too; without, ``delivery_fields`` says whether
    they are answered (as null, with ``rate_basis`` "sent") or left out. The same for read time (issue 18):
    ``read_time`` with the campaign's read records, else zeros with ``delivery_fields`` (`/stats`) or left
    out (`/summary` answers as it did before read time)."""
    counted = _counted(ctx, account, campaign_id, include_machine=include_machine)
    aggregate_rows = _aggregate_rows(ctx, account, campaign_id)
    return _summary(
        campaign_id, counted, aggregate_rows, include_machine=include_machine, delivery_fields=delivery_fields
    )


# One campaign's rows of the list's reads: (hits, messages, unregistered, delivery numbers or None, implied
# opens).
ListRows = tuple[Rows, Rows, Rows, tuple[int, ...] | None, int]


def campaign_page(
    ctx: ApiContext, account: str, *, limit: int, cursor: str | None, q: str | None
) -> dict[str, Any]:
    """A page of the campaign list (`BadQuery` for a cursor it did not give). Each campaign's numbers are
    kept while the parts holding its rollup rows stay (`api.campaign_reads.CampaignReads.read_many`: one
    signature query for the page); the campaigns whose parts changed are read together, a few queries for
    all of them."""
    db = ctx.store.database
    page = ctx.read(sql.campaign_list(db, account, limit=limit, cursor=cursor, q=q))
    ids = [str(row[0]) for row in page[:limit]]

    def counted(changed: list[str]) -> dict[str, ListRows]:
        hits, messages = sql.campaigns_counts(db, account, changed)
        rows: dict[str, tuple[Rows, Rows, Rows]] = {c: ([], [], []) for c in changed}
        unregistered = sql.unregistered_messages(db, account, changed)
        reads: tuple[ExactRead | Query, ...] = (hits, messages, unregistered)
        for i, read in enumerate(reads):
            for row in ctx.read(read):
                rows[row[0]][i].append(row)
        with_data = [row[0] for row in ctx.read(deliveries.campaigns_with_deliveries(db, account, changed))]
        numbers = ctx.delivery_numbers.read(ctx.read, db, account, with_data) if with_data else {}
        facts = ctx.open_numbers.facts(ctx.read, db, account, changed)
        return {c: (*rows[c], numbers.get(c), facts[c].implied) for c in changed}

    kept = ctx.campaign_reads.read_many(ctx.read, db, account, ids, variant="list", compute=counted)
    every = [kept[c] for c in ids]
    answer = sql.shape_campaign_page(
        page,
        limit,
        [row for hits, *_ in every for row in hits],
        [row for _, messages, *_ in every for row in messages],
        [row for *_, unregistered, _, _ in every for row in unregistered],
    )
    # Unique opens and open rates count implied opens, as the summary's do (`api.sql.open_rates`).
    answer = rates.with_listed_implied_opens(answer, {c: kept[c][4] for c in ids})
    delivery_rows = [(c, *numbers) for c, (*_, numbers, _) in zip(ids, every, strict=True) if numbers]
    return deliveries.with_campaign_deliveries(answer, delivery_rows)


def breakdown_rows(
    ctx: ApiContext, account: str, campaign_id: str, by: breakdowns.Dimension, *, include_machine: bool
) -> list[dict[str, Any]]:
    q = breakdowns.breakdown(ctx.store.database, account, campaign_id, by, include_machine=include_machine)
    rows = breakdowns.shape_breakdown(ctx.read(q))
    return _with_client_read_time(ctx, account, campaign_id, rows) if by == "client" else rows


def _with_client_read_time(
    ctx: ApiContext, account: str, campaign_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The breakdown by client with each client's read time (issue 18)."""
    db = ctx.store.database
    timed = ctx.read(reads.campaign_has_reads(db, account, campaign_id))
    per_client = ctx.read(reads.client_read_time(db, account, campaign_id)) if timed else []
    return reads.with_client_read_time(rows, per_client)


def timeseries_answer(
    ctx: ApiContext,
    account: str,
    campaign_id: str,
    *,
    bucket: timeseries.Bucket,
    tz: str,
    start: datetime | None,
    end: datetime | None,
    include_machine: bool,
) -> dict[str, Any]:
    """The time series (`BadQuery` for a zone or range it cannot answer)."""
    db = ctx.store.database
    zone = timeseries.zone(tz)
    start = timeseries.instant("from", start, zone) if start is not None else None
    end = timeseries.instant("to", end, zone) if end is not None else None
    if start is None or end is None:
        first, last, hits = ctx.read(timeseries.campaign_extent(db, account, campaign_id))[0]
        if not hits:
            return timeseries.shape_timeseries(
                campaign_id, bucket=bucket, tz=tz, include_machine=include_machine, span=None, series=[]
            )
        start = start or datetime.fromtimestamp(first, zone)
        end = end or datetime.fromtimestamp(last + 60, zone)
    span = timeseries.bucket_starts(bucket, zone, start, end)
    hit_rows = ctx.read(timeseries.series_hits(db, account, campaign_id, bucket=bucket, tz=tz, span=span))
    opener_rows = ctx.read(
        timeseries.series_openers(
            db, account, campaign_id, bucket=bucket, tz=tz, span=span, include_machine=include_machine
        )
    )
    series = timeseries.shape_series(span, hit_rows, opener_rows, include_machine=include_machine)
    return timeseries.shape_timeseries(
        campaign_id, bucket=bucket, tz=tz, include_machine=include_machine, span=span, series=series
    )


def link_rows(ctx: ApiContext, account: str, campaign_id: str) -> list[dict[str, Any]]:
    db = ctx.store.database
    rows = ctx.read(breakdowns.link_clicks(db, account, campaign_id))
    indexes = ctx.read(breakdowns.link_indexes(db, account, campaign_id))
    return breakdowns.shape_links(rows, indexes)


def filtered_answer(ctx: ApiContext, account: str, campaign_id: str) -> dict[str, Any]:
    rows = ctx.read(sql.campaign_hits(ctx.store.database, account, campaign_id))
    return filtered.shape_filtered(rows)


def _campaign_best_time(ctx: ApiContext, account: str, campaign_id: str) -> bt.BestTime:
    slots = ctx.read(bt.audience_slots(ctx.store.database, account, [campaign_id]))
    return bt.audience_best_time(slots, "campaign")


def _sufficient(ctx: ApiContext, account: str, campaign: bt.BestTime) -> bt.BestTime:
    """The campaign's best time, or below `MIN_SAMPLE` opens the whole account's audience's."""
    if campaign.sample_size >= bt.MIN_SAMPLE:
        return campaign
    slots = ctx.read(bt.audience_slots(ctx.store.database, account, None))
    return bt.first_sufficient(bt.audience_best_time(slots, "account"))


def best_time_answer(ctx: ApiContext, account: str, campaign_id: str) -> dict[str, Any]:
    best = _sufficient(ctx, account, _campaign_best_time(ctx, account, campaign_id))
    return best.as_dict()


def campaign_report(
    ctx: ApiContext,
    account: str,
    campaign_id: str,
    *,
    include_machine: bool,
    bucket: timeseries.Bucket,
    tz: str,
) -> dict[str, Any]:
    """Every part of the campaign's report, each as its own route answers it (without the repeated
    ``campaign_id``); NotFoundException for an unknown campaign, `BadQuery` for an unknown zone."""
    db = ctx.store.database
    timeseries.zone(tz)  # refused before anything is read

    def computed() -> tuple[dict[str, Any], Counted, bt.BestTime]:
        counted = _counted(ctx, account, campaign_id, include_machine=include_machine)
        rows = ctx.read(breakdowns.breakdowns(db, account, campaign_id, DIMENSIONS, include_machine))
        series = timeseries_answer(
            ctx,
            account,
            campaign_id,
            bucket=bucket,
            tz=tz,
            start=None,
            end=None,
            include_machine=include_machine,
        )
        parts = {
            "timeseries": _without_id(series),
            "breakdowns": {
                by: {
                    "by": by,
                    "include_machine": include_machine,
                    "rows": _with_client_read_time(ctx, account, campaign_id, shaped)
                    if by == "client"
                    else shaped,
                }
                for by, shaped in breakdowns.shape_breakdowns(rows, DIMENSIONS).items()
            },
            "links": link_rows(ctx, account, campaign_id),
            # The hour rows of the summary's read are `campaign_hits`' rows.
            "filtered": filtered.shape_filtered(counted[0]),
        }
        return parts, counted, _campaign_best_time(ctx, account, campaign_id)

    variant = ("report", include_machine, bucket, tz)
    parts, counted, campaign_best = ctx.campaign_reads.read(
        ctx.read, db, account, campaign_id, variant=variant, compute=computed
    )
    # What other tables or campaigns change is read each time: the campaign pixel's opens, and the best time
    # of the whole account's audience below 5 opens of the campaign's.
    summary = _summary(
        campaign_id,
        counted,
        _aggregate_rows(ctx, account, campaign_id),
        include_machine=include_machine,
        delivery_fields=False,
    )
    best = _sufficient(ctx, account, campaign_best)
    return {"campaign_id": campaign_id, "summary": summary, **parts, "best_time_to_send": best.as_dict()}


def _without_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "campaign_id"}
