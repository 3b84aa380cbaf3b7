"""The API's routes: register and instrument messages, and answer per-message and per-campaign stats.

Handlers are thin: parse, call a pure planner (`api.registry`, `api.queries`), run the store call in a worker
thread (``sync_to_thread``), shape the answer. Every read is scoped to the caller's account: another
account's id answers 404, exactly like an unknown one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT

from api import queries
from api.auth import account_of
from api.errors import PATTERN_WORDS
from api.instrument import find_links, rewrite_html
from api.openapi import Conflict, bad_request
from api.registry import (
    MAX_LINKS,
    MAX_URL_CHARS,
    SEND_COLUMNS,
    BadMessage,
    Registration,
    check_sent_at,
    register,
)
from schemas.recipient import normalize_recipient
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


# The host is a name (or IPv4 address) or a bracketed IPv6 literal, with an optional port.
LINK_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9][^\s/?#@\\\[\]]*|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?)(?:[/?#]\S*)?$"
)
PATTERN_WORDS[LINK_PATTERN] = "an absolute http(s) URL with a host and no user name or password"
# What `api.registry.check_link` accepts, as the schema says it: an absolute http(s) URL with a host and no
# user name or password, at most 2048 characters.
Link = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_URL_CHARS,
        pattern=LINK_PATTERN,
        description="An absolute http(s) URL with a host, without a user name or password (`user:pass@`).",
    ),
]
SentAt = Annotated[
    datetime,
    msgspec.Meta(
        extra_json_schema={"format": "date-time"},
        description="When the email was sent (default: now). Refused (400) if older than the retention "
        "(`PIXELPIPE_RETENTION_DAYS`, 396 days by default) or more than 15 minutes in the future.",
    ),
]


# What `schemas.recipient.checked_recipient` accepts, as the schema says it: something not blank, without
# control characters or line separators.
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
RECIPIENT_PATTERN = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]*$"
PATTERN_WORDS[RECIPIENT_PATTERN] = "an address that is not blank and holds no control character or line break"
Recipient = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        pattern=RECIPIENT_PATTERN,
        description="The recipient's address. Compared trimmed and in lower case (one recipient however "
        "it is written); refused (400) when blank or holding a control character or line break.",
    ),
]
# The same rule for a recipient named in a path (`/v1/recipients/{recipient}`, percent-encoded).
RecipientPath = Annotated[
    str,
    Parameter(
        max_length=512,
        pattern=RECIPIENT_PATTERN,
        description="The recipient's address, percent-encoded (`/` as `%2F`); any case, trimmed.",
    ),
]


RegistrationRules = bad_request(
    "a recipient that is blank or holds a control character or line break; "
    "`sent_at` older than the retention (PIXELPIPE_RETENTION_DAYS) or more than 15 minutes in the future; "
    "a link that is not an absolute http(s) URL with a host, or that carries a user name or password; "
    "an unknown field; a batch of no message or more than 1000; more than 1000 links"
)


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown fields are refused (400)."""

    campaign_id: Id
    recipient: Recipient
    message_id: Id | None = None
    sent_at: SentAt | None = None
    links: Annotated[list[Link], msgspec.Meta(max_length=MAX_LINKS)] = msgspec.field(default_factory=list)


MAX_BATCH = 1000  # messages per POST /v1/messages/batch


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    messages: Annotated[list[MessageIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class InstrumentIn(MessageIn, forbid_unknown_fields=True):
    html: str = ""


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    keyring: Keyring
    public_url: str
    api_keys: Mapping[str, str] = field(repr=False)  # bearer key -> account: secrets, kept out of the repr
    do_not_track: DoNotTrack | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    webhook_allow_private: bool = False  # PIXELPIPE_WEBHOOK_ALLOW_PRIVATE: see `schemas.webhook_guard`
    retention_days: int = 396  # PIXELPIPE_RETENTION_DAYS: a send older than this is refused


def _account(request: Request[Any, Any, Any], ctx: NamedDependency[ApiContext]) -> str:
    return account_of(request.headers.get("authorization"), ctx.api_keys)


# Every controller of the API resolves the caller's account with this.
account_dependency = Provide(_account, sync_to_thread=False)


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
        """Opens, machine opens, clicks and filtered hits of one message."""
        db = ctx.store.database
        q = queries.send_of_message(db, account, message_id)
        sends = ctx.store.query(q.sql, q.parameters)
        if not sends:
            # A send the retention dropped before its opens: the campaign counts it as sent, so it answers.
            q = queries.message_of_hits(db, account, message_id)
            sends = [(*row[:1], None, row[1], []) for row in ctx.store.query(q.sql, q.parameters)]
        if not sends:
            raise NotFoundException(f"no message {message_id!r}")
        campaign_id, recipient, sent_at, links = sends[0]
        q = queries.message_counts(db, account, campaign_id, message_id)
        opens, machine_opens, first_open, last_open, clicks, first_click = ctx.store.query(
            q.sql, q.parameters
        )[0]
        q = queries.filtered_breakdown(db, account, campaign_id, message_id)
        filtered = queries.shape_filtered(ctx.store.query(q.sql, q.parameters))
        return {
            "message_id": message_id,
            "campaign_id": campaign_id,
            "recipient": recipient,
            "sent_at": queries.iso(sent_at),
            "links": list(links),
            "opens": opens,
            "machine_opens": machine_opens,
            "first_open_at": queries.iso(first_open) if opens else None,
            "last_open_at": queries.iso(last_open) if opens else None,
            "clicks": clicks,
            "first_click_at": queries.iso(first_click) if clicks else None,
            "bot_clicks": filtered.bot_clicks,
            "bot_opens": filtered.bot_opens,
            "filtered": filtered.by_reason,
        }


class CampaignController(Controller):
    path = "/v1/campaigns"
    dependencies = {"account": account_dependency}  # noqa: RUF012
    tags = ["campaigns"]  # noqa: RUF012

    @get("/{campaign_id:str}/stats", sync_to_thread=True)
    def campaign_stats(
        self, campaign_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Sends, opens, unique opens, machine opens, clicks, rates and filtered hits of a campaign."""
        # Read from the rollups (exact, ~20 ms at 10 M events); api.analytics imports this module.
        from api.analytics import campaign_summary  # noqa: PLC0415

        return campaign_summary(ctx, account, campaign_id, include_machine=False)


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
        q = queries.sends_of_messages(ctx.store.database, account, given)
        for message_id, (campaign_id, recipient, sent_at) in ctx.store.query(q.sql, q.parameters):
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
    ctx.store.insert("sends", SEND_COLUMNS, list(rows.values()))


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
