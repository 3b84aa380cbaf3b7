"""A recipient's tracking preferences page (issue 19): its signed URL, what its token names, the form's
signed nonce and the page's HTML. Pure: no clock (times are passed in), no I/O.

`preferences_url` gives the ``tracking_preferences_url`` of a registered message: ``{base}/p/{token}``, a
`schemas.tokens.TokenKind.PREFERENCES` token naming the account, campaign, message and the recipient's keyed
tag (never the address). ``sent_at`` is 0 in it: the link never expires (a withdrawal must work from any
message the recipient still has) and is deterministic (registering again gives the same URL).

Who may change what, without cookies:

- The token in the URL is the capability: whoever holds the link (the recipient, or whoever they forward the
  email to) may change that recipient's choice for that account, as a one-click unsubscribe link does. It is
  signed, so a forged or altered token names nobody (404, nothing changes).
- A GET (and a HEAD) only shows: link scanners and previews follow GETs.
- A POST needs the page's own nonce (`form_nonce`): an HMAC of the token and the second the page was shown,
  under a key derived from the signing key, valid `NONCE_TTL_S`. A client that never rendered the page (a
  scanner that POSTs, a replay of a day-old form) changes nothing; the nonce also dates the evidence (when the
  page was shown). There is no session and no ambient credential a cross-site page could ride on, so the
  classic CSRF attack does not apply; still, a POST whose ``Origin`` is another origin, or whose
  ``Sec-Fetch-Site`` says ``cross-site``, is refused (`cross_site`). The page's ``Referrer-Policy`` is
  ``same-origin`` (not the other pages' ``no-referrer``), so browsers send its real ``Origin`` on the form's
  POST.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Final
from urllib.parse import urlsplit

from schemas.consent import ConsentState
from schemas.tokens import RECIPIENT_TAG_BYTES, Claim, InvalidToken, Keyring, TokenKind, sign, verify

PATH_PREFIX: Final = "/p/"
NONCE_TTL_S: Final = 24 * 3600  # a page left open a day still works; a day-old form copied elsewhere does not
_NONCE_SKEW_S: Final = 300  # a page shown by another process whose clock runs ahead
_NONCE_INFO: Final = b"pixelpipe preferences form v1"
PAGE_VERSION: Final = "preferences page v1"


def preferences_url(  # noqa: PLR0917 - the signature the registration (c3) calls, in the token's order
    keyring: Keyring,
    base_url: str,
    account: str,
    campaign_id: str,
    message_id: str,
    recipient_tag: bytes,
) -> str:
    """The recipient's preferences page for this message: ``{base_url}/p/{token}`` (``base_url`` without a
    trailing slash: the edge or API's public URL, or the account's branded tracking domain)."""
    if len(recipient_tag) != RECIPIENT_TAG_BYTES:
        raise ValueError(f"recipient_tag must be {RECIPIENT_TAG_BYTES} bytes")
    claim = Claim(TokenKind.PREFERENCES, account, campaign_id, message_id, 0, recipient_tag=recipient_tag)
    return f"{base_url.rstrip('/')}{PATH_PREFIX}{sign(claim, keyring)}"


def page_claim(token: str, keyring: Keyring) -> Claim | None:
    """What a preferences token names, or None when it is not one we signed (forged, altered, another
    kind)."""
    try:
        return verify(token, keyring, TokenKind.PREFERENCES)
    except InvalidToken:
        return None


def _nonce_mac(secret: bytes, token: str, shown_at: int) -> bytes:
    key = hmac.new(secret, _NONCE_INFO, hashlib.sha256).digest()
    return hmac.new(key, f"{shown_at}\x1f{token}".encode(), hashlib.sha256).digest()[:16]


def form_nonce(keyring: Keyring, token: str, shown_at: int) -> str:
    """The hidden field of the page shown at ``shown_at`` (epoch seconds) for ``token``: ``{key id}.{shown
    at}.{mac}``."""
    key_id, secret = keyring.signing_key
    mac = base64.urlsafe_b64encode(_nonce_mac(secret, token, shown_at)).decode().rstrip("=")
    return f"{key_id}.{shown_at}.{mac}"


def nonce_shown_at(keyring: Keyring, token: str, nonce: str, now: int) -> int | None:
    """When the page whose nonce this is was shown (epoch seconds), or None: not this token's, forged, under
    a key no longer held, or older than `NONCE_TTL_S`."""
    parts = nonce.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(nonce) > 100:
        return None
    key_id, shown_at = int(parts[0]), int(parts[1])
    secret = keyring.secret_for(key_id)
    if secret is None or not now - NONCE_TTL_S <= shown_at <= now + _NONCE_SKEW_S:
        return None
    try:
        given = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (binascii.Error, ValueError):
        return None
    return shown_at if hmac.compare_digest(given, _nonce_mac(secret, token, shown_at)) else None


def cross_site(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """Whether a POST came from another site's page: ``Sec-Fetch-Site: cross-site``, or an ``Origin`` (other
    than ``null``) whose host and port are not the request's ``Host``. Absent headers prove nothing either
    way (curl, old browsers): the nonce is what a POST must carry."""
    if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
        return True
    if origin is None or origin.strip() in ("", "null"):
        return False
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return True
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    if default is None or not parts.hostname or host is None:
        return True
    origin_host = parts.hostname.lower()
    want = (origin_host, port or default)
    try:
        given = urlsplit(f"//{host.strip()}")
        given_port = given.port
    except ValueError:
        return True
    return ((given.hostname or "").lower(), given_port or default) != want


# --- what the page shows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageState:
    """What the page shows of the recipient: their consent state for the account, whether the sender has put
    them on do-not-track (or erased them), and whether their opens and clicks are measured now."""

    account: str
    state: ConsentState
    sender_stopped: bool  # do-not-track or erasure by the sender: a grant here does not lift it
    measured: bool


def statement(page: PageState) -> str:
    """The page's sentence about the recipient's current state (also kept as evidence)."""
    choice = {
        ConsentState.GRANTED: "You allowed tracking.",
        ConsentState.REFUSED: "You refused tracking.",
        ConsentState.UNKNOWN: "You have not made a choice yet.",
    }[page.state]
    if page.sender_stopped:
        now = "The sender has stopped measuring your opens and clicks."
    elif page.measured:
        now = "The sender measures when you open their emails and which links you click."
    else:
        now = "Your opens and clicks are not measured individually."
    return f"{choice} {now}"


_STYLE: Final = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:1rem;"
    "color:#1a1a1a;background:#fafafa}main{max-width:32rem;margin:0 auto}h1{font-size:1.4rem}"
    "button{display:block;width:100%;font-size:1.05rem;padding:.8rem;margin:.6rem 0;border-radius:.4rem;"
    "border:1px solid #555;background:#fff;color:#1a1a1a}button.refuse{background:#1a1a1a;color:#fff}"
    "p.small{font-size:.85rem;color:#555}"
)


def _html(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def page_html(page: PageState, nonce: str) -> str:
    """The page: the recipient's state for this sender and a form with two buttons (no script)."""
    return _html(
        "Tracking preferences",
        f"<h1>Tracking preferences</h1><p>Sender: <strong>{escape(page.account)}</strong></p>"
        f'<p id="state" data-state="{page.state.value}" data-measured="{str(page.measured).lower()}">'
        f"{escape(statement(page))}</p>"
        "<p>Choose whether this sender may measure when you open their emails and which links you click. "
        "Your choice applies to every email from this sender.</p>"
        '<form method="post"><input type="hidden" name="nonce" value="'
        f'{escape(nonce, quote=True)}">'
        '<button class="refuse" type="submit" name="choice" value="refuse">Do not track me</button>'
        '<button type="submit" name="choice" value="grant">Allow tracking</button></form>'
        '<p class="small">No cookie is set. Your choice is kept as a record of consent, without your '
        "address.</p>",
    )


