"""Webhook registration: create, list and delete an account's endpoints, and read their delivery attempts.

Owns the ``webhooks`` rows (written here, read by `processors.notify.WebhookDirectory`) and the answers about
``webhook_deliveries``. The secret is generated here and shown once, in the answer to the creation; it is
never listed again. Never answers across accounts: another account's webhook is a 404, like an unknown one.
Delivery itself is the dispatcher's (`processors.notify`); a change here reaches it within its refresh
interval (1 s by default).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api import queries
from api.routes import ApiContext, _account
from schemas.notices import WEBHOOK_COLUMNS, WebhookEvent
from schemas.store import Store

MAX_WEBHOOKS_PER_ACCOUNT: Final = 16


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=8)]


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials in it; `ValueError` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be absolute http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL would be sent to every delivery log; use the signature")
    if port == 0 or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValueError("the URL has a bad port or control characters")
    return url


def _shape(row: tuple[Any, ...]) -> dict[str, Any]:
    webhook_id, url, events, created_at = row
    return {"id": webhook_id, "url": url, "events": list(events), "created_at": queries.iso(created_at)}


def _live_webhooks(store: Store, account: str, webhook_id: str | None = None) -> list[tuple[Any, ...]]:
    where = "account = {account:String} AND NOT deleted"
    parameters: dict[str, Any] = {"account": account}
    if webhook_id is not None:
        where += " AND webhook_id = {webhook_id:String}"
        parameters["webhook_id"] = webhook_id
    return store.query(
        f"""SELECT webhook_id, url, events, created_at, secret
            FROM {store.database}.webhooks FINAL WHERE {where}
            ORDER BY created_at, webhook_id""",  # a validated database name; values are bound
        parameters,
    )


class WebhookController(Controller):
    path = "/v1/webhooks"
    dependencies = {"account": Provide(_account, sync_to_thread=False)}  # noqa: RUF012 - Litestar reads it
    tags = ["webhooks"]  # noqa: RUF012

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def create_webhook(
        self, data: JSONBody[WebhookIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register an endpoint for some of `first_open`, `open`, `click`, `machine_open`.

        The answer carries the signing `secret`, shown this once. Each delivery is a POST of
        `{"id", "type", "created_at", "data"}` signed in the `Pixelpipe-Signature` header.
        """
        try:
            url = check_url(data.url)
        except ValueError as exc:
            raise ClientException(f"url: {exc}") from exc
        if len(_live_webhooks(ctx.store, account)) >= MAX_WEBHOOKS_PER_ACCOUNT:
            raise ClientException(f"an account has at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks")
        events = list(dict.fromkeys(data.events))
        webhook_id = "wh_" + secrets.token_hex(8)
        secret = "whsec_" + secrets.token_urlsafe(32)
        now = ctx.clock()
        ctx.store.insert(
            "webhooks", WEBHOOK_COLUMNS, [[account, webhook_id, url, events, secret, now, now, False]]
        )
        return {
            "id": webhook_id,
            "url": url,
            "events": events,
            "secret": secret,
            "created_at": queries.iso(now),
        }

    @get("/", sync_to_thread=True)
    def list_webhooks(
        self, account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The account's webhooks (without their secrets)."""
        return {"webhooks": [_shape(row[:4]) for row in _live_webhooks(ctx.store, account)]}

    @get("/{webhook_id:str}", sync_to_thread=True)
    def get_webhook(
        self, webhook_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """One webhook (without its secret)."""
        rows = _live_webhooks(ctx.store, account, webhook_id)
        if not rows:
            raise NotFoundException(f"no webhook {webhook_id!r}")
        return _shape(rows[0][:4])

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_webhook(
        self, webhook_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> None:
        """Stop deliveries to a webhook; what is still pending for it is dropped."""
        rows = _live_webhooks(ctx.store, account, webhook_id)
        if not rows:
            raise NotFoundException(f"no webhook {webhook_id!r}")
        _, url, events, created_at, secret = rows[0]
        now: datetime = ctx.clock()
        ctx.store.insert(
            "webhooks",
            WEBHOOK_COLUMNS,
            [[account, webhook_id, url, list(events), secret, created_at, now, True]],
        )

    @get("/{webhook_id:str}/deliveries", sync_to_thread=True)
    def deliveries(
        self,
        webhook_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        limit: FromQuery[Annotated[int, msgspec.Meta(ge=1, le=1000)]] = 100,
    ) -> dict[str, Any]:
        """The latest delivery attempts to a webhook, newest first: status, response code, error, next try."""
        if not _live_webhooks(ctx.store, account, webhook_id):
            raise NotFoundException(f"no webhook {webhook_id!r}")
        rows = ctx.store.query_dicts(
            f"""SELECT delivery_id, notice_id, message_id, type, attempt, status, response_code, error,
                       attempted_at, next_attempt_at, duration_ms
                FROM {ctx.store.database}.webhook_deliveries
                WHERE account = {{account:String}} AND webhook_id = {{webhook_id:String}}
                ORDER BY attempted_at DESC, attempt DESC LIMIT {{limit:UInt32}}""",
            {"account": account, "webhook_id": webhook_id, "limit": limit},
        )
        for row in rows:
            row["attempted_at"] = queries.iso(row["attempted_at"])
            if row["next_attempt_at"] is not None:
                row["next_attempt_at"] = queries.iso(row["next_attempt_at"])
        return {"webhook_id": webhook_id, "deliveries": rows}
