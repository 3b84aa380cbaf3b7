"""The HTML rewrite of `POST /v1/instrument`: only web links and the pixel change, byte for byte."""

from __future__ import annotations

import dataclasses
import random
from html.parser import HTMLParser

import pytest

from api.instrument import InstrumentedHtml, find_links, instrument_html, pixel_tag, rewrite_html

PIXEL_URL = "https://t.example/o/TOKEN.gif"
PIXEL = (
    '<img src="https://t.example/o/TOKEN.gif" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px" />'
)
CLICK = "https://t.example/c/L"


def instrument(source: str) -> tuple[list[str], str]:
    """The links found, and the document rewritten with the n-th link tracked as ``CLICK + n``."""
    links = find_links(source)
    tracked = {url: f"{CLICK}{index}" for index, url in enumerate(links)}
    return links, rewrite_html(source, pixel_url=PIXEL_URL, tracked=tracked)


class _Tags(HTMLParser):
    """The tag sequence a parser sees, with the hrefs of link tags; text and comments are not recorded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str, tuple[str, ...]]] = []
        self.hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(("start", tag, tuple(name for name, _ in attrs)))
        if tag in {"a", "area"}:
            self.hrefs.append(dict(attrs).get("href"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.tags[-1] = ("startend", tag, self.tags[-1][2])

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("end", tag, ()))


def parse(document: str) -> _Tags:
    tags = _Tags()
    tags.feed(document)
    tags.close()
    return tags


def assert_well_formed_edit(source: str, output: str) -> None:
    """One pixel; the output parses to the input's tags plus that one `<img>`; no web link left untracked."""
    assert output.count(PIXEL) == 1
    before, after = parse(source), parse(output.replace(PIXEL, "", 1))
    assert after.tags == before.tags
    pixel_alone = parse(PIXEL).tags
    assert pixel_alone == [("startend", "img", ("src", "width", "height", "alt", "style"))]
    assert len(parse(output).tags) == len(before.tags) + 1
    for href in after.hrefs:
        if href is not None and href.strip().lower().startswith(("http:", "https:")):
            assert href.startswith(CLICK)


def _tracked_once(source: str, url: str, end: str = "</body>") -> str:
    """``source`` with its one web link, ``url`` (double-quoted), tracked as the first and the pixel put
    before ``end``: what the rewrite may change, and nothing else."""
    return source.replace(f'href="{url}"', f'href="{CLICK}0"').replace(end, PIXEL + end)


OTHER_TAGS = (
    '<head><link rel="stylesheet" href="https://fonts.example.com/css"><base href="https://example.com/">'
    "</head><body>"
    '<img src="https://cdn.example.com/a.png" alt=\'<a href="https://example.com/in-alt">\'>'
    '<td background="https://cdn.example.com/bg.png"></td>'
    '<div data-href="https://example.com/data" title="https://example.com/title"></div>'
    '<a title="https://example.com/title" href="https://example.com/real">real</a>'
    "</body>"
)


IMAGE_MAP = (
    '<body><img src="https://cdn.example.com/map.png" usemap="#m"><map name="m">'
    '<area shape="rect" coords="0,0,10,10" href="https://example.com/left" alt="left">'
    '<area shape="rect" coords="10,0,20,10" href="#right" alt="right">'
    "</map></body>"
)


RAW_TEXT = (
    '<html><head><title>See <a href="https://example.com/title">this</a></title>'
    "<style>.x{background:url(https://example.com/bg.png)}"
    '/* <a href="https://example.com/css"> */</style>'
    "<script>document.write('<a href=\"https://example.com/js\">x</a></body>');</script></head>"
    '<body><!-- <a href="https://example.com/commented">old</a> </body> -->'
    '<textarea><a href="https://example.com/textarea">t</a></textarea>'
    '<a href="https://example.com/live">live</a>'
    "</body></html>"
)


