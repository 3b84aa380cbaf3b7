"""The analyst API: campaign summaries with the machine-open switch, breakdowns, time series, links, filtered
hits, best time to send, message timelines, recipients, and paginated lists of campaigns and messages.

Handlers are thin, like `api.routes`: validate, call the pure planners in `api.analytics_queries`, run the
store calls in a worker thread (``sync_to_thread``), shape. Every read is scoped to the caller's account; an
id of another account answers 404 exactly like an unknown one. Bad query values answer 400 with the reason.
Campaign answers read the rollups of ``schemas/ddl/0002_rollups.sql`` (fed at insert time, so they are as
fresh as the events); message and recipient answers read ``events`` and ``sends`` by their indexes. Never
writes, and never answers across accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, QueryParameter

from api import analytics_queries as aq
from api.queries import Query, send_of_message
from api.routes import ApiContext, RecipientPath, account_dependency
from schemas.recipient import normalize_recipient

IncludeMachine = Annotated[
    bool,
    QueryParameter(
        description="Count machine opens (Apple Mail Privacy Protection, Gmail prefetch, gateways) as opens."
    ),
]
Limit = Annotated[int, QueryParameter(ge=1, le=aq.MAX_PAGE, description="Rows per page.")]
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=512,
        description="`next_cursor` of the previous page, as given (opaque); omit for the first page. "
        "Any other value is refused (400).",
    ),
]


# Litestar 2.25 cannot share a path between two controllers (both add an OPTIONS handler), so the two
# endpoints on paths that other controllers own (POST /v1/messages, DELETE /v1/recipients/{recipient}) are
# plain handlers, registered after those controllers: see `analytics_handlers`.
_ACCOUNT: Final = {"account": account_dependency}
_TAGS: Final = ["analytics"]


def _rows(ctx: ApiContext, q: Query | aq.ExactRead) -> list[tuple[Any, ...]]:
    if isinstance(q, aq.ExactRead):
        return aq.read_exact(ctx.store.query, q)
    return ctx.store.query(q.sql, q.parameters)


def campaign_summary(
    ctx: ApiContext, account: str, campaign_id: str, *, include_machine: bool
) -> dict[str, Any]:
    """The campaign's stats from the rollups; NotFoundException for a campaign the account never sent nor
    had a hit of. (The contract's ``/v1/campaigns/{id}/stats`` can answer with this, rows per campaign
    instead of per hit.)"""
    db = ctx.store.database
    counts = _rows(ctx, aq.campaign_counts(db, account, campaign_id, include_machine=include_machine))
    hit_rows, message_rows = aq.split_counts(counts)
    if not hit_rows and not any(n for *_, n in message_rows):
        # Nothing counted: unknown, or every send erased before an open (still listed, so zeros, as the
        # other campaign routes answer).
        _require_campaign(ctx, account, campaign_id)
    unregistered = sum(int(n) for _, n in _rows(ctx, aq.unregistered_messages(db, account, [campaign_id])))
    return aq.shape_summary(
        campaign_id, hit_rows, message_rows, include_machine=include_machine, unregistered=unregistered
    )


def _bad(exc: aq.BadQuery) -> ClientException:
    return ClientException(str(exc))


def _require_campaign(ctx: ApiContext, account: str, campaign_id: str) -> None:
    if not _rows(ctx, aq.campaign_known(ctx.store.database, account, campaign_id)):
        raise NotFoundException(f"no campaign {campaign_id!r}")


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
        """The account's campaigns, most recently sent first: sends, first and last send, opens and clicks.
        Keyset pagination: pass `next_cursor` back as `cursor`; the order is stable while new sends arrive."""
        db = ctx.store.database
        try:
            page = _rows(ctx, aq.campaign_list(db, account, limit=limit, cursor=cursor, q=q))
        except aq.BadQuery as exc:
            raise _bad(exc) from exc
        ids = [row[0] for row in page[:limit]]
        hit_rows: list[tuple[Any, ...]] = []
        message_rows: list[tuple[Any, ...]] = []
        unregistered: list[tuple[Any, ...]] = []
        if ids:
            hits, messages = aq.campaigns_counts(db, account, ids)
            hit_rows, message_rows = _rows(ctx, hits), _rows(ctx, messages)
            unregistered = _rows(ctx, aq.unregistered_messages(db, account, ids))
        return aq.shape_campaign_page(page, limit, hit_rows, message_rows, unregistered)

    @get("/{campaign_id:str}/summary", sync_to_thread=True)
    def summary(
        self,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """The campaign's stats (sent, opens, unique opens, rates, clicks, bot clicks, filtered hits by
        reason) from the rollups; `include_machine=true` counts machine opens as opens (the MPP switch)."""
        return campaign_summary(ctx, account, campaign_id, include_machine=include_machine)

    @get("/{campaign_id:str}/breakdown", sync_to_thread=True)
    def breakdown(
        self,
        *,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        by: Annotated[
            aq.Dimension, QueryParameter(description="country, client (mail client), device or os.")
        ],
        include_machine: IncludeMachine = False,
    ) -> dict[str, Any]:
        """Opens, unique opens, clicks and unique clicks of the campaign per country, mail client, device
        type or OS, most opens first; `key` null: unknown (proxy and machine opens carry none)."""
        _require_campaign(ctx, account, campaign_id)
        q = aq.breakdown(ctx.store.database, account, campaign_id, by, include_machine=include_machine)
        return {
            "campaign_id": campaign_id,
            "by": by,
            "include_machine": include_machine,
            "rows": aq.shape_breakdown(_rows(ctx, q)),
        }

    @get("/{campaign_id:str}/timeseries", sync_to_thread=True)
    def timeseries(
        self,
        *,
        campaign_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        bucket: Annotated[aq.Bucket, QueryParameter(description="minute, hour or day.")] = "hour",
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
            zone = aq.zone(tz)
            start = aq.instant("from", start, zone) if start is not None else None
            end = aq.instant("to", end, zone) if end is not None else None
            if start is None or end is None:
                first, last, hits = _rows(ctx, aq.campaign_extent(db, account, campaign_id))[0]
                if not hits and (start is None or end is None):
                    return _series(
                        campaign_id,
                        bucket=bucket,
                        tz=tz,
                        include_machine=include_machine,
                        span=None,
                        series=[],
                    )
                start = start or datetime.fromtimestamp(first, zone)
                end = end or datetime.fromtimestamp(last + 60, zone)
            span = aq.bucket_starts(bucket, zone, start, end)
        except aq.BadQuery as exc:
            raise _bad(exc) from exc
        hit_rows = _rows(ctx, aq.series_hits(db, account, campaign_id, bucket=bucket, tz=tz, span=span))
        opener_rows = _rows(
            ctx,
            aq.series_openers(
                db, account, campaign_id, bucket=bucket, tz=tz, span=span, include_machine=include_machine
            ),
        )
        series = aq.shape_series(span, hit_rows, opener_rows, include_machine=include_machine)
        return _series(
            campaign_id, bucket=bucket, tz=tz, include_machine=include_machine, span=span, series=series
        )

    @get("/{campaign_id:str}/links", sync_to_thread=True)
    def links(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The campaign's clicked links, most human clicks first: clicks, unique clicks (messages) and bot
        clicks (link scanners and bursts) per destination URL, with its link index."""
        _require_campaign(ctx, account, campaign_id)
        db = ctx.store.database
        rows = _rows(ctx, aq.link_clicks(db, account, campaign_id))
        indexes = _rows(ctx, aq.link_indexes(db, account, campaign_id))
        return {"campaign_id": campaign_id, "links": aq.shape_links(rows, indexes)}

    @get("/{campaign_id:str}/filtered", sync_to_thread=True)
    def filtered(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Hits counted nowhere (bots, invalid tokens) by verdict and reason, and machine opens by reason."""
        _require_campaign(ctx, account, campaign_id)
        rows = _rows(ctx, aq.campaign_hits(ctx.store.database, account, campaign_id))
        return {"campaign_id": campaign_id, **aq.shape_filtered(rows)}

    @get("/{campaign_id:str}/best-time", sync_to_thread=True)
    def best_time(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """When this campaign's audience opens: the modal hour (0-23) and weekday in each reader's own local
        time (GeoIP time zone), with the sample size; below 5 opens, the whole account's audience."""
        _require_campaign(ctx, account, campaign_id)
        db = ctx.store.database
        campaign = aq.audience_best_time(
            _rows(ctx, aq.audience_slots(db, account, [campaign_id])), "campaign"
        )
        best = campaign
        if campaign.sample_size < aq.MIN_SAMPLE:
            best = aq.first_sufficient(_account_best_time(ctx, account))
        return {"campaign_id": campaign_id, "best_time_to_send": best.as_dict()}


def _series(
    campaign_id: str,
    *,
    bucket: str,
    tz: str,
    include_machine: bool,
    span: aq.Span | None,
    series: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "bucket": bucket,
        "tz": tz,
        "from": span.starts[0].isoformat() if span else None,
        "to": span.stop.isoformat() if span else None,
        "include_machine": include_machine,
        "series": series,
    }


def _account_best_time(ctx: ApiContext, account: str) -> aq.BestTime:
    return aq.audience_best_time(_rows(ctx, aq.audience_slots(ctx.store.database, account, None)), "account")


class MessageTimelineController(Controller):
    path = "/v1/messages"
    dependencies = {"account": account_dependency}  # noqa: RUF012
    tags = ["analytics"]  # noqa: RUF012

    @get("/{message_id:str}/timeline", sync_to_thread=True)
    def timeline(
        self, message_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Every counted open and click of one message, oldest first: time, kind, verdict (machine opens are
        included and marked), reason, client, device, OS, place, whether through a mail proxy, link."""
        db = ctx.store.database
        sends = _rows(ctx, send_of_message(db, account, message_id))
        if not sends:
            raise NotFoundException(f"no message {message_id!r}")
        campaign_id = sends[0][0]
        rows = _rows(ctx, aq.message_timeline(db, account, campaign_id, message_id))
        return {"message_id": message_id, "campaign_id": campaign_id, "timeline": aq.shape_timeline(rows)}


def _counts(ctx: ApiContext, account: str, messages: Sequence[tuple[str, str]]) -> list[tuple[Any, ...]]:
    if not messages:
        return []
    return _rows(ctx, aq.messages_counts(ctx.store.database, account, messages))


@get("/v1/messages", dependencies=_ACCOUNT, tags=_TAGS, sync_to_thread=True)
def list_messages(
    *,
    account: NamedDependency[str],
    ctx: NamedDependency[ApiContext],
    campaign_id: Annotated[
        str | None, QueryParameter(max_length=256, description="Only this campaign.")
    ] = None,
    recipient: Annotated[
        str | None, QueryParameter(max_length=512, description="Only this recipient.")
    ] = None,
    opened: Annotated[
        bool | None,
        QueryParameter(description="Only messages with (true) or without (false) a human open."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The account's messages, most recently sent first, with opens, machine opens, clicks and the first
    open. Keyset pagination: pass `next_cursor` back as `cursor`."""
    db = ctx.store.database
    try:
        q = aq.message_list(
            db,
            account,
            limit=limit,
            cursor=cursor,
            campaign_id=campaign_id,
            recipient=None if recipient is None else normalize_recipient(recipient),  # schemas.recipient
            opened=opened,
        )
    except aq.BadQuery as exc:
        raise _bad(exc) from exc
    page = aq.distinct_sends(_rows(ctx, q))
    counts = _counts(ctx, account, [(row[1], row[0]) for row in page[:limit]])
    return aq.shape_message_page(page, limit, counts)


@get("/v1/recipients/{recipient:str}", dependencies=_ACCOUNT, tags=_TAGS, sync_to_thread=True)
def recipient_view(
    *,
    recipient: RecipientPath,
    account: NamedDependency[str],
    ctx: NamedDependency[ApiContext],
    limit: Annotated[
        int, QueryParameter(ge=1, le=aq.MAX_PAGE, description="Most recent messages listed.")
    ] = 100,
    history: Annotated[
        int, QueryParameter(ge=0, le=aq.MAX_PAGE, description="Most recent opens listed.")
    ] = 20,
) -> dict[str, Any]:
    """A recipient's messages (opens, clicks, first open), their recent opens, and the best time to send
    to them: the modal hour and weekday of their human opens in their own time zone (GeoIP), or, below 5
    such opens, of the audience of the campaigns they were sent, then of the account (`basis` says)."""
    db = ctx.store.database
    recipient = normalize_recipient(recipient)  # stored in this form (schemas.recipient)
    message_rows = _rows(ctx, aq.recipient_messages(db, account, recipient, limit=limit))
    if not message_rows:
        raise NotFoundException(f"no recipient {recipient!r}")
    counts = _counts(ctx, account, [(row[1], row[0]) for row in message_rows[:limit]])
    open_rows = _rows(ctx, aq.recipient_opens(db, account, recipient))
    best = aq.recipient_best_time([(row[0], row[1]) for row in open_rows])
    if best.sample_size < aq.MIN_SAMPLE:
        campaigns = [row[0] for row in _rows(ctx, aq.recipient_campaigns(db, account, recipient))]
        audience = aq.audience_best_time(_rows(ctx, aq.audience_slots(db, account, campaigns)), "campaigns")
        if audience.sample_size < aq.MIN_SAMPLE:
            audience = aq.first_sufficient(_account_best_time(ctx, account))
        best = audience
    return aq.shape_recipient(
        recipient,
        message_rows=message_rows,
        limit=limit,
        open_rows=open_rows,
        count_rows=counts,
        history=history,
        best=best,
    )


def analytics_handlers() -> list[Any]:
    """Every handler of the analyst API, to register *after* `api.routes.MessageController` and
    `api.privacy.PrivacyController` (the plain handlers join the paths those controllers made)."""
    return [CampaignAnalyticsController, MessageTimelineController, list_messages, recipient_view]
