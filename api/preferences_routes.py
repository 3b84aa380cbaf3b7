"""``GET``/``HEAD``/``POST /p/{token}``: a recipient's tracking preferences page (issue 19; the pure core is
`api.preferences`, which also says why a POST is safe without cookies).

GET and HEAD only read: the recipient's consent state for the account, whether the sender stopped tracking
them, whether their opens and clicks are measured now. A POST from the page records the choice:

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
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Final

from anyio import to_thread
from litestar import HttpMethod, Request, Response, post, route
from litestar.di import NamedDependency
from litestar.enums import MediaType, RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath

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
from api.privacy import SUPPRESSION_COLUMNS, PrivacyPropagation
from api.sql import preferences as sql
from schemas.consent import CONSENT_COLUMNS, ConsentState, individual_allowed
from schemas.privacy_change import PrivacyChange, PrivacyNotPublished
from schemas.tokens import Claim, recipient_tag

REFUSED_REASON: Final = "consent_refused"  # the suppression of a refusal (as helper c3-consent's)
LIFTED_REASON: Final = "consent"  # a refusal's suppression lifted by a grant
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

    def page(self, ctx: ApiContext, account: str) -> tuple[PageState, bool, str]:
        """What the page shows, whether they are suppressed, and the newest suppression's reason."""
        db = ctx.store.database
        state = sql.state_of(ctx.read(sql.consent_state(db, account, self.hex)))
        rows = ctx.read(sql.suppression(db, account, self.hex))
        suppressed, reason = (not rows[0][0], str(rows[0][1])) if rows else (False, "")
        mode = sql.mode_of(ctx.read(sql.consent_mode(db, account)))
        sender_stopped = suppressed and reason in sql.SENDER_REASONS
        measured = not suppressed and individual_allowed(mode, state, do_not_track=False)
        return PageState(account, state, sender_stopped, measured), suppressed, reason


def _suppress(
    ctx: ApiContext, propagation: PrivacyPropagation, account: str, who: _Recipient, *, tracking: bool
) -> None:
    """Suppress the recipient for their refusal, or lift that suppression: in the store, this process's
    do-not-track set, and on the privacy topic (`api.privacy`'s propagation, by tags)."""
    now = datetime.now(UTC)
    reason = LIFTED_REASON if tracking else REFUSED_REASON
    rows = [[account, tag, who.hex, tracking, reason, now] for tag in who.hex]
    ctx.store.insert("suppression_tags", SUPPRESSION_COLUMNS, rows)
    if ctx.do_not_track is not None:
        if tracking:
            ctx.do_not_track.remove_tags(who.tags)
        else:
            ctx.do_not_track.add_tags(who.tags)
    if propagation.publish is not None:
        ordered = (who.first.hex(), *(t for t in who.hex if t != who.first.hex()))
        at_ms = int(now.timestamp() * 1000)
        propagation.publish(PrivacyChange(account, ordered, tracking=tracking, erased=False, at_ms=at_ms))


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
    except PrivacyNotPublished:
        text = "Your choice is saved but not yet in effect everywhere; send it again."
        return _message(503, "Try again", text)
    return _html(confirmation_html(page, chose))


def _shown(ctx: ApiContext, claim: Claim) -> PageState:
    page, _, _ = _Recipient(ctx, claim).page(ctx, claim.account)
    return page


def _record(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    claim: Claim,
    chose: ConsentState,
    *,
    shown_at: int,
    now: datetime,
) -> PageState:
    """Store the choice and apply it; what the page says now."""
    account = claim.account
    who = _Recipient(ctx, claim)
    shown, suppressed, reason = who.page(ctx, account)
    proof = evidence(shown, chose, shown_at, now)
    how, source = "preferences_page", claim.message_id
    rows = [[account, tag, who.hex, chose.value, how, source, proof, now] for tag in who.hex]
    ctx.store.insert("consent_events", CONSENT_COLUMNS, rows)
    if chose is ConsentState.REFUSED and not suppressed:
        _suppress(ctx, propagation, account, who, tracking=False)
    elif chose is ConsentState.GRANTED and suppressed and reason == REFUSED_REASON:
        _suppress(ctx, propagation, account, who, tracking=True)
    page, _, _ = who.page(ctx, account)
    return page
