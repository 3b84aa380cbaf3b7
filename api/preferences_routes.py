"""``GET``/``HEAD``/``POST /p/{token}``: a recipient's tracking preferences page (issue 19; the pure core is
`api.preferences`, which also says why a POST is safe without cookies).

GET and HEAD only read: the recipient's consent state for the account, whether the sender stopped tracking
them, whether their opens and clicks are measured now. A POST from the page records the choice as every
consent change is recorded (`api.consent_state.record_consent`, helper c3-consent's):

- a ``consent_events`` row per tag of the recipient (`schemas.consent.CONSENT_COLUMNS`): how
  ``preferences_page``, source the message id of the link, evidence what the page said, the button and both
  times (`api.preferences.evidence`), never the address;
- a refusal suppresses the recipient as do-not-track does (``suppression_tags`` with reason
  ``consent_refused``, this process's do-not-track set at once, the privacy topic for every other process:
  the edge stops recording their hits within a second), in every consent mode: the recipient said no;
- a grant lifts a suppression whose reason is ``consent_refused``, and only that one: do-not-track and
  erasure set by the sender stay.

The recipient's tags: the token carries the one of its signing key; the message's send gives the address,
whose tags under every key of the keyring are computed in memory (the address is not kept); tags stored with
the recipient's consent changes and suppressions (keys since retired) join them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Final

from anyio import to_thread
from litestar import HttpMethod, Request, Response, post, route
from litestar.di import NamedDependency
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath

from api.consent_state import ConsentChange, record_consent
from api.context import ApiContext
from api.page_headers import PREFERENCES_CSP, page_headers
from api.preferences import (
    PageState,
    confirmation_html,
    cross_site,
    evidence,
    form_nonce,
    message_html,
    nonce_shown_at,
    page_claim,
    page_html,
)
from api.privacy import PrivacyPropagation
from api.sql import consent as consent_sql
from api.sql import preferences as sql
from schemas.consent import ConsentState, effective_mode, individual_allowed
from schemas.privacy_change import PrivacyNotPublished
from schemas.tokens import Claim, recipient_tag

_CHOICES: Final = {"refuse": ConsentState.REFUSED, "grant": ConsentState.GRANTED}
_NOT_FOUND: Final = ("Link not found", "This link is not valid. Use the link from the email as it was sent.")


def _headers() -> dict[str, str]:
    # Same-origin referrers, so the form's POST carries its real Origin (`api.preferences.cross_site`); a
    # capability URL is never cached, indexed or sent to another site.
    headers = page_headers(PREFERENCES_CSP)
    headers.update({"Referrer-Policy": "same-origin", "Cache-Control": "no-store", "X-Robots-Tag": "noindex"})
    return headers


def _html(body: str, status: int = 200) -> Response[str]:
    return Response(body, status_code=status, media_type=MediaType.HTML, headers=_headers())


def _message(status: int, title: str, text: str) -> Response[str]:
    return _html(message_html(title, text), status)


class _Recipient:
    """The page's recipient: every tag known for them, the one the privacy topic is keyed by first."""

    def __init__(self, ctx: ApiContext, claim: Claim) -> None:
        db, account = ctx.store.database, claim.account
        tags = {claim.recipient_tag}
        first = claim.recipient_tag
        for (address,) in ctx.read(sql.send_recipient(db, account, claim.message_id)):
            every = ctx.keyring.recipient_tags(account, address)
            if claim.recipient_tag in every:  # the send is this recipient's (it always is, unless erased)
                tags |= every
                first = recipient_tag(ctx.keyring.signing_key[1], account, address)
        known = ctx.read(sql.known_tags(db, account, sorted(t.hex() for t in tags)))
        for (stored,) in known:
            tags |= {bytes.fromhex(t) for t in stored}
        self.tags = frozenset(tags)
        self.first = first
        self.hex = sorted(t.hex() for t in self.tags)

    def page(self, ctx: ApiContext, account: str) -> PageState:
        """What the page shows: their consent state, whether the sender stopped tracking them, whether their
        opens and clicks are measured now (under the account's mode, a refusal honoured in every mode)."""
        db = ctx.store.database
        state = consent_sql.newest_state(ctx.read(consent_sql.consent_states(db, account, self.hex)))
        rows = ctx.read(consent_sql.suppression_reasons(db, account, self.hex))
        newest = max(rows, key=lambda row: int(row[3]), default=None)
        suppressed = newest is not None and not newest[1]
        sender_stopped = suppressed and newest is not None and newest[2] in sql.SENDER_REASONS
        mode = effective_mode(ctx.settings(account).consent_mode, state)
        measured = not suppressed and individual_allowed(mode, state, do_not_track=False)
        return PageState(account, state, sender_stopped, measured)


