"""``/v1/account/settings``: the caller's account settings (issue 19): its consent mode, its tracking base
URL (a branded domain) and whether sends not allowed individual tracking get the aggregate pixel.

``GET`` answers them (defaults until set: ``off``, the process's public URL (null), ``true``); ``PUT`` sets
every one (an omitted one takes its default), ``PATCH`` only those given. A change is stored as the
account's newest row (``account_settings``), dropped from this process's copy at once and seen by other API
processes within `api.account_settings.SETTINGS_TTL_S`. A refusal is honoured in every mode
(`schemas.consent.consent_blocks`), so a change of mode changes nothing at the edge.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, get, patch, put
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from api.account_settings import (
    AGGREGATE_OPENS_DEFAULT,
    MAX_BASE_URL_CHARS,
    AccountSettings,
    BadSetting,
    check_base_url,
)
from api.context import ApiContext, account_dependency
from api.openapi import bad_request
from api.sql import consent as sql
from schemas.consent import ConsentMode

SettingsRules = bad_request(
    "an unknown `consent_mode`; a `tracking_base_url` that is not an absolute http(s) URL with a host, or "
    "that carries a user name or password, a query or a fragment, or is longer than 512 characters"
)
BaseUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_BASE_URL_CHARS,
        description="The base of every pixel, click and preferences URL issued: `https://t.example.com` "
        "(a CNAME to the edge, TLS by a proxy in front), optionally with a path; no user name or password, "
        "query or fragment. null: `PIXELPIPE_PUBLIC_URL`.",
    ),
]
Mode = Literal["off", "opt_out", "opt_in"]


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Every setting (PUT): an omitted one takes its default."""

    consent_mode: Mode = "off"
    tracking_base_url: BaseUrl | None = None
    aggregate_opens: bool = AGGREGATE_OPENS_DEFAULT


class SettingsPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The settings to change (PATCH): the others stay. `tracking_base_url` null: back to the public URL."""

    consent_mode: Mode | msgspec.UnsetType = msgspec.UNSET
    tracking_base_url: BaseUrl | msgspec.UnsetType | None = msgspec.UNSET
    aggregate_opens: bool | msgspec.UnsetType = msgspec.UNSET


def _store(ctx: ApiContext, account: str, new: AccountSettings) -> dict[str, Any]:
    try:
        base_url = None if new.tracking_base_url is None else check_base_url(new.tracking_base_url)
    except BadSetting as exc:
        raise ClientException(str(exc)) from exc
    row = [account, new.consent_mode.value, base_url or "", new.aggregate_opens, ctx.clock()]
    ctx.store.insert("account_settings", sql.SETTINGS_COLUMNS, [row])
    ctx.account_settings.forget(ctx.store.database, account)
    return {"account": account, **AccountSettings(new.consent_mode, base_url, new.aggregate_opens).answer()}


class AccountController(Controller):
    path = "/v1/account"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["account"]  # noqa: RUF012

    @get("/settings", sync_to_thread=True)
    def read_settings(
        self, account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """The account's consent mode, tracking base URL (null: the public URL) and whether sends not
        allowed individual tracking get the aggregate pixel."""
        ctx.account_settings.forget(ctx.store.database, account)  # the stored settings, not this copy
        return {"account": account, **ctx.settings(account).answer()}

    @put("/settings", status_code=HTTP_200_OK, sync_to_thread=True, raises=[SettingsRules])
    def replace_settings(
        self,
        data: JSONBody[SettingsIn],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
    ) -> dict[str, Any]:
        """Set every setting (an omitted one takes its default)."""
        new = AccountSettings(ConsentMode(data.consent_mode), data.tracking_base_url, data.aggregate_opens)
        return _store(ctx, account, new)

    @patch("/settings", status_code=HTTP_200_OK, sync_to_thread=True, raises=[SettingsRules])
    def change_settings(
        self,
        data: JSONBody[SettingsPatch],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
    ) -> dict[str, Any]:
        """Change the settings given; the others stay."""
        ctx.account_settings.forget(ctx.store.database, account)
        now = ctx.settings(account)
        new = AccountSettings(
            now.consent_mode if data.consent_mode is msgspec.UNSET else ConsentMode(data.consent_mode),
            now.tracking_base_url if data.tracking_base_url is msgspec.UNSET else data.tracking_base_url,
            now.aggregate_opens if data.aggregate_opens is msgspec.UNSET else data.aggregate_opens,
        )
        return _store(ctx, account, new)
