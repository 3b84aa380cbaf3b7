"""``/v1/recipients/{recipient}/consent``: a recipient's consent to tracking (issue 19), set and read.

``PUT`` records a change (``granted``, ``refused`` or ``unknown``; how, source, evidence: kept as proof)
and applies it where the account's mode says so (`api.consent_state`); ``GET`` answers the state (the
newest change; ``unknown`` without one) and the whole history, oldest first. Stored by the recipient's keyed
tags, never the address; erased with the recipient (`api.privacy`), shown in the recipient's view
(`api.recipients`). One recipient is every spelling of one address (`schemas.recipient`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from api.consent_state import ConsentChange, record_consent
from api.context import ApiContext, RecipientPath, account_dependency
from api.openapi import bad_request
from api.privacy import PrivacyPropagation
from api.sql import consent as sql
from schemas.consent import ConsentState
from schemas.recipient import BadRecipient, checked_recipient
from schemas.tokens import recipient_tag

MAX_SOURCE: Final = 256
MAX_EVIDENCE: Final = 4096
MAX_AGE: Final = timedelta(days=36500)
MAX_AHEAD: Final = timedelta(minutes=15)

ConsentRules = bad_request(
    "a recipient that is blank or holds a control character or line break; an unknown `state` or `how`; "
    "`source` over 256 or `evidence` over 4096 characters; `at` more than 15 minutes in the future"
)


class ConsentIn(msgspec.Struct, forbid_unknown_fields=True):
    """A consent change. ``how``: ``api`` (the sender's call, the default) or ``import`` (proof kept
    elsewhere, brought in); the preferences page records its own (``preferences_page``)."""

    state: Literal["granted", "refused", "unknown"]
    how: Literal["api", "import"] = "api"
    source: Annotated[str, msgspec.Meta(max_length=MAX_SOURCE)] = ""
    evidence: Annotated[str, msgspec.Meta(max_length=MAX_EVIDENCE)] = ""
    at: Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})] | None = None


def _canonical(recipient: str) -> str:
    try:
        return checked_recipient(recipient)
    except BadRecipient as exc:
        raise ClientException(str(exc)) from exc


def consent_of(ctx: ApiContext, account: str, recipient: str) -> dict[str, Any]:
    """A recipient's consent as answered: ``state`` and ``history`` (oldest first)."""
    tags = sorted(t.hex() for t in ctx.keyring.recipient_tags(account, recipient))
    history = sql.shape_history(ctx.read(sql.consent_history(ctx.store.database, account, tags)))
    return {"state": history[-1]["state"] if history else ConsentState.UNKNOWN.value, "history": history}


class ConsentController(Controller):
    path = "/v1/recipients"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["consent"]  # noqa: RUF012

    @put("/{recipient:str}/consent", status_code=HTTP_200_OK, sync_to_thread=True, raises=[ConsentRules])
    def set_consent(
        self,
        recipient: RecipientPath,
        data: JSONBody[ConsentIn],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Record a recipient's consent to tracking (granted, refused, unknown), with how it was given, its
        source and evidence, kept as proof. A refusal (in every mode) stops the edge recording them within a
        second (as do-not-track, without its meaning); a grant or `unknown` lifts it."""
        canonical = _canonical(recipient)
        now = ctx.clock()
        at = now if data.at is None else (data.at if data.at.tzinfo else data.at.replace(tzinfo=UTC))
        if at > now + MAX_AHEAD:
            raise ClientException("at: more than 15 minutes in the future")
        if at < now - MAX_AGE or at.timestamp() <= 0:
            raise ClientException("at: out of range")
        change = ConsentChange(ConsentState(data.state), data.how, data.source, data.evidence)
        tags = ctx.keyring.recipient_tags(account, canonical)
        first = recipient_tag(ctx.keyring.signing_key[1], account, canonical)
        refused = record_consent(ctx, privacy, account, tags, change, first=first, at=at)
        return {
            "recipient": canonical,
            "consent_mode": ctx.settings(account).consent_mode.value,
            "refusal_enforced": refused,
            **consent_of(ctx, account, canonical),
        }

    @get("/{recipient:str}/consent", sync_to_thread=True)
    def get_consent(
        self, recipient: RecipientPath, account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """A recipient's consent state (the newest change; `unknown` without one) and its whole history,
        oldest first: when, the state, how, source and evidence."""
        canonical = _canonical(recipient)
        return {
            "recipient": canonical,
            "consent_mode": ctx.settings(account).consent_mode.value,
            **consent_of(ctx, account, canonical),
        }
