"""Which of a message's links are tracked, and why each other one is not (issue 19's link controls). Pure.

Registration (`POST /v1/messages`, each item of `/v1/messages/batch`) decides over the links it is given;
`POST /v1/instrument` over those and every link tag of the HTML (`api.instrument` finds them, with their
text and attributes). A link is left as it is, never rewritten, for the first of these reasons that holds
(`Reason`, answered in ``untracked_links``):

1. ``attribute``: its tag carries a no-track marker (`is_no_track_marker`): pixelpipe's own
   ``data-pixelpipe-track="off"``, SendGrid's ``clicktracking=off``, Postmark's ``data-pm-no-track`` or
   Amazon SES's ``ses:no-track``. Per tag: the same URL in another tag without it is tracked there. The marker
   is removed from the output (`api.instrument`), the rest of the tag is left byte for byte.
2. ``list_unsubscribe``: it is one of the message's List-Unsubscribe URLs (`list_unsubscribe_urls`), compared
   with the scheme and host in any case.
3. ``pixelpipe``: it points at pixelpipe itself, under the send's base URL or the public URL: a pixel
   (``/o/``), a tracked link (``/c/``) or the recipient's tracking preferences page (``/p/``, the
   registration's ``tracking_preferences_url``: a refusal of tracking must never be counted as a click).
4. ``not_http``: it is not an absolute http(s) URL and holds no template placeholder: ``mailto:``, ``tel:``,
   ``sms:``, an anchor (``#top``), a relative link, ``javascript:``. The click endpoint only redirects to
   http(s), so these were never tracked; now the answer says so.
5. ``unsubscribe``: it is recognisably an unsubscribe or preferences link (`api.unsubscribe_links`), by its
   URL, a placeholder in it, or the text or attributes of any tag linking to it (so every tag linking to it
   is left alone).
6. ``template``: it holds a template placeholder (`api.template_tags`), which the mail service fills in
   after pixelpipe: a token would sign the placeholder itself.
7. ``clicks_off``: the message asked for no click tracking (``"track_clicks": false``).
8. the reason the recipient is not tracked individually, the answer's ``tracking_reason`` (`api.tracking`):
   ``do_not_track`` (do-not-track or erased), ``consent_refused``, ``consent_not_granted``.

Every other http(s) link is tracked (its destination with the message's UTM parameters, `api.utm`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from api.registry import BadMessage
from api.template_tags import placeholders
from api.unsubscribe_links import is_unsubscribe_link


class Reason(StrEnum):
    """Why a link is left untracked; the order is the order of precedence."""

    ATTRIBUTE = "attribute"
    LIST_UNSUBSCRIBE = "list_unsubscribe"
    PIXELPIPE = "pixelpipe"
    NOT_HTTP = "not_http"
    UNSUBSCRIBE = "unsubscribe"
    TEMPLATE = "template"
    CLICKS_OFF = "clicks_off"
    # 8: the recipient's own (`api.tracking`'s reasons): do_not_track, consent_refused, consent_not_granted


# Attribute name -> the values that mark a link untracked (None: its mere presence does, whatever its value).
# Names are compared in lower case (HTML's rule), values trimmed and in lower case.
NO_TRACK_ATTRIBUTES: Final[dict[str, frozenset[str] | None]] = {
    "data-pixelpipe-track": frozenset({"off"}),  # ours
    "clicktracking": frozenset({"off"}),  # SendGrid: <a clicktracking=off href="...">
    "data-pm-no-track": None,  # Postmark: <a data-pm-no-track href="...">
    "ses:no-track": None,  # Amazon SES: <a ses:no-track href="...">
}
MAX_LIST_UNSUBSCRIBE_URLS: Final = 10
MAX_LIST_UNSUBSCRIBE_CHARS: Final = 4096
_OWN_PATHS: Final = ("o", "c", "p")  # pixelpipe's own paths: pixels, clicks, the preferences page
_BRACKETED: Final = re.compile(r"<([^<>]*)>")
_WHITESPACE: Final = re.compile(r"\s+")


def is_no_track_marker(name: str, value: str | None) -> bool:
    """Whether the attribute ``name=value`` of a link tag asks for it to be left untracked."""
    if name.lower() not in NO_TRACK_ATTRIBUTES:
        return False
    values = NO_TRACK_ATTRIBUTES[name.lower()]
    return values is None or (value is not None and value.strip().lower() in values)


@dataclass(frozen=True, slots=True)
class LinkSeen:
    """One link as the message has it: a URL given at registration, or one link tag of the HTML (with the
    tag's text, the ``alt``/``title`` of images in it, and its attributes)."""

    url: str
    web: bool = True  # an absolute http(s) URL with a host
    marked: bool = False  # the tag carries a no-track marker
    text: str = ""
    attributes: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class LinkChoice:
    """The decision over a message's links: each distinct (URL, reason) in the order first seen, reason None
    where the URL is tracked."""

    decisions: tuple[tuple[str, Reason | None], ...]

    @property
    def tracked(self) -> tuple[str, ...]:
        """The distinct URLs to sign, in order."""
        return tuple(url for url, reason in self.decisions if reason is None)

    def untracked(self, *, instead: str | None = None) -> list[dict[str, Any]]:
        """``untracked_links`` of the answer: every link left as it is and why, each (URL, reason) once. When
        the recipient is not tracked individually, the links that would have been are listed with
        ``instead``, the reason why not (``do_not_track``, ``consent_refused``, ...)."""
        pairs = ((url, reason if reason is not None else instead) for url, reason in self.decisions)
        return [
            {"url": url, "reason": str(reason)} for url, reason in dict.fromkeys(pairs) if reason is not None
        ]


def choose(
    seen: Sequence[LinkSeen],
    *,
    list_unsubscribe: Collection[str] = (),
    track_clicks: bool = True,
    own_bases: Collection[str] = (),
) -> LinkChoice:
    """Decide, by the rules of this module's docstring, which links are tracked and why the others are not;
    ``own_bases``: the base URLs of pixelpipe's own links (the send's, the public URL)."""
    occurrences: dict[str, list[LinkSeen]] = {}
    for link in seen:
        occurrences.setdefault(link.url, []).append(link)
    listed = {_comparable(url) for url in list_unsubscribe}
    own = tuple(f"{_comparable(base).rstrip('/')}/{part}/" for base in own_bases for part in _OWN_PATHS)
    by_url = {url: _reason_of_url(url, tags, listed, own, track_clicks) for url, tags in occurrences.items()}
    decisions = ((link.url, Reason.ATTRIBUTE if link.marked else by_url[link.url]) for link in seen)
    return LinkChoice(tuple(dict.fromkeys(decisions)))


def _reason_of_url(
    url: str, links: Sequence[LinkSeen], listed: Collection[str], own: tuple[str, ...], track_clicks: bool
) -> Reason | None:
    """The reason every unmarked tag linking to ``url`` is left untracked, or None: it is tracked."""
    comparable = _comparable(url)
    templated = bool(placeholders(url))
    if comparable in listed:
        return Reason.LIST_UNSUBSCRIBE
    if comparable.startswith(own):
        return Reason.PIXELPIPE
    if not links[0].web and not templated:
        return Reason.NOT_HTTP
    return _reason_of_web_url(url, links, templated=templated, track_clicks=track_clicks)


def _reason_of_web_url(
    url: str, links: Sequence[LinkSeen], *, templated: bool, track_clicks: bool
) -> Reason | None:
    """`_reason_of_url` for an http(s) link or one holding a placeholder."""
    if any(is_unsubscribe_link(url, text=link.text, attributes=link.attributes) for link in links):
        return Reason.UNSUBSCRIBE
    if templated or not links[0].web:
        return Reason.TEMPLATE
    if not track_clicks:
        return Reason.CLICKS_OFF
    return None


def list_unsubscribe_urls(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The URLs of a message's ``list_unsubscribe``: a List-Unsubscribe header value
    (``<https://...>, <mailto:...>``, RFC 2369: whitespace inside the brackets, as a folded header has it,
    is dropped) or a list of URLs. Each must be an http(s) URL with a host or a ``mailto:`` address, else
    `BadMessage`."""
    if value is None:
        return ()
    if isinstance(value, str):
        if len(value) > MAX_LIST_UNSUBSCRIBE_CHARS:
            raise BadMessage(f"list_unsubscribe: longer than {MAX_LIST_UNSUBSCRIBE_CHARS} characters")
        urls = [_WHITESPACE.sub("", inner) for inner in _BRACKETED.findall(value)]
        rest = _BRACKETED.sub("", value).replace(",", "").strip()
        if not urls or rest:
            raise BadMessage(
                "list_unsubscribe: expected a List-Unsubscribe header value, URLs in angle brackets "
                'separated by commas ("<https://example.com/unsub>, <mailto:unsub@example.com>"), '
                "or a list of URLs"
            )
    else:
        urls = [url.strip() for url in value]
    if len(urls) > MAX_LIST_UNSUBSCRIBE_URLS:
        raise BadMessage(f"list_unsubscribe: at most {MAX_LIST_UNSUBSCRIBE_URLS} URLs")
    for url in urls:
        if not _unsubscribe_url(url):
            raise BadMessage(
                f"list_unsubscribe: {url!r} is neither an http(s) URL with a host nor a mailto: address"
            )
    return tuple(dict.fromkeys(urls))


def _unsubscribe_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "mailto":
        return bool(parts.path)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _comparable(url: str) -> str:
    """``url`` with its scheme and host in lower case, which name the same resource in any case."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    if parts.scheme == "mailto":
        return parts._replace(path=parts.path.lower()).geturl()
    return parts._replace(netloc=parts.netloc.lower()).geturl()
