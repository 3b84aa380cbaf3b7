"""``/v1/campaigns``: the account's campaigns and each campaign's stats, summary with the machine-open switch,
breakdowns, time series, links, filtered hits and best time to send.

Handlers are thin: validate, call what each route answers (`api.campaign_answers`, over the pure planners and
shapers of `api.sql`) in a worker thread (``sync_to_thread``). Every answer
reads the rollups of ``schemas/ddl/0002_rollups.sql`` (fed at insert time, so as fresh as the events), scoped
to the caller's account: a campaign of another account answers 404 exactly like an unknown one. Bad query
values answer 400 with the reason. Never writes.

Two controllers, one per tag of the OpenAPI document: `CampaignController` (``campaigns``: the contract's
``/stats``) and `CampaignAnalyticsController` (``analytics``: the analyst's endpoints); ``/stats`` and
``/summary`` answer from the same read and shaper (`campaign_summary`); ``/report`` answers every part of the
dashboard's campaign report at once, each as its own route does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import FromPath, QueryParameter

from api import campaign_answers as answers
from api.context import ApiContext, Cursor, Limit, account_dependency
from api.report_warmer import ReportAsk
from api.sql import breakdowns, deliveries, timeseries
from api.sql.common import BadQuery

IncludeMachine = Annotated[
    bool,
    QueryParameter(
        description="Count machine opens (Apple Mail Privacy Protection, Gmail prefetch, gateways) as opens."
    ),
]


def _bad(exc: BadQuery) -> ClientException:
    return ClientException(str(exc))


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
        unsubscribes and their rates, and open and click rates over delivered mail (`rate_basis`); and
        `read_time`, how long the timed opens (messages registered with `read_time`) stayed on screen:
        `read` (8 s or more), `skimmed` (2-8 s), `glanced` (under 2 s), `unknown` (not measurable: a machine
        open, a filtered one, an image proxy, the edge busy), `measured` and `median_seconds` of the
        measured (null when none). Unique opens count implied opens (`implied_opens`: a person's click on a
        message whose pixel never loaded; `unique_pixel_opens` without them); `mpp_adjusted_open_rate` leaves
        out of both sides the messages whose only opens are Apple Mail Privacy Protection's prefetch
        (`mpp_only_messages`)."""
        # Read from the rollups (exact, ~20 ms at 10 M events).
        return answers.campaign_summary(
            ctx, account, campaign_id, include_machine=False, delivery_fields=True
        )


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
        unique opens and clicks and their rates (as the campaign's summary gives them: over delivered mail
        where it has delivery data), human opens per UTC day (`opens_by_day`, for a trend), and, for a
        campaign with delivery data, delivered, bounced and the delivery rate (else null).
        Keyset pagination: pass `next_cursor` back as `cursor`; the order is stable while new sends arrive."""
        try:
            return answers.campaign_page(ctx, account, limit=limit, cursor=cursor, q=q)
        except BadQuery as exc:
            raise _bad(exc) from exc

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
        over delivered mail (`rate_basis`). A campaign with timed opens measured also gets `read_time`, as
        in `/stats`. Implied opens and the MPP-adjusted open rate as in `/stats`."""
        # Without delivery data the summary answers as it did before delivery events existed.
        return answers.campaign_summary(
            ctx, account, campaign_id, include_machine=include_machine, delivery_fields=False
        )

    @get("/{campaign_id:str}/report", sync_to_thread=True)
    def report(
        self,
        *,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        bucket: Annotated[
            timeseries.Bucket, QueryParameter(description="The time series' bucket: minute, hour or day.")
        ] = "hour",
        tz: Annotated[
            str, QueryParameter(max_length=64, description="IANA time zone of the time series' buckets.")
        ] = "UTC",
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """The campaign's whole report in one answer, each part exactly as its own route answers it (without
        its `campaign_id`): `summary` (`/summary`), `timeseries` (`/timeseries` over the whole campaign),
        `breakdowns` by `client`, `device`, `os` and `country` (`/breakdown`), `links` (`/links`'s `links`),
        `filtered` (`/filtered`) and `best_time_to_send` (`/best-time`)."""
        try:
            answer = answers.campaign_report(
                ctx, account, campaign_id, include_machine=include_machine, bucket=bucket, tz=tz
            )
        except BadQuery as exc:
            raise _bad(exc) from exc
        if ctx.report_warmer is not None:
            ctx.report_warmer.asked(ReportAsk(account, campaign_id, include_machine, bucket, tz))
        return answer

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
        type or OS, most opens first; `key` null: unknown (proxy and machine opens carry none). By client,
        each row also has `read_time` (as in `/stats`) of the timed opens of that client; a client with
        timed opens but no counted open has a row of its own, so the rows add up to the campaign's."""
        answers.require_campaign(ctx, account, campaign_id)
        rows = answers.breakdown_rows(ctx, account, campaign_id, by, include_machine=include_machine)
        return {"campaign_id": campaign_id, "by": by, "include_machine": include_machine, "rows": rows}

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
        answers.require_campaign(ctx, account, campaign_id)
        try:
            return answers.timeseries_answer(
                ctx,
                account,
                campaign_id,
                bucket=bucket,
                tz=tz,
                start=start,
                end=end,
                include_machine=include_machine,
            )
        except BadQuery as exc:
            raise _bad(exc) from exc

    @get("/{campaign_id:str}/delivery-series", sync_to_thread=True)
    def delivery_series(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The campaign's delivery events per hour (UTC) in which they happened, by event (delivered,
        deferred, hard and soft bounces, dropped, complaints, unsubscribes), hours with an event only; a
        provider's retry of an event counts once."""
        answers.require_campaign(ctx, account, campaign_id)
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
        answers.require_campaign(ctx, account, campaign_id)
        return {"campaign_id": campaign_id, "links": answers.link_rows(ctx, account, campaign_id)}

    @get("/{campaign_id:str}/filtered", sync_to_thread=True)
    def filtered(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Hits counted nowhere (bots, invalid tokens) by verdict and reason, and machine opens by reason."""
        answers.require_campaign(ctx, account, campaign_id)
        return {"campaign_id": campaign_id, **answers.filtered_answer(ctx, account, campaign_id)}

    @get("/{campaign_id:str}/best-time", sync_to_thread=True)
    def best_time(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """When this campaign's audience opens: the modal hour (0-23) and weekday in each reader's own local
        time (GeoIP time zone), with the sample size; below 5 opens, the whole account's audience."""
        answers.require_campaign(ctx, account, campaign_id)
        best = answers.best_time_answer(ctx, account, campaign_id)
        return {"campaign_id": campaign_id, "best_time_to_send": best}