def confirmation_html(page: PageState, chose: ConsentState) -> str:
    """The answer to a choice: what was recorded and what holds now."""
    said = "You refused tracking." if chose is ConsentState.REFUSED else "You allowed tracking."
    extra = (
        "<p>The sender had already stopped measuring your opens and clicks; that stays so.</p>"
        if page.sender_stopped and chose is ConsentState.GRANTED
        else ""
    )
    return _html(
        "Choice saved",
        f'<h1>Choice saved</h1><p id="confirmation" data-state="{chose.value}">{said}</p>'
        f"<p>{escape(statement(page))}</p>{extra}"
        '<p class="small">You can change it at any time from the same link.</p>',
    )


def message_html(title: str, text: str) -> str:
    """A page with one sentence: not found, expired, refused."""
    return _html(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def evidence(page: PageState, chose: ConsentState, shown_at: int, at: datetime) -> str:
    """What the consent history keeps as proof: the page's version, what it said when it was shown, the
    choice, and both times. Never the address (the page never knew it) nor the client's address."""
    shown = datetime.fromtimestamp(shown_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    chosen = at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    button = "Do not track me" if chose is ConsentState.REFUSED else "Allow tracking"
    return f'{PAGE_VERSION}; shown {shown}: "{statement(page)}"; pressed "{button}" at {chosen}'