@dataclass
class PreferencesForm:
    """The page's form: ``choice`` is ``refuse`` or ``grant``; ``nonce`` the page's hidden field."""

    choice: str = ""
    nonce: str = ""


def _page(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=str, media_type=MediaType.HTML, description=description)


_PAGE_ERRORS: Final = {404: _page("not a preferences token we signed (forged, altered, another kind)")}
_FORM_ERRORS: Final = {
    **_PAGE_ERRORS,
    400: _page("no valid `choice`, or a `nonce` that is not this page's or is older than a day"),
    403: _page("sent from another site's page (`Origin`, `Sec-Fetch-Site: cross-site`)"),
    503: _page("the choice is stored but the privacy topic did not take it in time; send it again"),
}


@route(
    "/p/{token:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    tags=["preferences"],
    security=[],
    media_type=MediaType.HTML,
    responses=_PAGE_ERRORS,
)
async def preferences_page(token: FromPath[str], ctx: NamedDependency[ApiContext]) -> Response[str]:
    """The recipient's tracking preferences page (HTML, no script): their current state for the sender and
    a form to refuse or allow tracking (HEAD: the same without the body). Changes nothing (link scanners
    follow GETs). 404 for a token that is not a preferences token we signed."""
    # Async, the store read in a thread: Litestar 2.25 fails a path's sync handlers that answer a `Response`
    # once the path has two of them (GET/HEAD and POST here).
    claim = page_claim(token, ctx.keyring)
    if claim is None:
        return _message(404, *_NOT_FOUND)
    page = await to_thread.run_sync(_shown, ctx, claim)
    nonce = form_nonce(ctx.keyring, token, int(ctx.clock().timestamp()))
    return _html(page_html(page, nonce))


@post(
    "/p/{token:str}",
    tags=["preferences"],
    security=[],
    media_type=MediaType.HTML,
    status_code=200,
    responses=_FORM_ERRORS,
)
async def choose(
    token: FromPath[str],
    request: Request[Any, Any, Any],
    data: Annotated[PreferencesForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ctx: NamedDependency[ApiContext],
    privacy: NamedDependency[PrivacyPropagation],
) -> Response[str]:
    """The page's form (``application/x-www-form-urlencoded``: ``choice`` = ``refuse`` or ``grant``, and the
    page's ``nonce``): records the choice and answers a confirmation page. A refusal stops the recording of
    the recipient's hits at the edge within a second; a grant lifts only a refusal's suppression. 404: not a
    preferences token we signed; 400: no valid choice or a nonce not from this page (or older than a day);
    403: a POST from another site's page. Nothing changes on any of them."""
    claim = page_claim(token, ctx.keyring)
    if claim is None:
        return _message(404, *_NOT_FOUND)
    headers = request.headers
    if cross_site(headers.get("origin"), headers.get("sec-fetch-site"), headers.get("host")):
        return _message(403, "Not allowed", "This form can only be sent from its own page.")
    chose = _CHOICES.get(data.choice)
    now = ctx.clock()
    shown_at = nonce_shown_at(ctx.keyring, token, data.nonce, int(now.timestamp()))
    if chose is None or shown_at is None:
        return _message(400, "Page expired", "Open the link from the email again and choose once more.")
    try:
        record = partial(_record, ctx, privacy, claim, chose, shown_at=shown_at, now=now)
        page = await to_thread.run_sync(record)
    except (PrivacyNotPublished, ServiceUnavailableException):
        text = "Your choice is saved but not yet in effect everywhere; send it again."
        return _message(503, "Try again", text)
    return _html(confirmation_html(page, chose))


def _shown(ctx: ApiContext, claim: Claim) -> PageState:
    return _Recipient(ctx, claim).page(ctx, claim.account)


def _record(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    claim: Claim,
    chose: ConsentState,
    *,
    shown_at: int,
    now: datetime,
) -> PageState:
    """Store the choice and apply it at the edge (`api.consent_state.record_consent`: history, then a
    refusal's suppression or its lifting); what the page says now."""
    account = claim.account
    who = _Recipient(ctx, claim)
    proof = evidence(who.page(ctx, account), chose, shown_at, now)
    change = ConsentChange(chose, "preferences_page", source=claim.message_id, evidence=proof)
    record_consent(ctx, propagation, account, who.tags, change, first=who.first, at=now)
    return who.page(ctx, account)
