"""``/v1/messages`` and ``/v1/instrument``: register sent emails (one, a batch, or one with its HTML
instrumented), and answer a message's stats, its timeline, and the account's list of messages.

Handlers are thin: parse, call a pure planner (`api.registry`, `api.sql.messages`), run the store calls in a
worker thread (``sync_to_thread``), shape. Every read is scoped to the caller's account: another account's id
answers 404, exactly like an unknown one. Message answers read ``events``, ``filtered_hits`` and ``sends`` by
their indexes (not the rollups). A registration reads the store once and inserts once, all or nothing
(`_plan`, `_store`); a recipient who must not be tracked gets no pixel and their links untouched (`tracking`).

Litestar 2.25 cannot share a path between two controllers (both add an OPTIONS handler), so
``GET /v1/messages`` is a plain handler (`list_messages`) registered after `MessageController`, which owns
``POST /v1/messages``. The analyst endpoints keep their ``analytics`` tag (`MessageTimelineController`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT

from api.context import ApiContext, Cursor, Limit, account_dependency
from api.instrument import find_links, rewrite_html
from api.message_bodies import MAX_BATCH, BatchIn, InstrumentIn, MessageIn, RegistrationRules
from api.openapi import Conflict
from api.registry import REGISTERED_SEND_COLUMNS, BadMessage, Registration, check_sent_at, register
from api.sql import deliveries, filtered, reads
from api.sql import messages as sql
from api.sql.common import BadQuery
from schemas.recipient import normalize_recipient


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
        """Register one sent email: its pixel URL and a tracked URL for each link."""
        return _register(ctx, account, data, data.links)

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
        plans = _plan(ctx, account, [(m, m.links) for m in data.messages], batch=True)
        _store(ctx, plans)
        tracked = [tracking(ctx, account, m.recipient) for m in data.messages]
        return {"messages": [_answer(plan, tracked=t) for plan, t in zip(plans, tracked, strict=True)]}

    @post(
        "/instrument", status_code=HTTP_201_CREATED, sync_to_thread=True, raises=[Conflict, RegistrationRules]
    )
    def instrument(
        self, data: JSONBody[InstrumentIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register an email and return its HTML with the pixel added and every http(s) link tracked."""
        links = list(dict.fromkeys([*data.links, *find_links(data.html)]))
        done = _register(ctx, account, data, links)
        if not done["tracked"]:  # do-not-track: the HTML goes out as it came
            return {**done, "html": data.html}
        html = rewrite_html(data.html, pixel_url=done["pixel_url"], tracked=done["links"])
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


def tracking(ctx: ApiContext, account: str, recipient: str) -> bool:
    """Whether this recipient may be tracked: not when they opted out or were erased (the process's
    do-not-track set, which the store, the API and the privacy topic keep current). Checked by their tags
    under every key, as the edge checks a token's, so "the same recipient" means here what it means there
    (and a suppression made before a key rotation still holds)."""
    suppressed = ctx.do_not_track
    if suppressed is None:
        return True
    return not any(tag in suppressed for tag in ctx.keyring.recipient_tags(account, recipient))


def _register(ctx: ApiContext, account: str, data: MessageIn, links: list[str]) -> dict[str, Any]:
    """Register one message (see `_plan`); its answer."""
    plans = _plan(ctx, account, [(data, links)], batch=False)
    _store(ctx, plans)
    return _answer(plans[0], tracked=tracking(ctx, account, data.recipient))


def _plan(
    ctx: ApiContext, account: str, items: Sequence[tuple[MessageIn, list[str]]], *, batch: bool
) -> list[Registration]:
    """Plan the registration of each item, in order, reading the store once; store nothing.

    A message id already registered keeps its first ``sent_at``, so registering it again gives the same URLs;
    the same id for another campaign or recipient is a 409, whether it was registered before or earlier in
    ``items``. Raises before anything is stored, so a batch is all or nothing. In a batch, every error names
    the item (``messages[3]: ...``).
    """
    now = ctx.clock()
    given = list(dict.fromkeys(data.message_id for data, _ in items if data.message_id is not None))
    # message id -> (campaign id, recipient, sent_at, index of the item that registered it, None: the store)
    known: dict[str, tuple[str, str, datetime, int | None]] = {}
    if given:
        q = sql.sends_of_messages(ctx.store.database, account, given)
        for message_id, (campaign_id, recipient, sent_at) in ctx.read(q):
            known[message_id] = (campaign_id, recipient, sent_at, None)
    plans = []
    for index, (data, links) in enumerate(items):
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
        try:
            plan = register(
                keyring=ctx.keyring,
                public_url=ctx.public_url,
                account=account,
                campaign_id=data.campaign_id,
                message_id=message_id,
                recipient=data.recipient,
                sent_at=sent_at,
                links=links,
                now=now,
                provider_message=data.provider_message_id,
                read_time=data.read_time,
            )
            if data.sent_at is not None:  # the client's own value (a known message keeps its first)
                check_sent_at(data.sent_at, now=now, retention_days=ctx.retention_days)
        except BadMessage as exc:
            raise ClientException(f"{where}{exc}") from exc
        if previous is None:
            known[message_id] = (data.campaign_id, data.recipient, sent_at, index)
        plans.append(plan)
    return plans


def _store(ctx: ApiContext, plans: Sequence[Registration]) -> None:
    """One insert for every planned message. A message registered again is stored again (its latest links
    win: ``sends`` is a ReplacingMergeTree on ``registered_at``); an id given twice in one batch is stored
    once, with its last item's links."""
    rows = {plan.message_id: plan.send_row for plan in plans}
    ctx.store.insert("sends", REGISTERED_SEND_COLUMNS, list(rows.values()))


def _answer(plan: Registration, *, tracked: bool) -> dict[str, Any]:
    """The registration's answer. A recipient who must not be tracked gets no pixel and their links as they
    are (the send is registered all the same: it counts as sent)."""
    if not tracked:
        return {
            "message_id": plan.message_id,
            "tracked": False,
            "pixel_url": None,
            "links": {url: url for url in plan.links},
        }
    return {"message_id": plan.message_id, "tracked": True, "pixel_url": plan.pixel_url, "links": plan.links}
