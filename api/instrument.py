"""Instrumenting an email's HTML: find its web links, point them at tracked URLs, and add the open pixel.

This module owns the rewrite rules for `POST /v1/instrument`. It is pure: it never performs I/O, never signs
or registers anything (the caller registers `find_links` and hands `rewrite_html` the tracked URLs), and
never raises on malformed HTML. The output is the input byte for byte except for three kinds of edit:

* the value of the first ``href`` of each link tag (``<a>``, ``<area>``, Outlook's VML ``<v:...>`` shapes)
  whose URL is absolute ``http``/``https`` and present in ``tracked`` is replaced by the tracked URL,
  attribute-escaped and in the original quote style, unless the tag carries a no-track marker;
* each no-track marker attribute of a link tag (``data-pixelpipe-track="off"``, ``clicktracking=off``,
  ``data-pm-no-track``, ``ses:no-track``: `api.link_controls.is_no_track_marker`) is removed with the
  whitespace before it, and nothing else of the tag changes (the whitespace stays when a ``/`` follows, so
  ``<a href=x data-pm-no-track/>`` does not become ``<a href=x/>``);
* one pixel ``<img>`` goes right before the last ``</body>`` end tag, or at the end without one (none when
  the caller gives no pixel URL).

`scan_links` reports every link tag's href (web or not) with its text and attributes, for
`api.link_controls` to decide which to track.

Left alone on purpose: every other scheme and relative links (``mailto:``, ``tel:``, ``#top``, ``/path``,
``//host/path``, ``javascript:``; the click endpoint only redirects to http(s), and a ``<base href>`` is not
applied); attribute values of other tags (``<img src>``, ``<link href>``, ``background``); the text of
``<script>``, ``<style>``, ``<title>``, ``<textarea>`` and other raw-text elements; and ordinary comments,
which no client renders. Outlook's conditional comments (``<!--[if mso]>...<![endif]-->``) are the exception:
Outlook renders them, and bulletproof buttons keep their only link for Outlook there (``<v:roundrect
href>``), so link tags inside them are rewritten like any other. A construct the parser cannot read is left
as it is, and parsing carries on after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html import unescape
from html.entities import html5
from html.parser import HTMLParser
from typing import Final
from urllib.parse import urlsplit

from api.link_controls import LinkSeen, is_no_track_marker

PIXEL_TAG: Final = (
    '<img src="{src}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" />'
)
_WEB_SCHEMES: Final = frozenset({"http", "https"})
# HTML's "ASCII whitespace"; `str.strip()` would also eat non-breaking spaces that belong to the URL.
_ASCII_WHITESPACE: Final = "\t\n\f\r "
_UNQUOTED_UNSAFE: Final = frozenset("\t\n\f\r \"'=<>`")

# The start tag is re-read with the same tolerance as html.parser (tag name, then attributes separated by
# whitespace or stray slashes) so the span of the attribute value can be replaced in place.
_TAG_NAME = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*")
_ATTRIBUTE = re.compile(
    r"""(?:\s|/)*
        (?P<name>[^\s/>][^\s/=>]*)
        (?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|(?!['"])[^>\s]*))?""",
    re.VERBOSE,
)
_CHARACTER_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_CONDITIONAL_COMMENT = re.compile(r"\[if\b[^\]]*\]>(?P<content>.*)<!\[endif\]\s*", re.DOTALL | re.IGNORECASE)
_NEWLINE = re.compile("\n")
# Elements whose content browsers read as text, not tags; html.parser itself knows only script and style.
_RAW_TEXT_ELEMENTS: Final = frozenset({"title", "textarea", "xmp", "iframe", "noembed", "noframes"})
_MAX_LINK_TEXT: Final = 1000  # characters of a link's text kept for `api.link_controls`


@dataclass(frozen=True, slots=True)
class InstrumentedHtml:
    """The rewritten document and the distinct web links of the original, in document order."""

    html: str
    links: tuple[str, ...]


def pixel_tag(pixel_url: str) -> str:
    """The open pixel as inserted: a 1x1 block image, so it adds no line box and no gap in table layouts."""
    return PIXEL_TAG.format(src=pixel_url.replace("&", "&amp;").replace('"', "&quot;"))


def find_links(html: str) -> list[str]:
    """The distinct http(s) URLs of the document's link tags, decoded as a browser reads them (marked ones
    included: `api.link_controls` decides)."""
    return _distinct(href.url for href in _scan(html).hrefs if href.web)


def scan_links(html: str) -> list[LinkSeen]:
    """Every link tag's href (web or not, empty ones left out), in document order: its decoded URL, whether
    the tag carries a no-track marker, the link's text (with the ``alt`` and ``title`` of images in it; an
    ``<area>``'s own ``alt``; whitespace collapsed) and the tag's other attributes."""
    return [
        LinkSeen(
            url=href.url,
            web=href.web,
            marked=href.marked,
            text=" ".join("".join(href.text).split())[:_MAX_LINK_TEXT],
            attributes=href.attributes,
        )
        for href in _scan(html).hrefs
        if href.url
    ]


def rewrite_html(html: str, *, pixel_url: str | None, tracked: Mapping[str, str]) -> str:
    """``html`` with each unmarked link whose URL is a key of ``tracked`` pointing at its value, every
    no-track marker removed, and the pixel (if ``pixel_url``)."""
    return _rewrite(html, _scan(html), pixel_url=pixel_url, tracked=tracked)


def instrument_html(html: str, *, pixel_url: str, track: Callable[[str], str | None]) -> InstrumentedHtml:
    """Both steps at once; ``track`` maps an original URL to its tracked URL, or None to leave it alone."""
    findings = _scan(html)
    links = _distinct(href.url for href in findings.hrefs if href.web)
    tracked = {url: tracked_url for url in links if (tracked_url := track(url)) is not None}
    return InstrumentedHtml(_rewrite(html, findings, pixel_url=pixel_url, tracked=tracked), tuple(links))


@dataclass(slots=True)
class _Href:
    url: str
    start: int  # span of the attribute value in the document, quotes included
    end: int
    quote: str  # '"', "'", or "" when unquoted
    web: bool = True
    marked: bool = False  # the tag carries a no-track marker: never rewritten
    attributes: tuple[tuple[str, str | None], ...] = ()
    text: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Findings:
    hrefs: list[_Href] = field(default_factory=list)
    body_ends: list[int] = field(default_factory=list)
    conditional_comments: list[tuple[int, int]] = field(default_factory=list)
    markers: list[tuple[int, int]] = field(default_factory=list)  # no-track markers' spans, to remove


def _distinct(urls: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(urls))


def _rewrite(document: str, findings: _Findings, *, pixel_url: str | None, tracked: Mapping[str, str]) -> str:
    edits = [
        (href.start, href.end, _attribute_value(tracked[href.url], href.quote))
        for href in findings.hrefs
        if href.web and not href.marked and href.url in tracked
    ]
    edits += [(start, end, "") for start, end in findings.markers]
    if pixel_url is not None:
        pixel_at = findings.body_ends[-1] if findings.body_ends else len(document)
        edits.append((pixel_at, pixel_at, pixel_tag(pixel_url)))
    edits.sort(key=lambda edit: edit[0])
    pieces: list[str] = []
    cursor = 0
    for start, end, replacement in edits:
        pieces += (document[cursor:start], replacement)
        cursor = end
    pieces.append(document[cursor:])
    return "".join(pieces)


def _attribute_value(url: str, quote: str) -> str:
    escaped = url.replace("&", "&amp;")
    if quote == "'":
        return "'" + escaped.replace("'", "&#39;") + "'"
    if quote == "" and escaped and _UNQUOTED_UNSAFE.isdisjoint(escaped):
        return escaped
    # Double quotes for a quoted original, and for an unquoted one whose new value would end it early.
    return '"' + escaped.replace('"', "&quot;") + '"'


def _scan(document: str) -> _Findings:
    findings = _Findings()
    _scan_region(document, 0, len(document), findings, outlook_only=False)
    for start, end in findings.conditional_comments:
        _scan_region(document, start, end, findings, outlook_only=True)
    findings.hrefs.sort(key=lambda href: href.start)
    return findings


def _scan_region(document: str, begin: int, end: int, findings: _Findings, *, outlook_only: bool) -> None:
    start = begin
    while start < end:
        scanner = _Scanner(document, start, end, findings, outlook_only=outlook_only)
        try:
            scanner.feed(document[start:end])
            scanner.close()
        except Exception:  # html.parser raises AssertionError on declarations like `<![x]>`
            # Take the character it choked on as text and carry on with a fresh parser after it; what it
            # reported before the failure stands.
            start = max(scanner.position() + 1, start + 1)
        else:
            return


class _Scanner(HTMLParser):
    """Reports where link values, `</body>` end tags and conditional comments sit in the document."""

    def __init__(
        self, document: str, begin: int, end: int, findings: _Findings, *, outlook_only: bool
    ) -> None:
        # convert_charrefs=True: with False, a stray "&#" in text makes html.parser stop finding tags.
        super().__init__(convert_charrefs=True)
        self._document = document
        self._line_starts = [begin, *(match.end() for match in _NEWLINE.finditer(document, begin, end))]
        self._findings = findings
        self._outlook_only = outlook_only
        self._open: _Href | None = None  # the link whose text is being read
        self._open_tag = ""

    def position(self) -> int:
        """Offset in the document of the construct being parsed (html.parser counts lines by "\\n" only)."""
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _RAW_TEXT_ELEMENTS:
            self.set_cdata_mode(tag)
            return
        self._words_of(tag, attrs)
        if self._find_href(tag, attrs) is not None:
            self._open_tag = tag

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # The default also calls handle_endtag, and `<body/>` must not count as the end of the body.
        self._words_of(tag, attrs)
        self._find_href(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._open is not None and self.cdata_elem is None:  # not a <style> or <script> in a link
            self._open.text.append(data)

    def _words_of(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """What a tag inside the open link adds to its text: an image's ``alt`` and ``title``, a line break's
        space. A new ``<a>`` ends the open one (links do not nest)."""
        if self._open is None:
            return
        if tag == "a" and self._open_tag == "a":
            self._open = None
        elif tag == "img":
            words = (value for name, value in attrs if name in ("alt", "title") and value)
            self._open.text.extend(f" {value} " for value in words)
        elif tag == "br":
            self._open.text.append(" ")

    def _find_href(self, tag: str, attrs: list[tuple[str, str | None]]) -> _Href | None:
        """Record the link tag's href and no-track markers; the href, now the open link, if it has one."""
        if tag not in {"a", "area"} and not tag.startswith("v:"):
            return None
        raw = self.get_starttag_text()
        start = self.position()
        if raw is None or not self._document.startswith(raw, start):
            return None
        marked = any(is_no_track_marker(name, value) for name, value in attrs)
        located = _read_link_tag(raw, attrs)
        if located is None:
            return None
        found, markers = located
        self._findings.markers += [(start + begin, start + end) for begin, end in markers]
        if found is None:
            return None
        value_start, value_end, quote, url = found
        others = tuple((name, value) for name, value in attrs if name != "href")
        href = _Href(url, start + value_start, start + value_end, quote, _is_web_url(url), marked, others)
        if tag == "area":
            href.text += [value for name, value in attrs if name == "alt" and value]
        self._findings.hrefs.append(href)
        self._open = href
        return href

    def handle_endtag(self, tag: str) -> None:
        if tag == "body" and not self._outlook_only:
            self._findings.body_ends.append(self.position())
        if self._open is not None and tag == self._open_tag:
            self._open = None

    def handle_comment(self, data: str) -> None:
        if self._outlook_only:
            return
        start = self.position()
        matched = _CONDITIONAL_COMMENT.fullmatch(data)
        # Bogus comments (`<!x>`) are reported here too; only a real `<!--` comment can be conditional.
        if matched is not None and self._document.startswith("<!--" + data, start):
            content_start = start + len("<!--")
            self._findings.conditional_comments.append(
                (content_start + matched.start("content"), content_start + matched.end("content"))
            )


def _read_link_tag(
    raw_tag: str, parsed: list[tuple[str, str | None]]
) -> tuple[tuple[int, int, str, str] | None, list[tuple[int, int]]] | None:
    """Read a link tag's text: (value start, value end, quote, URL) of its first href (None without one, or
    an empty one), and the spans of its no-track markers. None when this reading and html.parser's
    (``parsed``) disagree on the href: markup too odd to touch. A marker is removed only where html.parser
    saw it too."""
    name = _TAG_NAME.match(raw_tag)
    if name is None:
        return None
    parsed_href = next((value for name, value in parsed if name == "href"), None)
    parsed_markers = {name for name, value in parsed if is_no_track_marker(name, value)}
    href: tuple[int, int, str, str] | None = None
    seen_href = False
    markers = []
    at = name.end()
    while (attribute := _ATTRIBUTE.match(raw_tag, at)) is not None:
        at = attribute.end()
        attribute_name = attribute["name"].lower()
        value = attribute["value"]
        quote, inner = ("", "") if value is None else _unquoted(value)
        if attribute_name == "href" and not seen_href:
            seen_href = True
            # Only act where html.parser saw the same attribute: a disagreement means markup too odd to touch.
            if value is None or unescape(inner) != parsed_href:
                return None
            url = _decode_attribute(inner).strip(_ASCII_WHITESPACE)
            if url:
                href = (attribute.start("value"), attribute.end("value"), quote, url)
        elif attribute_name in parsed_markers and is_no_track_marker(
            attribute_name, None if value is None else unescape(inner)
        ):
            markers.append(_marker_span(raw_tag, attribute))
    return href, markers


def _unquoted(value: str) -> tuple[str, str]:
    """An attribute value's quote ('"', "'" or "") and its text inside the quotes."""
    quote = value[0] if value[:1] in {'"', "'"} else ""
    return quote, value[1:-1] if quote else value


def _marker_span(raw_tag: str, attribute: re.Match[str]) -> tuple[int, int]:
    """The span to remove for a marker attribute: it and the whitespace before it, but the whitespace is
    kept when a ``/`` follows (``<a href=x data-pm-no-track/>`` must not become ``<a href=x/>``)."""
    start = attribute.start("name")
    end = attribute.end()
    if raw_tag[end : end + 1] != "/":
        while start > attribute.start() and raw_tag[start - 1] in _ASCII_WHITESPACE:
            start -= 1
    return start, end


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in _WEB_SCHEMES and bool(parts.netloc)


def _decode_attribute(raw: str) -> str:
    """Character references decoded as in an attribute value, which `html.unescape` does not do exactly.

    HTML keeps ``&region=`` and ``&copy=`` as they are in attributes (a legacy reference without ``;``
    followed by ``=`` or a letter or digit is not a reference there); `html.unescape` turns them into
    ``®ion=`` and ``©=``, which would corrupt the query strings of real links.
    """
    return _CHARACTER_REFERENCE.sub(_decode_reference, raw)


def _decode_reference(match: re.Match[str]) -> str:
    reference = match[1]
    if reference.startswith("#"):
        return unescape(match[0])
    for length in range(len(reference), 1, -1):  # the longest name that is a reference wins
        name = reference[:length]
        if name in html5:
            following = reference[length : length + 1]
            if not name.endswith(";") and (following == "=" or (following.isascii() and following.isalnum())):
                return match[0]
            return html5[name] + reference[length:]
    return match[0]
