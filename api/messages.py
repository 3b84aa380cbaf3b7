"""``/v1/messages`` and ``/v1/instrument``: register sent emails (one, a batch, or one with its HTML
instrumented), and answer a message's stats, its timeline, and the account's list of messages.

Handlers are thin: parse, call a pure planner (`api.registry`, `api.sql.messages`), run the store calls in a
worker thread (``sync_to_thread``), shape. Every read is scoped to the caller's account: another account's id
answers 404, exactly like an unknown one. Message answers read ``events``, ``filtered_hits`` and ``sends`` by
their indexes (not the rollups). A registration reads the store once and inserts once, all or nothing
(`_plan`, `_store`); a recipient who must not be tracked gets no pixel and their links untouched (`tracking`).
Which links are tracked, and why the others are not (``untracked_links``), is `api.link_controls`' decision.

Litestar 2.25 cannot share a path between two controllers (both add an OPTIONS handler), so
``GET /v1/messages`` is a plain handler (`list_messages`) registered after `MessageController`, which owns
``POST /v1/messages``. The analyst endpoints keep their ``analytics`` tag (`MessageTimelineController`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT

from api.account_settings import BadSetting, check_base_url
from api.consent_state import recipients_consent
from api.context import ApiContext, Cursor, Limit, account_dependency
from api.instrument import rewrite_html, scan_links
from api.link_controls import LinkChoice, LinkSeen, choose, list_unsubscribe_urls
from api.message_bodies import MAX_BATCH, BatchIn, InstrumentIn, MessageIn, RegistrationRules
from api.openapi import Conflict
from api.preferences import preferences_url
from api.registry import REGISTERED_SEND_COLUMNS, BadMessage, Registration, check_sent_at, register
from api.sql import deliveries, filtered, reads
from api.sql import messages as sql
from api.sql.common import BadQuery
from api.tracking import TrackingDecision, aggregate_pixel_url, decide
from api.utm import Utm
from schemas.consent import Tracking, effective_mode
from schemas.recipient import normalize_recipient
from schemas.tokens import recipient_tag


class MessageController(Controller):
    path = "/v1"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["messages"]  # noqa: RUF012

    @post(
        "/messages", status_code=HTTP_201_CREATED, sync_to_thread=True, raises=[Conflict, RegistrationRules]
    )
    def register_message(
        self, data: JSONBody[MessageIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register one sent email: its pixel URL and a tracked URL for each link (`untracked_links`: each
        link left as it is, and why)."""
        return _register(ctx, account, data, _given(data))[0]

    @post(
        "/messages/batch",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        raises=[Conflict, RegistrationRules],
    )
    def register_messages(
        self, data: JSONBody[BatchIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register up to 1000 sent emails at once, all or nothing: each answer is what `POST /v1/messages`
        gives, in the request's order. One store lookup and one insert for the whole batch."""
        if not 1 <= len(data.messages) <= MAX_BATCH:
            raise ClientException(
                f"messages: a batch holds 1 to {MAX_BATCH} messages, got {len(data.messages)}"
            )
        plans = _plan(ctx, account, [(m, _given(m)) for m in data.messages], batch=True)
        _store(ctx, plans)
        return {"messages": [_answer(plan) for plan in plans]}

    @post(
        "/instrument", status_code=HTTP_201_CREATED, sync_to_thread=True, raises=[Conflict, RegistrationRules]
    )
    def instrument(
        self, data: JSONBody[InstrumentIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register an email and return its HTML with the pixel added and its http(s) links tracked, but
        those left as they are by the link controls (`untracked_links`, with the reason of each); no-track
        marker attributes are removed. Not tracked individually (do-not-track, consent): no link is
        tracked, and the pixel is the campaign's aggregate one or none."""
        done, planned = _register(ctx, account, data, [*_given(data), *scan_links(data.html)])
        tracked = planned.registration.links if planned.decision.individual else {}
        html = rewrite_html(data.html, pixel_url=done["pixel_url"], tracked=tracked)
        return {**done, "html": html}

    @get("/messages/{message_id:str}", sync_to_thread=True)
    def message_stats(
        self, message_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Opens, machine opens, clicks and filtered hits of one message, its mail service's id
        (`provider_message_id`), its delivery status by the counting rules and its latest delivery event."""
        db = ctx.store.database
        sends = ctx.read(sql.send_of_message(db, account, message_id))
        if not sends:
            # A send the retention dropped before its opens: the campaign counts it as sent, so it answers.
            sends = [
                (*row[:1], None, row[1], [], "")
                for row in ctx.read(sql.message_of_hits(db, account, message_id))
            ]
        if not sends:
            raise NotFoundException(f"no message {message_id!r}")
        campaign_id = sends[0][0]
        counts = ctx.read(sql.message_counts(db, account, campaign_id, message_id))[0]
        dropped = filtered.tally(ctx.read(filtered.filtered_breakdown(db, account, campaign_id, message_id)))
        events = ctx.read(deliveries.message_deliveries(db, account, campaign_id, message_id))
        read = bool(counts[0] or counts[1] or counts[4])  # opens, machine opens, clicks: proof of delivery
        return {
            **sql.shape_stats(message_id, sends[0], counts, dropped),
            **deliveries.message_status(events, read=read),
        }


class MessageTimelineController(Controller):
    path = "/v1/messages"
    dependencies = {"account": account_dependency}  # noqa: RUF012
    tags = ["analytics"]  # noqa: RUF012

    @get("/{message_id:str}/timeline", sync_to_thread=True)
    def timeline(
        self, message_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Every counted open and click of one message, oldest first: time, kind, verdict (machine opens are
        included and marked), reason, client, device, OS, place, whether through a mail proxy, link; and its
        mail service's delivery events among them (`kind` "delivery": event, bounce type, provider, SMTP
        status and code, diagnostic), in the order they happened. Each open has `read_seconds` (how long it
        stayed on screen; null when the open was not timed or nothing was measured) and `read_category`
        (read, skimmed, glanced, unknown; null when the open was not timed)."""
        db = ctx.store.database
        sends = ctx.read(sql.send_of_message(db, account, message_id))
        if not sends:
            raise NotFoundException(f"no message {message_id!r}")
        campaign_id = sends[0][0]
        rows = ctx.read(sql.message_timeline(db, account, campaign_id, message_id))
        timed: dict[str, tuple[int, str]] = {}
        if any(row[1] == "open" for row in rows):  # read time (issue 18): the opens' read records
            q = reads.message_reads(db, account, campaign_id, message_id)
            timed = {str(hit_id): (int(ms), str(end)) for hit_id, ms, end in ctx.read(q)}
        events = ctx.read(deliveries.message_deliveries(db, account, campaign_id, message_id))
        timeline = deliveries.merge_timeline(sql.shape_timeline(rows, timed), events)
        return {"message_id": message_id, "campaign_id": campaign_id, "timeline": timeline}


_ACCOUNT: Final = {"account": account_dependency}


@get("/v1/messages", dependencies=_ACCOUNT, tags=["analytics"], sync_to_thread=True)
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
        q = sql.message_list(
            db,
            account,
            limit=limit,
            cursor=cursor,
            campaign_id=campaign_id,
            recipient=None if recipient is None else normalize_recipient(recipient),  # schemas.recipient
            opened=opened,
        )
    except BadQuery as exc:
        raise ClientException(str(exc)) from exc
    page = sql.distinct_sends(ctx.read(q))
    shown = [(row[1], row[0]) for row in page[:limit]]
    counts = ctx.read(sql.messages_counts(db, account, shown)) if shown else []
    return sql.shape_message_page(page, limit, counts)


@dataclass(frozen=True, slots=True)
class Planned:
    """A registration (`api.registry`) and how it is tracked (`api.tracking`), with the URLs that follow."""

    registration: Registration
    decision: TrackingDecision
    pixel_url: str | None  # individual: the message's; aggregate: the campaign's; none (or track_opens false)
    preferences_url: str | None  # individual only
    links: LinkChoice  # which links are tracked, and why not the others (`api.link_controls`)

    @property
    def send_row(self) -> list[Any]:
        return [*self.registration.send_row, self.decision.tracking.value]


def _given(data: MessageIn) -> list[LinkSeen]:
    """The links given in the body's ``links`` (http(s) URLs, by its schema)."""
    return [LinkSeen(url) for url in data.links]


def _utm(data: MessageIn) -> Utm | None:
    """The message's UTM parameters; ``utm_campaign`` is its campaign id unless given."""
    if data.utm is None:
        return None
    given = data.utm
    campaign = data.campaign_id if given.campaign is None else given.campaign
    return Utm(given.source, given.medium, campaign, given.term, given.content)


def _register(
    ctx: ApiContext, account: str, data: MessageIn, seen: list[LinkSeen]
) -> tuple[dict[str, Any], Planned]:
    """Register one message (see `_plan`); its answer, and its plan."""
    plans = _plan(ctx, account, [(data, seen)], batch=False)
    _store(ctx, plans)
    return _answer(plans[0]), plans[0]


def _plan(
    ctx: ApiContext, account: str, items: Sequence[tuple[MessageIn, list[LinkSeen]]], *, batch: bool
) -> list[Planned]:
    """Plan the registration of each item, in order, reading the store once; store nothing.

    A message id already registered keeps its first ``sent_at``, so registering it again gives the same URLs;
    the same id for another campaign or recipient is a 409, whether it was registered before or earlier in
    ``items``. Raises before anything is stored, so a batch is all or nothing. In a batch, every error names
    the item (``messages[3]: ...``).
    """
    now = ctx.clock()
    # How each recipient may be tracked (issue 19): the account's settings (this process's copy, at most a
    # second old), their consent and do-not-track: at most two reads for the whole batch.
    settings = ctx.settings(account)
    consent = recipients_consent(
        ctx, account, list(dict.fromkeys(normalize_recipient(d.recipient) for d, _ in items)),
        mode=settings.consent_mode,
    )  # fmt: skip
    given = list(dict.fromkeys(data.message_id for data, _ in items if data.message_id is not None))
    # message id -> (campaign id, recipient, sent_at, index of the item that registered it, None: the store)
    known: dict[str, tuple[str, str, datetime, int | None]] = {}
    if given:
        q = sql.sends_of_messages(ctx.store.database, account, given)
        for message_id, (campaign_id, recipient, sent_at) in ctx.read(q):
            known[message_id] = (campaign_id, recipient, sent_at, None)
    plans = []
    for index, (data, seen) in enumerate(items):
        where = f"messages[{index}]: " if batch else ""
        message_id = data.message_id or secrets.token_urlsafe(16)
        sent_at = data.sent_at or now
        previous = known.get(message_id)
        if previous is not None:
            campaign_id, recipient, previous_sent_at, first = previous
            same = normalize_recipient(recipient) == normalize_recipient(data.recipient)  # schemas.recipient
            if campaign_id != data.campaign_id or not same:
                before = "" if first is None else f" by messages[{first}] of this batch"
                raise ClientException(
                    f"{where}message {message_id!r} is already registered{before} "
                    "for another campaign or recipient",
                    status_code=HTTP_409_CONFLICT,
                )
            sent_at = previous_sent_at  # registering again gives the same URLs
        of = consent[normalize_recipient(data.recipient)]
        decision = decide(
            effective_mode(settings.consent_mode, of.state), of.state, do_not_track=of.do_not_track,
            aggregate_wanted=settings.aggregate_opens,
        )  # fmt: skip
        try:
            base_url = _base_url(ctx, settings.tracking_base_url, data.tracking_base_url)
            choice = choose(
                seen,
                list_unsubscribe=list_unsubscribe_urls(data.list_unsubscribe),
                track_clicks=data.track_clicks,
                own_bases=(base_url, ctx.public_url),
            )
            plan = register(
                keyring=ctx.keyring,
                public_url=base_url,
                account=account,
                campaign_id=data.campaign_id,
                message_id=message_id,
                recipient=data.recipient,
                sent_at=sent_at,
                links=list(dict.fromkeys(link.url for link in seen if link.web)),
                now=now,
                provider_message=data.provider_message_id,
                track=frozenset(choice.tracked),
                utm=_utm(data),
                read_time=data.read_time,
            )
            if data.sent_at is not None:  # the client's own value (a known message keeps its first)
                check_sent_at(data.sent_at, now=now, retention_days=ctx.retention_days)
        except BadMessage as exc:
            raise ClientException(f"{where}{exc}") from exc
        if previous is None:
            known[message_id] = (data.campaign_id, data.recipient, sent_at, index)
        tracked = _tracked(
            ctx, account, plan, decision=decision, base_url=base_url, links=choice,
            track_opens=data.track_opens,
        )  # fmt: skip
        plans.append(tracked)
    return plans


def _base_url(ctx: ApiContext, account_url: str | None, message_url: str | None) -> str:
    """The base of the send's URLs: the message's own (checked), else the account's, else the public URL."""
    if message_url is not None:
        try:
            return check_base_url(message_url)
        except BadSetting as exc:
            raise BadMessage(str(exc)) from exc
    return account_url or ctx.public_url


def _tracked(
    ctx: ApiContext,
    account: str,
    plan: Registration,
    *,
    decision: TrackingDecision,
    base_url: str,
    links: LinkChoice,
    track_opens: bool,
) -> Planned:
    """The registration's URLs as its tracking allows: the pixel, tracked links and the recipient's
    preferences page for an individual send; the campaign's aggregate pixel for an aggregate send; nothing
    otherwise. No pixel of either kind when the message asks for none (``track_opens`` false)."""
    campaign_id = plan.send_row[1]
    if decision.individual:
        tag = recipient_tag(ctx.keyring.signing_key[1], account, plan.send_row[3])
        page = preferences_url(ctx.keyring, base_url, account, campaign_id, plan.message_id, tag)
        return Planned(plan, decision, plan.pixel_url if track_opens else None, page, links)
    if decision.tracking is Tracking.AGGREGATE and track_opens:
        sent_at = int(plan.send_row[4].timestamp())
        pixel_url = aggregate_pixel_url(ctx.keyring, base_url, account, campaign_id, sent_at)
        return Planned(plan, decision, pixel_url, None, links)
    return Planned(plan, decision, None, None, links)


def _store(ctx: ApiContext, plans: Sequence[Planned]) -> None:
    """One insert for every planned message. A message registered again is stored again (its latest links
    win: ``sends`` is a ReplacingMergeTree on ``registered_at``); an id given twice in one batch is stored
    once, with its last item's links."""
    rows = {plan.registration.message_id: plan.send_row for plan in plans}
    ctx.store.insert("sends", (*REGISTERED_SEND_COLUMNS, "tracking"), list(rows.values()))


def _answer(plan: Planned) -> dict[str, Any]:
    """The registration's answer. Each link maps to its tracked URL, or to itself when it is left as it is
    (`untracked_links` says why, `api.link_controls`). A send not tracked individually gets every link as it
    is and the campaign's aggregate pixel or none (it is registered all the same: it counts as sent);
    `tracking` and `tracking_reason` say how and why (`api.tracking`)."""
    registration, decision = plan.registration, plan.decision
    signed = registration.links if decision.individual else {}
    return {
        "message_id": registration.message_id,
        "tracked": decision.individual,
        "tracking": decision.tracking.value,
        "tracking_reason": decision.reason,
        "pixel_url": plan.pixel_url,
        "links": {url: signed.get(url, url) for url in registration.registered},
        "untracked_links": plan.links.untracked(instead=decision.reason),
        "tracking_preferences_url": plan.preferences_url,
    }