@pytest.mark.parametrize(
    ("source", "links", "expected"),
    [
        pytest.param(
            '<html><body><p>Hi <a href="https://example.com/a">there</a></p></body></html>',
            ["https://example.com/a"],
            (f'<html><body><p>Hi <a href="{CLICK}0">there</a></p>{PIXEL}</body></html>'),
            id="rewrites-a-link-and-adds-the-pixel-before-body-end",
        ),
        pytest.param(
            OTHER_TAGS,
            ["https://example.com/real"],
            _tracked_once(OTHER_TAGS, "https://example.com/real"),
            id="attribute-values-of-other-tags-are-left-alone",
        ),
        pytest.param(
            '<HTML><BODY><A HREF="HTTPS://EXAMPLE.COM/Path?Q=1">x</A><AREA Href=HTTP://EXAMPLE.COM/b></BODY></HTML>',
            ["HTTPS://EXAMPLE.COM/Path?Q=1", "HTTP://EXAMPLE.COM/b"],
            f'<HTML><BODY><A HREF="{CLICK}0">x</A><AREA Href={CLICK}1>{PIXEL}</BODY></HTML>',
            id="uppercase-tags-attributes-and-schemes",
        ),
        pytest.param(
            (
                "<body>"
                "<a href=http://example.com/u?a=1>unquoted</a>"
                "<a href='https://example.com/s?a=1&amp;b=2'>single</a>"
                '<a class=btn href = "https://example.com/d" >spaced</a>'
                "<a href=https://example.com/self-closing/>x</a>"
                '<a href="https://example.com/x" />'
                "</body>"
            ),
            [
                "http://example.com/u?a=1",
                "https://example.com/s?a=1&b=2",
                "https://example.com/d",
                "https://example.com/self-closing/",
                "https://example.com/x",
            ],
            (
                "<body>"
                f"<a href={CLICK}0>unquoted</a>"
                f"<a href='{CLICK}1'>single</a>"
                f'<a class=btn href = "{CLICK}2" >spaced</a>'
                f"<a href={CLICK}3>x</a>"
                f'<a href="{CLICK}4" />'
                f"{PIXEL}</body>"
            ),
            id="quote-styles-are-kept",
        ),
        pytest.param(
            IMAGE_MAP,
            ["https://example.com/left"],
            _tracked_once(IMAGE_MAP, "https://example.com/left"),
            id="image-map-areas-are-links",
        ),
    ],
)
def test_web_links_are_tracked_in_a_well_formed_edit(source: str, links: list[str], expected: str) -> None:
    found, output = instrument(source)

    assert found == links
    assert output == expected
    assert_well_formed_edit(source, output)


@pytest.mark.parametrize(
    ("source", "links", "expected"),
    [
        pytest.param(
            '<body><a href="  https://example.com/x?y=1 \n\t">x</a></body>',
            ["https://example.com/x?y=1"],
            f'<body><a href="{CLICK}0">x</a>{PIXEL}</body>',
            id="whitespace-around-the-url-is-tolerated-and-dropped",
        ),
        pytest.param(
            RAW_TEXT,
            ["https://example.com/live"],
            _tracked_once(RAW_TEXT, "https://example.com/live", "</body></html>"),
            id="links-in-comments-scripts-styles-and-raw-text-are-left-alone",
        ),
        pytest.param(
            (
                "<body>"
                "<!--[if mso]>\r\n"
                '<v:roundrect href="https://example.com/buy" arcsize="10%">'
                "<center>Buy</center></v:roundrect>\r\n"
                '<a href="https://example.com/outlook-only">o</a>\r\n'
                "<![endif]-->"
                '<!--[if !mso]><!--><a href="https://example.com/buy">Buy</a><!--<![endif]-->'
                '<!--[if mso | IE]><table><tr><td><![endif]--><a href="tel:+1555">call</a>'
                '<!-- [if mso]><a href="https://example.com/not-conditional"><![endif] -->'
                "</body>"
            ),
            ["https://example.com/buy", "https://example.com/outlook-only"],
            (
                "<body>"
                "<!--[if mso]>\r\n"
                f'<v:roundrect href="{CLICK}0" arcsize="10%"><center>Buy</center></v:roundrect>\r\n'
                f'<a href="{CLICK}1">o</a>\r\n'
                "<![endif]-->"
                f'<!--[if !mso]><!--><a href="{CLICK}0">Buy</a><!--<![endif]-->'
                '<!--[if mso | IE]><table><tr><td><![endif]--><a href="tel:+1555">call</a>'
                '<!-- [if mso]><a href="https://example.com/not-conditional"><![endif] -->'
                f"{PIXEL}</body>"
            ),
            id="outlook-conditional-comments-are-rendered-content-so-their-links-are-tracked",
        ),
        pytest.param(
            '<body><a href="https://example.com/first" HREF="https://example.com/second">x</a></body>',
            ["https://example.com/first"],
            f'<body><a href="{CLICK}0" HREF="https://example.com/second">x</a>{PIXEL}</body>',
            id="only-the-first-href-of-a-tag-is-rewritten",
        ),
        pytest.param(
            (
                "<body>\n"
                '<a href="https://example.com/p?a=1&amp;b=2">1</a>\n'
                "<a\n  class='x'\n  href=\"https://example.com/p?a=1&b=2\"\n>2</a>\n"
                "<a href='https://example.com/p?a=1&#38;b=2'>3</a>\n"
                "</body>"
            ),
            ["https://example.com/p?a=1&b=2"],
            (
                "<body>\n"
                f'<a href="{CLICK}0">1</a>\n'
                f"<a\n  class='x'\n  href=\"{CLICK}0\"\n>2</a>\n"
                f"<a href='{CLICK}0'>3</a>\n"
                f"{PIXEL}</body>"
            ),
            id="a-link-repeated-in-different-spellings-is-one-link",
        ),
    ],
)
def test_web_links_are_tracked(source: str, links: list[str], expected: str) -> None:
    found, output = instrument(source)

    assert found == links
    assert output == expected


