"""A recipient's tracking preferences page (issue 19): its signed URL, what its token names, the form's
signed nonce and the page's HTML. Pure: no clock (the time is passed in), no I/O.

`preferences_url` gives the ``tracking_preferences_url`` of a registered message: ``{base}/p/{token}``, a
`schemas.tokens.TokenKind.PREFERENCES` token naming the account, campaign, message and the recipient's keyed
tag (never the address). ``sent_at`` is 0 in it: the link never expires (a withdrawal must work from any
message the recipient still has) and is deterministic (registering again gives the same URL).
"""

from __future__ import annotations

from typing import Final

from schemas.tokens import RECIPIENT_TAG_BYTES, Claim, Keyring, TokenKind, sign

PATH_PREFIX: Final = "/p/"


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
