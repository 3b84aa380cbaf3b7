"""Webhook registration: create, list and delete an account's endpoints, and read their delivery attempts.

Owns the ``webhooks`` rows (written here, read by `notices.directory.WebhookDirectory`) and the answers about
``webhook_deliveries``. The secret is generated here and shown once, in the answer to the creation; it is
stored sealed (`schemas.webhook_secrets`) and never listed again (only its last four characters, as a
hint). A URL is refused unless it passes the SSRF rule (`schemas.webhook_guard`) for its host and every
address the host resolves to now; a name that does not resolve yet is accepted (the dispatcher checks again
at every connection). Never answers across accounts: another account's webhook is a 404, like an unknown one.
Delivery itself is the dispatcher's (`notices.dispatcher`); a change here reaches it within its refresh
interval (1 s by default).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import secrets
import socket
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.context import ApiContext, account_dependency
from api.openapi import bad_request
from api.sql import webhooks as sql
from api.sql.common import iso
from schemas.notices import WEBHOOK_COLUMNS, WEBHOOK_EVENTS, WebhookEvent
from schemas.tokens import Keyring
from schemas.webhook_guard import IPAddress, check_addresses, check_url, literal_address
from schemas.webhook_secrets import SecretUnreadable, hint, seal, unseal

MAX_WEBHOOKS_PER_ACCOUNT: Final = 16
RESOLVE_TIMEOUT_S: Final = 3.0
_resolving = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="pixelpipe-webhook-dns")


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=len(WEBHOOK_EVENTS))]


def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [
        ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        for family, _, _, _, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]


def vet_url(url: str, *, allow_private: bool) -> str:
    """``url`` when pixelpipe may call it (`schemas.webhook_guard`); `BlockedTarget` (a `ValueError`) when
    not. Blocking: resolves the host, for at most `RESOLVE_TIMEOUT_S`."""
    target = check_url(url, allow_private=allow_private)
    named = literal_address(target.host) is None
    if named and target.host != "localhost" and not target.host.endswith(".localhost"):
        future = _resolving.submit(_resolve, target.host, target.port)
        try:
            addresses = future.result(timeout=RESOLVE_TIMEOUT_S)
        except (OSError, concurrent.futures.TimeoutError):
            addresses = []  # not resolvable now: the dispatcher resolves and checks at every connection
        if addresses:
            check_addresses(target.host, addresses, allow_private=allow_private)
    return url


def _secret_hint(keyring: Keyring, account: str, webhook_id: str, stored: str) -> str | None:
    try:
        return hint(unseal(keyring, stored, account=account, webhook_id=webhook_id))
    except SecretUnreadable:
        return None


def _shape(keyring: Keyring, account: str, row: tuple[Any, ...]) -> dict[str, Any]:
    webhook_id, url, events, created_at, stored_secret = row
    return {
        "id": webhook_id,
        "url": url,
        "events": list(events),
        "secret_hint": _secret_hint(keyring, account, webhook_id, stored_secret),
        "created_at": iso(created_at),
    }


def _live_webhooks(ctx: ApiContext, account: str, webhook_id: str | None = None) -> list[tuple[Any, ...]]:
    return ctx.read(sql.live_webhooks(ctx.store.database, account, webhook_id))


class WebhookController(Controller):
    path = "/v1/webhooks"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["webhooks"]  # noqa: RUF012

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        sync_to_thread=True,
        raises=[
            bad_request(
                "`url` not http(s), with credentials, or whose host is or resolves to a private address "
                "(unless PIXELPIPE_WEBHOOK_ALLOW_PRIVATE); more webhooks than an account may have"
            )
        ],
    )
    def create_webhook(
        self, data: JSONBody[WebhookIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Register an endpoint for some of `first_open`, `open`, `click`, `machine_open`.

        The answer carries the signing `secret`, shown this once. Each delivery is a POST of
        `{"id", "type", "created_at", "data"}` signed in the `Pixelpipe-Signature` header. The URL must be
        http(s) without credentials, and its host must be and resolve to public addresses only.
        """
        try:
            url = vet_url(data.url, allow_private=ctx.webhook_allow_private)
        except ValueError as exc:
            raise ClientException(f"url: {exc}") from exc
        if len(_live_webhooks(ctx, account)) >= MAX_WEBHOOKS_PER_ACCOUNT:
            raise ClientException(f"an account has at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks")
        events = list(dict.fromkeys(data.events))
        webhook_id = "wh_" + secrets.token_hex(8)
        secret = "whsec_" + secrets.token_urlsafe(32)
        sealed = seal(ctx.keyring, secret, account=account, webhook_id=webhook_id)
        now = ctx.clock()
        ctx.store.insert(
            "webhooks", WEBHOOK_COLUMNS, [[account, webhook_id, url, events, sealed, now, now, False]]
        )
        if ctx.webhooks_changed is not None:  # this process's dispatcher meets it from the next notice on
            ctx.webhooks_changed()
        return {
            "id": webhook_id,
            "url": url,
            "events": events,
            "secret": secret,
            "secret_hint": hint(secret),
            "created_at": iso(now),
        }

    @get("/", sync_to_thread=True)
    def list_webhooks(
        self, account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The account's webhooks (without their secrets)."""
        return {"webhooks": [_shape(ctx.keyring, account, row) for row in _live_webhooks(ctx, account)]}

    @get("/{webhook_id:str}", sync_to_thread=True)
    def get_webhook(
        self, webhook_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """One webhook (without its secret)."""
        rows = _live_webhooks(ctx, account, webhook_id)
        if not rows:
            raise NotFoundException(f"no webhook {webhook_id!r}")
        return _shape(ctx.keyring, account, rows[0])

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_webhook(
        self, webhook_id: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> None:
        """Stop deliveries to a webhook; what is still pending for it is dropped."""
        rows = _live_webhooks(ctx, account, webhook_id)
        if not rows:
            raise NotFoundException(f"no webhook {webhook_id!r}")
        _, url, events, created_at, _ = rows[0]
        now: datetime = ctx.clock()
        ctx.store.insert(  # the deleted row keeps no secret, sealed or not
            "webhooks",
            WEBHOOK_COLUMNS,
            [[account, webhook_id, url, list(events), "", created_at, now, True]],
        )
        if ctx.webhooks_changed is not None:
            ctx.webhooks_changed()

    @get("/{webhook_id:str}/deliveries", sync_to_thread=True)
    def deliveries(
        self,
        webhook_id: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        limit: FromQuery[Annotated[int, msgspec.Meta(ge=1, le=1000)]] = 100,
    ) -> dict[str, Any]:
        """The latest delivery attempts to a webhook, newest first: status, response code, error, next try."""
        if not _live_webhooks(ctx, account, webhook_id):
            raise NotFoundException(f"no webhook {webhook_id!r}")
        q = sql.deliveries(ctx.store.database, account, webhook_id, limit=limit)
        rows = sql.shape_deliveries(ctx.store.query_dicts(q.sql, q.parameters))
        return {"webhook_id": webhook_id, "deliveries": rows}
