"""``/v1/campaigns``: the account's campaigns and each campaign's stats, summary with the machine-open switch,
breakdowns, time series, links, filtered hits and best time to send.

Handlers are thin: validate, call the pure planners of `api.sql` (`campaigns`, `breakdowns`, `timeseries`,
`filtered`, `best_time`), run the store calls in a worker thread (``sync_to_thread``), shape. Every answer
reads the rollups of ``schemas/ddl/0002_rollups.sql`` (fed at insert time, so as fresh as the events), scoped
to the caller's account: a campaign of another account answers 404 exactly like an unknown one. Bad query
values answer 400 with the reason. Never writes.

Two controllers, one per tag of the OpenAPI document: `CampaignController` (``campaigns``: the contract's
``/stats``) and `CampaignAnalyticsController` (``analytics``: the analyst's endpoints); ``/stats`` and
``/summary`` answer from the same read and shaper (`campaign_summary`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, QueryParameter

from api.context import ApiContext, Cursor, Limit, account_dependency
from api.sql import best_time as bt
from api.sql import breakdowns, deliveries, filtered, timeseries
from api.sql import campaigns as sql
from api.sql import open_rates as rates
from api.sql.common import BadQuery

IncludeMachine = Annotated[
    bool,
    QueryParameter(
        description="Count machine opens (Apple Mail Privacy Protection, Gmail prefetch, gateways) as opens."
    ),
]

# What `campaign_summary` keeps per campaign while its rollup parts stay: hit rows, message rows, delivery
# numbers, MPP-only messages and implied opens.
Counted = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[int, ...] | None, rates.OpenFacts]


def campaign_summary(
    ctx: ApiContext, account: str, campaign_id: str, *, include_machine: bool, delivery_fields: bool
) -> dict[str, Any]:
    """The campaign's stats from the rollups; NotFoundException for a campaign the account never sent nor
    had a hit of. With delivery data, its delivery numbers too; without, ``delivery_fields`` says whether
    they are answered (as null, with ``rate_basis`` "sent") or left out. Unique opens and open rates count
    implied opens, and the MPP-adjusted open rate stands beside them (`api.sql.open_rates`)."""
    db = ctx.store.database

    def counted() -> Counted:
        counts = ctx.read(sql.campaign_counts(db, account, campaign_id, include_machine=include_machine))
        hit_rows, message_rows = sql.split_counts(counts)
        if not hit_rows and not any(n for *_, n in message_rows):
            # Nothing counted: unknown, or every send erased before an open (still listed, so zeros, as the
            # other campaign routes answer).
            _require_campaign(ctx, account, campaign_id)
        # The messages by delivery status and those counted as sent without a send (`unregistered_messages`'
        # number), per bucket, counted again only where the data changed (`api.delivery_numbers`).
        numbers = ctx.delivery_numbers.read(ctx.read, db, account, [campaign_id]).get(campaign_id)
        # MPP-only messages and implied opens (`api.sql.open_rates`): read from `rollups` only.
        facts = rates.shape_facts(ctx.read(rates.campaign_open_facts(db, account, campaign_id)))
        return hit_rows, message_rows, numbers, facts

    # Read again only when the parts holding the campaign's rollup rows changed (`api.campaign_reads`).
    hit_rows, message_rows, numbers, facts = ctx.campaign_reads.read(
        ctx.read, db, account, campaign_id, variant=include_machine, compute=counted
    )
    summary = sql.shape_summary(
        campaign_id,
        hit_rows,
        message_rows,
        include_machine=include_machine,
        unregistered=numbers[deliveries.COUNTS.index("unregistered")] if numbers else 0,
    )
    summary = rates.with_implied_opens(summary, facts)
    human = sum(int(n) for event, who, n in message_rows if (event, who) == ("open", "human"))
    delivery = None
    if any(kind == "delivery" for kind, *_ in hit_rows):  # the delivery events' hour rollups
        delivery = numbers
    if delivery is not None or delivery_fields:
        summary = deliveries.with_deliveries(summary, delivery)
    return rates.with_mpp_adjusted(summary, facts, person_opened=human + facts.implied)


def _bad(exc: BadQuery) -> ClientException:
    return ClientException(str(exc))


def _require_campaign(ctx: ApiContext, account: str, campaign_id: str) -> None:
    if not ctx.read(sql.campaign_known(ctx.store.database, account, campaign_id)):
        raise NotFoundException(f"no campaign {campaign_id!r}")


class CampaignController(Controller):
    path = "/v1/campaigns"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["campaigns"]  # noqa: RUF012

    @get("/{campaign_id:str}/stats", sync_to_thread=True)
    def campaign_stats(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Sends, opens, unique opens, machine opens, clicks, rates and filtered hits of a campaign; with
        delivery data from its mail service, delivered, deferred, bounced (hard, soft), dropped, complaints,
        unsubscribes and their rates, and open and click rates over delivered mail (`rate_basis`). Unique
        opens count implied opens (`implied_opens`: a person's click on a message whose pixel never loaded;
        `unique_pixel_opens` without them); `mpp_adjusted_open_rate` leaves out of both sides the messages
        whose only opens are Apple Mail Privacy Protection's prefetch (`mpp_only_messages`)."""
        # Read from the rollups (exact, ~20 ms at 10 M events).
        return campaign_summary(ctx, account, campaign_id, include_machine=False, delivery_fields=True)