MAILCHIMP_LIKE = """\
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<title>Spring sale: 20% off &amp; free shipping</title>
<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml><![endif]-->
<style type="text/css">
  a:hover { color: #d62828; }
  /* <a href="https://example.com/in-style">not a link</a> */
  @import url("https://fonts.example.com/css?family=Inter");
</style>
</head>
<body style="margin:0;padding:0;background-color:#f4f4f4;">
<a name="top" id="top"></a>
<span class="preheader" style="display:none;">Ends Sunday &mdash; don&#39;t miss it</span>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
  <tr>
    <td align="center" background="https://cdn.example.com/bg.png">
      <a href="https://example.com/?utm_source=newsletter&amp;utm_medium=email" target="_blank">\
<img src="https://cdn.example.com/logo.png" alt="Example" width="120" style="display:block;border:0;"></a>
    </td>
  </tr>
  <tr>
    <td class="mcnTextContent" style="font-family:Helvetica,Arial,sans-serif;">
      <h1>Bonjour Zoë, ça va ? 日本語のテキスト 🌸</h1>
      <p>Our <a href="https://example.com/p?utm_source=x&amp;utm_medium=email" style="color:#d62828;">spring \
collection</a> is here.</p>
      <p>Questions? <a href="mailto:help@example.com?subject=Spring%20sale">Email us</a> or call \
<a href="tel:+15555550123">+1 555 555 0123</a>.</p>
      <!--[if mso]>
      <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" \
href="https://example.com/shop?utm_source=x&amp;utm_medium=email" style="height:44px;width:200px;" \
arcsize="10%" stroke="f" fillcolor="#d62828">
        <w:anchorlock/><center>Shop now</center>
      </v:roundrect>
      <![endif]-->
      <!--[if !mso]><!-- -->
      <a href="https://example.com/shop?utm_source=x&amp;utm_medium=email" class="button">Shop now</a>
      <!--<![endif]-->
      <!-- old footer: <a href="https://example.com/retired">retired</a> -->
    </td>
  </tr>
  <tr>
    <td style="font-size:12px;">
      <a href="https://example.com/p?utm_source=x&amp;utm_medium=email#details">Details</a> &middot;
      <a href="#top">Back to top</a> &middot;
      <a href="*|UNSUB|*">Unsubscribe</a> &middot;
      <a href="https://example.com/prefs?u=abc123&amp;id=9f8e7d">Update preferences</a>
    </td>
  </tr>
</table>
</body>
</html>
"""


def test_mailchimp_like_template_rewrites_only_its_web_links() -> None:
    links, output = instrument(MAILCHIMP_LIKE)

    assert links == [
        "https://example.com/?utm_source=newsletter&utm_medium=email",
        "https://example.com/p?utm_source=x&utm_medium=email",
        "https://example.com/shop?utm_source=x&utm_medium=email",
        "https://example.com/p?utm_source=x&utm_medium=email#details",
        "https://example.com/prefs?u=abc123&id=9f8e7d",
    ]
    raw_values = [
        "https://example.com/?utm_source=newsletter&amp;utm_medium=email",
        "https://example.com/p?utm_source=x&amp;utm_medium=email",
        "https://example.com/shop?utm_source=x&amp;utm_medium=email",
        "https://example.com/p?utm_source=x&amp;utm_medium=email#details",
        "https://example.com/prefs?u=abc123&amp;id=9f8e7d",
    ]
    expected = MAILCHIMP_LIKE
    for index, raw in enumerate(raw_values):
        expected = expected.replace(f'href="{raw}"', f'href="{CLICK}{index}"')
    expected = expected.replace("</body>", PIXEL + "</body>")
    assert output == expected
    # The shop link twice: the VML button for Outlook and the <a> for everyone else.
    assert output.count(CLICK) == 6
    # Substituting the originals back gives the input: nothing else moved.
    restored = output.replace(PIXEL, "", 1)
    for index, raw in enumerate(raw_values):
        restored = restored.replace(f'href="{CLICK}{index}"', f'href="{raw}"')
    assert restored == MAILCHIMP_LIKE
    assert_well_formed_edit(MAILCHIMP_LIKE, output)
    assert "https://example.com/retired" in output
    assert "https://example.com/in-style" in output


