"""The API's routes: register and instrument messages, and answer per-message and per-campaign stats.

Handlers are thin: parse, call a pure planner (`api.registry`, `api.queries`), run the store call in a worker
thread (``sync_to_thread``), shape the answer. Every read is scoped to the caller's account: another
account's id answers 404, exactly like an unknown one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT

from api import queries
from api.auth import account_of
from api.instrument import find_links, rewrite_html
from api.registry import SEND_COLUMNS, BadMessage, register
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    campaign_id: Id
    recipient: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    message_id: Id | None = None
    sent_at: datetime | None = None
    links: list[str] = msgspec.field(default_factory=list)


class InstrumentIn(MessageIn, forbid_unknown_fields=True):
    html: str = ""


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    keyring: Keyring
    public_url: str
    api_keys: Mapping[str, str]
    do_not_track: DoNotTrack | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    webhook_allow_private: bool = False  # PIXELPIPE_WEBHOOK_ALLOW_PRIVATE: see `schemas.webhook_guard`


def _account(request: Request[Any, Any, Any], ctx: NamedDependency[ApiContext]) -> str:
    return account_of(request.headers.get("authorization"), ctx.api_keys)


# Every controller of the API resolves the caller's account with this.
account_dependency = Provide(_account, sync_to_thread=False)


class MessageController(Controller):
    path = "/v1"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["messages"]  # noqa: RUF012

    @post("/messages", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def register_message(
        self, data: JSONBody[MessageIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register one sent email: its pixel URL and a tracked URL for each link."""
        return _register(ctx, account, data, data.links).response

    @post("/instrument", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def instrument(
        self, data: JSONBody[InstrumentIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register an email and return its HTML with the pixel added and every http(s) link tracked."""
        links = list(dict.fromkeys([*data.links, *find_links(data.html)]))
        done = _register(ctx, account, data, links)
        html = rewrite_html(data.html, pixel_url=done.response["pixel_url"], tracked=done.response["links"])
        return {**done.response, "html": html}

    @get("/messages/{message_id:str}", sync_to_thread=True)
    def message_stats(
        self, message_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Opens, machine opens, clicks and filtered hits of one message."""
        db = ctx.store.database
        q = queries.send_of_message(db, account, message_id)
        sends = ctx.store.query(q.sql, q.parameters)
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


@dataclass(frozen=True, slots=True)
class _Registered:
    response: dict[str, Any]


def _register(ctx: ApiContext, account: str, data: JSONBody[MessageIn], links: list[str]) -> _Registered:
    now = ctx.clock()
    message_id = data.message_id or secrets.token_urlsafe(16)
    sent_at = data.sent_at or now
    if data.message_id is not None:
        q = queries.send_of_message(ctx.store.database, account, message_id)
        existing = ctx.store.query(q.sql, q.parameters)
        if existing:
            campaign_id, recipient, previous_sent_at, _ = existing[0]
            if (campaign_id, recipient) != (data.campaign_id, data.recipient):
                raise ClientException(
                    f"message {message_id!r} is already registered for another campaign or recipient",
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
    except BadMessage as exc:
        raise ClientException(str(exc)) from exc
    ctx.store.insert("sends", SEND_COLUMNS, [plan.send_row])
    return _Registered({"message_id": plan.message_id, "pixel_url": plan.pixel_url, "links": plan.links})
