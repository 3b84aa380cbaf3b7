"""UTM parameters appended to a tracked link's destination (`POST /v1/messages`' ``utm``). Pure.

The rule, as the README states it:

* Only the parameters asked for are appended, in the order ``utm_source``, ``utm_medium``, ``utm_campaign``,
  ``utm_term``, ``utm_content``; ``utm_campaign`` is the message's campaign id unless given.
* A parameter the link already has (any spelling of its name's case: ``utm_source``, ``UTM_Source``) is never
  overridden nor added a second time; the others are still appended. So a link that names its own
  ``utm_content`` keeps it and gets the message's source, medium and campaign.
* The link is otherwise kept as a string, byte for byte: its query (its order, its encoding, a ``;`` or an
  empty ``&&``) is not parsed and re-encoded; the new parameters follow it after one ``&`` (after ``?`` when
  it has no query; nothing more when it ends in ``?`` or ``&``), and the fragment (``#...``) stays at the end.
* Values are UTF-8, percent-encoded except the unreserved characters (``A-Z a-z 0-9 - . _ ~``), so a space is
  ``%20`` and ``&``, ``=``, ``#``, ``+`` and ``/`` can never end the value or start another parameter.

The destination with its UTM parameters is what the click token signs (`api.registry`): the edge redirects
to exactly that URL, and changing a parameter in a token breaks its signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

# The parameters in the order they are appended, by their field name in the request's ``utm`` object.
FIELDS: Final = ("source", "medium", "campaign", "term", "content")


@dataclass(frozen=True, slots=True)
class Utm:
    """The UTM values of one message (None: not appended)."""

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None

    def parameters(self) -> tuple[tuple[str, str], ...]:
        """``(utm_name, value)`` of each value set, in `FIELDS` order."""
        values = (self.source, self.medium, self.campaign, self.term, self.content)
        pairs = zip(FIELDS, values, strict=True)
        return tuple((f"utm_{name}", value) for name, value in pairs if value is not None)


def with_utm(url: str, utm: Utm) -> str:
    """``url`` with the UTM parameters it lacks appended to its query, before its fragment."""
    head, hash_mark, fragment = url.partition("#")
    path, question_mark, query = head.partition("?")
    present = _parameter_names(query)
    added = "&".join(
        f"{name}={quote(value, safe='')}" for name, value in utm.parameters() if name not in present
    )
    if not added:
        return url
    if not question_mark:
        query = added
    elif query and not query.endswith("&"):
        query = f"{query}&{added}"
    else:
        query += added
    return f"{path}?{query}{hash_mark}{fragment}"


def _parameter_names(query: str) -> frozenset[str]:
    """The names in a query string, decoded and lower-cased (``UTM_Source`` and ``utm%5Fsource`` are
    ``utm_source``): what a web analytics tool may read as that parameter."""
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return frozenset(unquote(name.replace("+", " ")).lower() for name in names)
