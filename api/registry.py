"""Registering a sent message: its pixel token, its tracked links, and the row for ``sends``. Pure.

Tokens are stateless and deterministic: the same message (account, campaign, id, sent_at) and link give the
same URL, so registering a message again returns the same URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from schemas.recipient import BadRecipient, checked_recipient
from schemas.tokens import Claim, Keyring, TokenKind, recipient_tag, sign

MAX_LINKS = 1000
MAX_URL_CHARS = 2048


class BadMessage(ValueError):
    """The registration cannot be accepted; the message says why (answered as 400)."""


@dataclass(frozen=True, slots=True)
class Registration:
    message_id: str
    pixel_url: str
    links: dict[str, str]  # original URL -> tracked URL
    send_row: list[Any]


SEND_COLUMNS = ("account", "campaign_id", "message_id", "recipient", "sent_at", "registered_at", "links")


def check_link(url: str) -> str:
    if len(url) > MAX_URL_CHARS:
        raise BadMessage(f"link longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise BadMessage(f"not a URL: {url!r}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadMessage(f"only absolute http(s) links can be tracked: {url!r}")
    return url.strip()


def register(
    *,
    keyring: Keyring,
    public_url: str,
    account: str,
    campaign_id: str,
    message_id: str,
    recipient: str,
    sent_at: datetime,
    links: Sequence[str],
    now: datetime,
) -> Registration:
    if len(links) > MAX_LINKS:
        raise BadMessage(f"at most {MAX_LINKS} links per message")
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    seconds = int(sent_at.timestamp())
    if not 0 < seconds < 2**32:
        raise BadMessage("sent_at is out of range")
    try:
        recipient = checked_recipient(recipient)  # stored and tagged in the one form (schemas.recipient)
    except BadRecipient as exc:
        raise BadMessage(str(exc)) from exc
    distinct = list(dict.fromkeys(check_link(u) for u in links))
    tag = recipient_tag(keyring.signing_key[1], account, recipient)
    base = Claim(TokenKind.OPEN, account, campaign_id, message_id, seconds, recipient_tag=tag)
    pixel_url = f"{public_url}/o/{sign(base, keyring)}.gif"
    click = replace(base, kind=TokenKind.CLICK)
    tracked = {
        url: f"{public_url}/c/{sign(replace(click, link_index=i, url=url), keyring)}"
        for i, url in enumerate(distinct)
    }
    row = [account, campaign_id, message_id, recipient, datetime.fromtimestamp(seconds, UTC), now, distinct]
    return Registration(message_id, pixel_url, tracked, row)
