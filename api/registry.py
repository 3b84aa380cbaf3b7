"""Registering a sent message: its pixel token, its tracked links, and the row for ``sends``. Pure.

Tokens are stateless and deterministic: the same message (account, campaign, id, sent_at), link and UTM
parameters give the same URL, so registering a message again returns the same URLs. A click token signs the
link's destination with its UTM parameters (`api.utm`), so the edge redirects exactly there and a token whose
destination was changed fails its signature. Which links are tracked is `api.link_controls`' decision; the
others are registered (stored with the send) but get no token.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from api.utm import Utm, with_utm
from schemas.errors import PixelpipeError
from schemas.recipient import BadRecipient, checked_recipient
from schemas.tokens import MAX_TOKEN_CHARS, Claim, Keyring, TokenKind, recipient_tag, sign

MAX_LINKS = 1000
MAX_URL_CHARS = 2048
MAX_PROVIDER_MESSAGE_ID = 256


class BadMessage(PixelpipeError, ValueError):
    """The registration cannot be accepted; the message says why (answered as 400)."""


@dataclass(frozen=True, slots=True)
class Registration:
    message_id: str
    pixel_url: str
    links: dict[str, str]  # original URL -> tracked URL, for the links tracked
    send_row: list[Any]
    registered: tuple[str, ...] = ()  # every distinct link, tracked or not, in order


SEND_COLUMNS = ("account", "campaign_id", "message_id", "recipient", "sent_at", "registered_at", "links")
# What a registration stores (`Registration.send_row`): the columns above and the mail service's id of the
# message (0007), which its delivery events are matched by.
REGISTERED_SEND_COLUMNS = (*SEND_COLUMNS, "provider_message_id")


def check_link(url: str) -> str:
    if len(url) > MAX_URL_CHARS:
        raise BadMessage(f"link longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise BadMessage(f"not a URL: {url!r}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadMessage(f"only absolute http(s) links can be tracked: {url!r}")
    if "@" in parts.netloc:
        # Refused, not stripped: a silent strip would track a different URL than the one the caller keys
        # its answer by (and one that may not work without them); kept, the password would be signed into
        # the click token, stored with every click and listed by /links. The answer never repeats it.
        shown = parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
        raise BadMessage(f"links: {shown!r} carries a user name or password (user:pass@host); remove them")
    return url.strip()


MAX_CLOCK_SKEW: Final = timedelta(minutes=15)  # a sender's clock ahead of ours by this much is still believed


def provider_message_id(value: str | None) -> str:
    """The mail service's id of a message as stored ('' when not given): without the angle brackets that
    enclose a Message-ID (``<id@host>``: Mailgun answers them, its events carry the id without)."""
    if value is None:
        return ""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not value:
        raise BadMessage("provider_message_id: empty")
    return value


def check_sent_at(sent_at: datetime, *, now: datetime, retention_days: int) -> None:
    """`BadMessage` for a ``sent_at`` the store would not keep: older than the retention (the TTL of
    ``sends`` would drop the send at once, leaving its opens without a message), or in the future beyond
    `MAX_CLOCK_SKEW`."""
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    if sent_at < now - timedelta(days=retention_days):
        raise BadMessage(
            f"sent_at: {sent_at.isoformat()} is older than the retention of {retention_days} days "
            "(PIXELPIPE_RETENTION_DAYS); such a send would be deleted at once"
        )
    if sent_at > now + MAX_CLOCK_SKEW:
        minutes = int(MAX_CLOCK_SKEW.total_seconds() // 60)
        raise BadMessage(f"sent_at: {sent_at.isoformat()} is more than {minutes} minutes in the future")


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
    provider_message: str | None = None,
    track: Collection[str] | None = None,
    utm: Utm | None = None,
    read_time: bool = False,
) -> Registration:
    """Plan a message's registration: its pixel, a click token for each link in ``track`` (every link when
    None) whose destination is the link with ``utm`` appended, and its ``sends`` row (every link).
    ``read_time``: the pixel measures how long the open stays on screen (issue 18): its token is a
    `TokenKind.TIMED_OPEN`, so the edge holds its answer without a lookup."""
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
    pixel = replace(base, kind=TokenKind.TIMED_OPEN) if read_time else base
    pixel_url = f"{public_url}/o/{sign(pixel, keyring)}.gif"
    click = replace(base, kind=TokenKind.CLICK)
    tracked = {
        url: f"{public_url}/c/{_click_token(replace(click, link_index=i, url=url), keyring, utm)}"
        for i, url in enumerate(distinct)
        if track is None or url in track
    }
    sent = datetime.fromtimestamp(seconds, UTC)
    row = [
        account,
        campaign_id,
        message_id,
        recipient,
        sent,
        now,
        distinct,
        provider_message_id(provider_message),
    ]
    return Registration(message_id, pixel_url, tracked, row, tuple(distinct))


def _click_token(claim: Claim, keyring: Keyring, utm: Utm | None) -> str:
    """The signed token of a click on ``claim.url``, its destination with the UTM parameters appended."""
    if utm is not None:
        claim = replace(claim, url=with_utm(claim.url, utm))
    token = sign(claim, keyring)
    if len(token) > MAX_TOKEN_CHARS:  # the edge would refuse it
        raise BadMessage(
            f"links: {claim.url[:80]!r}...: the link, with its UTM parameters and the message's ids, is too "
            f"long for a click token ({MAX_TOKEN_CHARS} characters); shorten it or its UTM values"
        )
    return token
