"""Recognising an unsubscribe link, which pixelpipe never rewrites. Pure.

A tracked unsubscribe link goes through the tracker: a link scanner that follows it is counted as a click
(and unsubscribes the reader: a known complaint about trackers), the unsubscription is counted as engagement,
and a reader who checks where the link goes sees a tracker. So `api.link_controls` leaves every link that
this module recognises as it is, with the reason ``unsubscribe``.

A link is an unsubscribe link when any of these says so, in English, German, French, Spanish, Italian,
Dutch, Portuguese, Swedish or Polish, in any case, with or without accents, words joined by spaces, ``-``,
``_``, ``.``, ``/`` or camelCase:

* its URL's path or query (decoded): ``/unsubscribe``, ``/email/opt-out``, ``?action=unsub``,
  ``/newsletter/abmelden``, ``/se-desabonner``, ``/manage-preferences``, ``/preference-center``;
* a template placeholder in it (`api.template_tags`) that names an unsubscribe or preferences URL:
  SendGrid's ``<%asm_group_unsubscribe_raw_url%>``, ``<%asm_preferences_raw_url%>``, ``[unsubscribe]`` and
  ``{{{unsubscribe}}}``, Mailchimp's ``*|UNSUB|*`` and ``*|UPDATE_PROFILE|*``, Postmark's
  ``{{{ pm:unsubscribe }}}``, Mailgun's ``%unsubscribe_url%``, Mailjet's ``[[UNSUB_LINK_EN]]``, HubSpot's
  ``{{ unsubscribe_link }}``, Brevo's ``{{ update_profile }}``, Klaviyo's ``{% unsubscribe_url %}``,
  Marketing Cloud's ``%%unsub_center_url%%``, Mautic's ``{unsubscribe_url}``;
* the link's text (with the ``alt`` and ``title`` of images inside it): "Unsubscribe", "Opt out",
  "Manage preferences", "Update your email preferences", "Abmelden", "Newsletter abbestellen",
  "Se désabonner", "Darse de baja", "Afmelden", ...;
* the value of one of the link tag's own attributes other than ``href`` and ``style`` (``class``, ``id``,
  ``title``, ``aria-label``, ``name``, ``data-*``): ``class="footer-unsubscribe"``.

The host is not read (``unsubscribe.example.com/x`` is not recognised by it alone), nor is the fragment, nor
any text outside the link ("To unsubscribe, <a>click here</a>": mark such a link with
``data-pixelpipe-track="off"``). The rule errs towards leaving a link alone: a link to an article titled
"Why we made unsubscribing easy" is left untracked too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, urlsplit

from api.template_tags import placeholders

# Regular expressions over `_words`' form: lower case, no accents, words separated by single spaces, with a
# space at each end (so " unsub " is the word and "unsubscri" any word holding it).
_UNSUBSCRIBE_PHRASES: Final = (
    "unsubscri",
    " unsub ",
    " opt ?outs? ",
    " (?:manage|update|change|edit|set|email|mail|mailing|subscription|subscriber|communication|notification"
    "|newsletter|marketing) (?:your |my |email |mail )?(?:preferences?|prefs) ",
    " (?:preferences?|subscriptions?|unsub) ?(?:center|centre) ",
    " manage ?(?:your |my )?subscriptions? ",
    # German, French
    "abmeld",
    "abbestell",
    " austragen ",
    "deabonnier",
    "desabonn",
    "desinscri",
    # Spanish, Portuguese, Italian
    " dar(?:se|te|me)? de baja ",
    "desuscri",
    " (?:cancelar|anular) (?:la |tu |su |a )?(?:suscripcion|subscricao|inscricao) ",
    "descadastr",
    "disiscri",
    " annulla (?:l )?iscrizione ",
    # Dutch, Swedish, Polish
    " afmelden ",
    "uitschrijv",
    "avregistrera",
    "avprenumerera",
    " avsluta prenumeration ",
    " wypisz sie ",
)
_UNSUBSCRIBE: Final = re.compile("|".join(_UNSUBSCRIBE_PHRASES))
# Inside a placeholder, which stands for a URL the mail service makes, a preferences page is one of the
# unsubscribe pages (SendGrid's ``asm_preferences_raw_url``, Mailchimp's ``UPDATE_PROFILE``).
_PLACEHOLDER_ONLY: Final = re.compile(
    " (?:preferences?|prefs) | update ?profile | profile ?(?:center|centre) "
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS: Final = re.compile(r"[\W_]+")
# Attributes whose values are not words about the link: the URL itself, presentation, and other URLs.
_NOT_WORDS: Final = frozenset({"href", "style", "src", "background", "target", "width", "height", "border"})


def is_unsubscribe_link(
    url: str, *, text: str = "", attributes: Iterable[tuple[str, str | None]] = ()
) -> bool:
    """Whether the link to ``url``, reading ``text`` and its tag's ``attributes``, is an unsubscribe link
    (or a preferences page offered instead of one), by the rules of this module's docstring."""
    for placeholder in placeholders(url):
        words = _words(placeholder)
        if _UNSUBSCRIBE.search(words) or _PLACEHOLDER_ONLY.search(words):
            return True
    if _UNSUBSCRIBE.search(_words(_path_and_query(url))):
        return True
    if text and _UNSUBSCRIBE.search(_words(text)):
        return True
    return any(
        value and name.lower() not in _NOT_WORDS and _UNSUBSCRIBE.search(_words(value))
        for name, value in attributes
    )


def _path_and_query(url: str) -> str:
    """The URL's path and query, decoded (a ``mailto:`` address is its path; a bare placeholder too)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced "[" in the host: read it all
        return unquote(url)
    return unquote(f"{parts.path} {parts.query}")


def _words(text: str) -> str:
    """``text`` as lower-case words without accents, separated and surrounded by single spaces; a camelCase
    name is read both split (``optOut``: "opt out") and whole (``UnSubscribe``: "unsubscribe")."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    whole = _SEPARATORS.sub(" ", plain.casefold()).strip()
    split = _SEPARATORS.sub(" ", _CAMEL.sub(" ", plain).casefold()).strip()
    return f" {whole} " if split == whole else f" {whole} {split} "