class CampaignAnalyticsController(Controller):
    path = "/v1/campaigns"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["analytics"]  # noqa: RUF012

    @get("/", sync_to_thread=True)
    def list_campaigns(
        self,
        *,
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        limit: Limit = 50,
        cursor: Cursor = None,
        q: Annotated[
            str | None, QueryParameter(max_length=256, description="Part of the campaign id, any case.")
        ] = None,
    ) -> dict[str, Any]:
        """The account's campaigns, most recently sent first: sends, first and last send, opens and clicks,
        and, for a campaign with delivery data, delivered, bounced and the delivery rate (else null).
        Keyset pagination: pass `next_cursor` back as `cursor`; the order is stable while new sends arrive."""
        db = ctx.store.database
        try:
            page = ctx.read(sql.campaign_list(db, account, limit=limit, cursor=cursor, q=q))
        except BadQuery as exc:
            raise _bad(exc) from exc
        ids = [row[0] for row in page[:limit]]
        hit_rows: list[tuple[Any, ...]] = []
        message_rows: list[tuple[Any, ...]] = []
        unregistered: list[tuple[Any, ...]] = []
        delivery_rows: list[tuple[Any, ...]] = []
        if ids:
            hits, messages = sql.campaigns_counts(db, account, ids)
            hit_rows, message_rows = ctx.read(hits), ctx.read(messages)
            unregistered = ctx.read(sql.unregistered_messages(db, account, ids))
            with_data = [row[0] for row in ctx.read(deliveries.campaigns_with_deliveries(db, account, ids))]
            if with_data:
                numbers = ctx.delivery_numbers.read(ctx.read, db, account, with_data)
                delivery_rows = [(c, *counts) for c, counts in numbers.items()]
        answer = sql.shape_campaign_page(page, limit, hit_rows, message_rows, unregistered)
        return deliveries.with_campaign_deliveries(answer, delivery_rows)

    @get("/{campaign_id:str}/summary", sync_to_thread=True)
    def summary(
        self,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """The campaign's stats (sent, opens, unique opens, rates, clicks, bot clicks, filtered hits by
        reason) from the rollups; `include_machine=true` counts machine opens as opens (the MPP switch). A
        campaign with delivery data also gets the delivery numbers of `/stats`, and open and click rates
        over delivered mail (`rate_basis`). Implied opens and the MPP-adjusted open rate as in `/stats`."""
        # Without delivery data the summary answers as it did before delivery events existed.
        return campaign_summary(
            ctx, account, campaign_id, include_machine=include_machine, delivery_fields=False
        )

    @get("/{campaign_id:str}/breakdown", sync_to_thread=True)
    def breakdown(
        self,
        *,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        by: Annotated[
            breakdowns.Dimension, QueryParameter(description="country, client (mail client), device or os.")
        ],
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """Opens, unique opens, clicks and unique clicks of the campaign per country, mail client, device
        type or OS, most opens first; `key` null: unknown (proxy and machine opens carry none)."""
        _require_campaign(ctx, account, campaign_id)
        q = breakdowns.breakdown(
            ctx.store.database, account, campaign_id, by, include_machine=include_machine
        )
        return {
            "campaign_id": campaign_id,
            "by": by,
            "include_machine": include_machine,
            "rows": breakdowns.shape_breakdown(ctx.read(q)),
        }

    @get("/{campaign_id:str}/timeseries", sync_to_thread=True)
    def timeseries(
        self,
        *,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        bucket: Annotated[timeseries.Bucket, QueryParameter(description="minute, hour or day.")] = "hour",
        tz: Annotated[
            str, QueryParameter(max_length=64, description="IANA time zone of the buckets.")
        ] = "UTC",
        start: Annotated[
            datetime | None,
            QueryParameter(
                name="from", description="ISO-8601; without an offset, in `tz`. Default: first hit."
            ),
        ] = None,
        end: Annotated[
            datetime | None,
            QueryParameter(name="to", description="ISO-8601, exclusive; without an offset, in `tz`."),
        ] = None,
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """Opens, unique opens (messages opened in the bucket), clicks and machine opens per minute, hour or
        day, each bucket starting at its local time in `tz`; empty buckets included, at most 10,000."""
        _require_campaign(ctx, account, campaign_id)
        db = ctx.store.database
        try:
            zone = timeseries.zone(tz)
            start = timeseries.instant("from", start, zone) if start is not None else None
            end = timeseries.instant("to", end, zone) if end is not None else None
            if start is None or end is None:
                first, last, hits = ctx.read(timeseries.campaign_extent(db, account, campaign_id))[0]
                if not hits and (start is None or end is None):
                    return timeseries.shape_timeseries(
                        campaign_id,
                        bucket=bucket,
                        tz=tz,
                        include_machine=include_machine,
                        span=None,
                        series=[],
                    )
                start = start or datetime.fromtimestamp(first, zone)
                end = end or datetime.fromtimestamp(last + 60, zone)
            span = timeseries.bucket_starts(bucket, zone, start, end)
        except BadQuery as exc:
            raise _bad(exc) from exc
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

    @get("/{campaign_id:str}/delivery-series", sync_to_thread=True)
    def delivery_series(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The campaign's delivery events per hour (UTC) in which they happened, by event (delivered,
        deferred, hard and soft bounces, dropped, complaints, unsubscribes), hours with an event only; a
        provider's retry of an event counts once."""
        _require_campaign(ctx, account, campaign_id)
        rows = ctx.read(deliveries.delivery_series(ctx.store.database, account, campaign_id))
        return {
            "campaign_id": campaign_id,
            "bucket": "hour",
            "tz": "UTC",
            "series": deliveries.shape_delivery_series(rows),
        }

    @get("/{campaign_id:str}/links", sync_to_thread=True)
    def links(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The campaign's clicked links, most human clicks first: clicks, unique clicks (messages) and bot
        clicks (link scanners and bursts) per destination URL, with its link index."""
        _require_campaign(ctx, account, campaign_id)
        db = ctx.store.database
        rows = ctx.read(breakdowns.link_clicks(db, account, campaign_id))
        indexes = ctx.read(breakdowns.link_indexes(db, account, campaign_id))
        return {"campaign_id": campaign_id, "links": breakdowns.shape_links(rows, indexes)}

    @get("/{campaign_id:str}/filtered", sync_to_thread=True)
    def filtered(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Hits counted nowhere (bots, invalid tokens) by verdict and reason, and machine opens by reason."""
        _require_campaign(ctx, account, campaign_id)
        rows = ctx.read(sql.campaign_hits(ctx.store.database, account, campaign_id))
        return {"campaign_id": campaign_id, **filtered.shape_filtered(rows)}

    @get("/{campaign_id:str}/best-time", sync_to_thread=True)
    def best_time(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """When this campaign's audience opens: the modal hour (0-23) and weekday in each reader's own local
        time (GeoIP time zone), with the sample size; below 5 opens, the whole account's audience."""
        _require_campaign(ctx, account, campaign_id)
        db = ctx.store.database
        campaign = bt.audience_best_time(ctx.read(bt.audience_slots(db, account, [campaign_id])), "campaign")
        best = campaign
        if campaign.sample_size < bt.MIN_SAMPLE:
            best = bt.first_sufficient(_account_best_time(ctx, account))
        return {"campaign_id": campaign_id, "best_time_to_send": best.as_dict()}


def _account_best_time(ctx: ApiContext, account: str) -> bt.BestTime:
    return bt.audience_best_time(ctx.read(bt.audience_slots(ctx.store.database, account, None)), "account")