def test_find_links_decodes_character_references_as_browsers_do_in_attributes() -> None:
    source = (
        '<a href="https://e.com/a?x=1&amp;y=2">1</a>'
        '<a href="https://e.com/b?x=1&#38;y=2&#x26;z=3">2</a>'
        '<a href="https://e.com/c?x=1&region=us&copy=2&not">3</a>'
        '<a href="https://e.com/d?q=&copy;&lt;">4</a>'
        '<a href="https&#58;//e.com/e">5</a>'
    )

    assert find_links(source) == [
        "https://e.com/a?x=1&y=2",
        "https://e.com/b?x=1&y=2&z=3",
        # Legacy names without ";" before "=" or a letter stay literal in attributes; at the end they decode.
        "https://e.com/c?x=1&region=us&copy=2\N{NOT SIGN}",
        "https://e.com/d?q=\N{COPYRIGHT SIGN}<",
        "https://e.com/e",
    ]


@pytest.mark.parametrize(
    "tag",
    [
        '<a href="mailto:help@example.com">m</a>',
        '<a href="tel:+15555550123">t</a>',
        '<a href="sms:+15555550123">s</a>',
        '<a href="#top">top</a>',
        '<a href="/relative/path">r</a>',
        '<a href="page.html?x=1">r</a>',
        '<a href="//cdn.example.com/protocol-relative">p</a>',
        '<a href="javascript:alert(1)">j</a>',
        '<a href="ftp://files.example.com/x">f</a>',
        '<a href="data:text/html,hi">d</a>',
        '<a href="http:/one-slash">h</a>',
        '<a href="https://">no host</a>',
        '<a href="http://[::1">bad host</a>',
        '<a href="">empty</a>',
        "<a href>no value</a>",
        '<a name="anchor">no href</a>',
        '<a data-href="https://example.com/x" href="mailto:a@example.com">data-href</a>',
        '<a href="*|ARCHIVE|*">merge tag</a>',
        '<a href=="https://example.com/double-equals">odd</a>',
    ],
)
def test_non_web_links_are_left_alone(tag: str) -> None:
    source = f"<body>{tag}</body>"

    links, output = instrument(source)

    assert links == []
    assert output == f"<body>{tag}{PIXEL}</body>"


def test_tracked_urls_are_escaped_for_the_original_quote_style() -> None:
    source = (
        '<body><a href="https://e.com/1">1</a>'
        "<a href='https://e.com/2'>2</a>"
        "<a href=https://e.com/3>3</a>"
        "<a href=https://e.com/4>4</a></body>"
    )
    tracked = {
        "https://e.com/1": 'https://t.example/c?a=1&b="2"',
        "https://e.com/2": "https://t.example/c?a=1&b='2'",
        "https://e.com/3": "https://t.example/c/3&x",
        "https://e.com/4": "https://t.example/c?a=1 2>",
    }

    output = rewrite_html(source, pixel_url="https://t.example/o.gif?a=1&b=2", tracked=tracked)

    assert output == (
        '<body><a href="https://t.example/c?a=1&amp;b=&quot;2&quot;">1</a>'
        "<a href='https://t.example/c?a=1&amp;b=&#39;2&#39;'>2</a>"
        "<a href=https://t.example/c/3&amp;x>3</a>"
        # Unquoted stays unquoted only while the new value cannot end it early or trip a parser.
        '<a href="https://t.example/c?a=1 2>">4</a>'
        '<img src="https://t.example/o.gif?a=1&amp;b=2" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" /></body>'
    )
    assert parse(output).hrefs == list(tracked.values())


def test_query_strings_and_fragments_are_kept_inside_the_link() -> None:
    source = '<body><a href="https://example.com/a/b;p?q=1&amp;q=2&amp;r=%20x#frag?not=query">x</a></body>'

    assert find_links(source) == ["https://example.com/a/b;p?q=1&q=2&r=%20x#frag?not=query"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("<p>no body end</p>", f"<p>no body end</p>{PIXEL}", id="no-body-end"),
        pytest.param("", PIXEL, id="empty"),
        pytest.param(
            "<body>a</body>b</body>c",
            f"<body>a</body>b{PIXEL}</body>c",
            id="two-body-ends",
        ),
        pytest.param(
            "<body>a</BODY >\n<!-- </body> --><script>'</body>'</script>",
            f"<body>a{PIXEL}</BODY >\n<!-- </body> --><script>'</body>'</script>",
            id="last-real-body-end",
        ),
        pytest.param("<body/><p>x</p>", f"<body/><p>x</p>{PIXEL}", id="self-closing-body-is-no-end"),
        pytest.param(
            "<html><body>x</body></html>\r\n",
            f"<html><body>x{PIXEL}</body></html>\r\n",
            id="crlf-tail",
        ),
    ],
)
def test_exactly_one_pixel_before_the_last_body_end_or_at_the_end(source: str, expected: str) -> None:
    links, output = instrument(source)

    assert links == []
    assert output == expected
    assert output.count("<img") == source.count("<img") + 1


def test_non_ascii_text_and_urls_survive_unchanged() -> None:
    source = (
        "<body><p>Café crème — 日本語のメール 🎉👍🏽</p>\n"
        '<a href="https://例え.jp/パス?q=😀&amp;é=1">リンク 🔗</a>\n'
        "<p>Zoë</p></body>"
    )

    links, output = instrument(source)

    assert links == ["https://例え.jp/パス?q=😀&é=1"]
    assert output == (
        "<body><p>Café crème — 日本語のメール 🎉👍🏽</p>\n"
        f'<a href="{CLICK}0">リンク 🔗</a>\n'
        f"<p>Zoë</p>{PIXEL}</body>"
    )
    assert output.encode() == source.encode().replace(
        'href="https://例え.jp/パス?q=😀&amp;é=1"'.encode(), f'href="{CLICK}0"'.encode()
    ).replace(b"</body>", PIXEL.encode() + b"</body>")


def test_links_missing_from_tracked_are_left_alone() -> None:
    source = '<body><a href="https://example.com/a">a</a><a href="https://example.com/b">b</a></body>'

    output = rewrite_html(source, pixel_url=PIXEL_URL, tracked={"https://example.com/b": f"{CLICK}9"})

    assert output == f'<body><a href="https://example.com/a">a</a><a href="{CLICK}9">b</a>{PIXEL}</body>'


def test_instrument_html_tracks_what_track_returns_and_lists_every_link() -> None:
    source = '<body><a href="https://example.com/a">a</a><a href="https://example.com/b">b</a></body>'
    asked: list[str] = []

    def track(url: str) -> str | None:
        asked.append(url)
        return None if url.endswith("/a") else f"{CLICK}1"

    result = instrument_html(source, pixel_url=PIXEL_URL, track=track)

    assert asked == ["https://example.com/a", "https://example.com/b"]
    assert result == InstrumentedHtml(
        html=f'<body><a href="https://example.com/a">a</a><a href="{CLICK}1">b</a>{PIXEL}</body>',
        links=("https://example.com/a", "https://example.com/b"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.html = ""  # type: ignore[misc]


def test_pixel_tag_escapes_its_url() -> None:
    assert pixel_tag(PIXEL_URL) == PIXEL
    assert pixel_tag('https://t.example/o.gif?a=1&b="2"') == (
        '<img src="https://t.example/o.gif?a=1&amp;b=&quot;2&quot;" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )


@pytest.mark.parametrize(
    ("source", "links", "expected"),
    [
        pytest.param(
            '<body><a href="https://example.com/cut',
            [],
            f'<body><a href="https://example.com/cut{PIXEL}',
            id="unterminated-attribute-at-eof",
        ),
        pytest.param("<a href=", [], f"<a href={PIXEL}", id="cut-after-equals"),
        pytest.param("<", [], f"<{PIXEL}", id="lone-angle"),
        pytest.param(
            '1 < 2 && 3 > 2 <a href="https://example.com/x">x</a>',
            ["https://example.com/x"],
            f'1 < 2 && 3 > 2 <a href="{CLICK}0">x</a>{PIXEL}',
            id="stray-angles",
        ),
        pytest.param(
            '<<a href="https://example.com/x">x</a>',
            ["https://example.com/x"],
            f'<<a href="{CLICK}0">x</a>{PIXEL}',
            id="double-angle",
        ),
        pytest.param(
            '<![foo]]><a href="https://example.com/after">x</a></body>',
            ["https://example.com/after"],
            f'<![foo]]><a href="{CLICK}0">x</a>{PIXEL}</body>',
            id="parser-assertion-then-link",
        ),
        pytest.param(
            '<![ x ]><a href="https://example.com/y">y</a>',
            ["https://example.com/y"],
            f'<![ x ]><a href="{CLICK}0">y</a>{PIXEL}',
            id="unnamed-marked-section",
        ),
        pytest.param(
            '&#zz; &#q <a href="https://example.com/after-refs">x</a>',
            ["https://example.com/after-refs"],
            f'&#zz; &#q <a href="{CLICK}0">x</a>{PIXEL}',
            id="broken-character-references",
        ),
        pytest.param(
            # Browsers make the rest a comment; html.parser makes text of it up to the first ">".
            '<!-- never closed <a href="https://example.com/c">c</a>',
            [],
            f'<!-- never closed <a href="https://example.com/c">c</a>{PIXEL}',
            id="unclosed-comment",
        ),
        pytest.param(
            "<a href='https://example.com/q>x</a><p>",
            [],
            f"<a href='https://example.com/q>x</a><p>{PIXEL}",
            id="unterminated-quote",
        ),
        pytest.param(
            # `"junk"` is an attribute name to browsers too, so the link is still a link.
            '<a href="https://example.com/j" "junk" =x>x</a>',
            ["https://example.com/j"],
            f'<a href="{CLICK}0" "junk" =x>x</a>{PIXEL}',
            id="junk-attributes",
        ),
        pytest.param(
            '<div><table><tr><td><a href="https://example.com/u">unclosed',
            ["https://example.com/u"],
            f'<div><table><tr><td><a href="{CLICK}0">unclosed{PIXEL}',
            id="unclosed-tags",
        ),
        pytest.param(
            '<a href="https://example.com/x"\x00 title=x>x</a>',
            ["https://example.com/x"],
            f'<a href="{CLICK}0"\x00 title=x>x</a>{PIXEL}',
            id="nul-byte",
        ),
    ],
)
def test_malformed_html_never_raises_and_is_left_unchanged_where_unreadable(
    source: str, links: list[str], expected: str
) -> None:
    found, output = instrument(source)

    assert found == links
    assert output == expected
    assert output.count(PIXEL) == 1


FRAGMENTS = [
    '<a href="https://e.com/a?x=1&amp;y=2">',
    "<A HREF=http://x.com/>",
    "</a>",
    "<!--",
    "-->",
    "<![if mso]>",
    "<![endif]>",
    "<!--[if mso]>",
    "<![endif]-->",
    "<![foo]]>",
    "<![ ",
    "<",
    ">",
    "&#",
    "&amp",
    "&region=",
    '"',
    "'",
    "=",
    "</body>",
    "<body>",
    "<body/>",
    "<script>",
    "</script>",
    "<style>",
    "</style>",
    "<title>",
    "</title>",
    "\n",
    "\r\n",
    "é日本😀",
    "<v:roundrect href='https://v.com/'>",
    "<area href=https://ar.com>",
    "<!DOCTYPE html>",
    "<?xml?>",
    "<!x>",
    "</",
    "<a href",
    " href=",
    "https://h.com/",
    "\x00",
    "/",
    "<br/>",
]


def test_random_fragment_soup_never_raises_and_changes_only_links_and_the_pixel() -> None:
    rng = random.Random(20240601)
    for _ in range(2000):
        source = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 30)))

        links, output = instrument(source)

        untracked = rewrite_html(source, pixel_url=PIXEL_URL, tracked={})
        assert untracked.count(PIXEL) == 1
        assert untracked.replace(PIXEL, "", 1) == source
        assert output.count(PIXEL) == 1
        assert len(links) == len(set(links))
        # Every web link the output still has is a tracked one: none was missed.
        assert set(find_links(output)) <= {f"{CLICK}{index}" for index in range(len(links))}
