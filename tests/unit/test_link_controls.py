"""Which links are tracked and why the others are not (`api.link_controls`), and the HTML edits that go
with it (`api.instrument`): no-track markers removed, marked and unsubscribe links left byte for byte."""

from __future__ import annotations

import pytest

from api.instrument import rewrite_html, scan_links
from api.link_controls import LinkSeen, choose, is_no_track_marker, list_unsubscribe_urls
from api.registry import BadMessage

PIXEL = (
    '<img src="https://t.example/o/P.gif" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px" />'
)


@pytest.mark.parametrize(
    ("name", "value", "marks"),
    [
        ("data-pixelpipe-track", "off", True),
        ("data-pixelpipe-track", " OFF ", True),
        ("data-pixelpipe-track", "on", False),
        ("data-pixelpipe-track", None, False),
        ("clicktracking", "off", True),
        ("ClickTracking", "Off", True),
        ("clicktracking", "on", False),
        ("data-pm-no-track", None, True),
        ("data-pm-no-track", "", True),
        ("data-pm-no-track", "true", True),
        ("ses:no-track", None, True),
        ("data-no-track", None, False),
        ("class", "off", False),
    ],
)
def test_no_track_markers(name: str, value: str | None, marks: bool) -> None:
    assert is_no_track_marker(name, value) is marks


def _instrument(html: str, **controls: object) -> tuple[str, list[dict[str, object]]]:
    """The HTML as `/v1/instrument` makes it (tracked URL: ``T:`` + the link; the pixel), and the answer's
    ``untracked_links``."""
    choice = choose(scan_links(html), **controls)  # type: ignore[arg-type]
    tracked = {url: f"https://t.example/c/{index}" for index, url in enumerate(choice.tracked)}
    return rewrite_html(html, pixel_url="https://t.example/o/P.gif", tracked=tracked), choice.untracked()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            '<a data-pixelpipe-track="off" href="https://a.example/x">ours</a>',
            '<a href="https://a.example/x">ours</a>',
            id="ours",
        ),
        pytest.param(
            "<a clicktracking=off href=\"https://a.example/x\" target='_blank'>SendGrid</a>",
            "<a href=\"https://a.example/x\" target='_blank'>SendGrid</a>",
            id="sendgrid-unquoted",
        ),
        pytest.param(
            '<a href="https://a.example/x" clicktracking="off">SendGrid quoted, after href</a>',
            '<a href="https://a.example/x">SendGrid quoted, after href</a>',
            id="sendgrid-quoted-after-href",
        ),
        pytest.param(
            '<a data-pm-no-track href="https://a.example/x" style="color:red">Postmark</a>',
            '<a href="https://a.example/x" style="color:red">Postmark</a>',
            id="postmark",
        ),
        pytest.param(
            '<a ses:no-track href="https://a.example/x">SES</a>',
            '<a href="https://a.example/x">SES</a>',
            id="ses",
        ),
        pytest.param(
            '<A HREF="https://a.example/x"\n   DATA-PM-NO-TRACK\n   CLASS="btn">upper case, new lines</A>',
            '<A HREF="https://a.example/x"\n   CLASS="btn">upper case, new lines</A>',
            id="whitespace-before-it-goes-with-it",
        ),
        pytest.param(
            "<a href=https://a.example/x data-pm-no-track/>x</a>",
            "<a href=https://a.example/x />x</a>",
            id="a-following-slash-keeps-the-space",
        ),
        pytest.param(
            '<a href="https://a.example/x"data-pm-no-track>no space</a>',
            '<a href="https://a.example/x">no space</a>',
            id="no-whitespace-before-it",
        ),
        pytest.param(
            '<a clicktracking = "OFF" data-pixelpipe-track=off href="https://a.example/x">both</a>',
            '<a href="https://a.example/x">both</a>',
            id="two-markers",
        ),
        pytest.param(
            '<a data-pm-no-track href="mailto:hi@example.com">mail</a>',
            '<a href="mailto:hi@example.com">mail</a>',
            id="on-a-mailto-link",
        ),
        pytest.param(
            '<!--[if mso]><v:roundrect data-pm-no-track href="https://a.example/x" arcsize="10%">'
            "<center>Go</center></v:roundrect><![endif]-->",
            '<!--[if mso]><v:roundrect href="https://a.example/x" arcsize="10%">'
            "<center>Go</center></v:roundrect><![endif]-->",
            id="outlook-vml-button",
        ),
    ],
)
def test_a_marked_link_is_left_as_it_is_and_only_its_marker_removed(source: str, expected: str) -> None:
    html, untracked = _instrument(f"<body>{source}</body>")
    assert html == f"<body>{expected}{PIXEL}</body>"
    assert [item["reason"] for item in untracked] == ["attribute"]


def test_a_marker_counts_per_tag_the_same_url_elsewhere_is_tracked() -> None:
    html, untracked = _instrument(
        '<body><a href="https://a.example/x">top</a> <a clicktracking=off href="https://a.example/x">bottom</a>'
        '<a class="c" data-pixelpipe-track="on" href="https://b.example/">on: not a marker</a></body>'
    )
    assert html == (
        '<body><a href="https://t.example/c/0">top</a> <a href="https://a.example/x">bottom</a>'
        '<a class="c" data-pixelpipe-track="on" href="https://t.example/c/1">on: not a marker</a>'
        f"{PIXEL}</body>"
    )
    assert untracked == [{"url": "https://a.example/x", "reason": "attribute"}]


def test_every_reason_in_document_order_once_each() -> None:
    source = (
        "<body>"
        '<a href="https://shop.example.com/sale?id=1&amp;c=2">Sale</a>\n'
        '<a href="https://shop.example.com/sale?id=1&amp;c=2" data-pm-no-track>Sale again</a>\n'
        '<a href="HTTPS://Lists.Example.com/u/abc">Leave this list</a>\n'
        '<a href="https://click.example.com/p/9"><img src="https://cdn.example.com/x.png" alt="Unsubscribe">'
        "</a>\n"
        '<a href="https://click.example.com/p/9">See you</a>\n'
        '<a href="https://example.com/u/{{ user_id }}/offers">Offers</a>\n'
        '<a href="{{{ pm:unsubscribe }}}">Stop these emails</a>\n'
        '<a href="mailto:help@example.com">Help</a> <a href="tel:+441234">Call</a> <a href="#top">Top</a>\n'
        '<a href="/relative">Relative</a> <a href="">Empty</a> <a name="anchor">No href</a>\n'
        '<a href="https://example.com/blog">Blog</a>\n'
        "</body>"
    )
    html, untracked = _instrument(source, list_unsubscribe=["https://lists.example.com/u/abc"])
    assert untracked == [
        {"url": "https://shop.example.com/sale?id=1&c=2", "reason": "attribute"},
        {"url": "HTTPS://Lists.Example.com/u/abc", "reason": "list_unsubscribe"},
        {"url": "https://click.example.com/p/9", "reason": "unsubscribe"},
        {"url": "https://example.com/u/{{ user_id }}/offers", "reason": "template"},
        {"url": "{{{ pm:unsubscribe }}}", "reason": "unsubscribe"},
        {"url": "mailto:help@example.com", "reason": "not_http"},
        {"url": "tel:+441234", "reason": "not_http"},
        {"url": "#top", "reason": "not_http"},
        {"url": "/relative", "reason": "not_http"},
    ]
    assert html == (
        source.replace(
            '<a href="https://shop.example.com/sale?id=1&amp;c=2">', '<a href="https://t.example/c/0">'
        )
        .replace(" data-pm-no-track>", ">")
        .replace('<a href="https://example.com/blog">', '<a href="https://t.example/c/1">')
        .replace("</body>", f"{PIXEL}</body>")
    )


def test_clicks_off_tracks_nothing_and_says_so_after_the_more_specific_reasons() -> None:
    source = (
        '<body><a href="https://a.example/1">1</a><a clicktracking=off href="https://a.example/2">2</a>'
        '<a href="https://a.example/unsubscribe">u</a><a href="mailto:x@example.com">m</a>'
        '<a href="https://a.example/1">1 again</a></body>'
    )
    html, untracked = _instrument(source, track_clicks=False)
    assert html == source.replace(" clicktracking=off", "").replace("</body>", f"{PIXEL}</body>")
    assert untracked == [
        {"url": "https://a.example/1", "reason": "clicks_off"},
        {"url": "https://a.example/2", "reason": "attribute"},
        {"url": "https://a.example/unsubscribe", "reason": "unsubscribe"},
        {"url": "mailto:x@example.com", "reason": "not_http"},
    ]


def test_no_pixel_url_no_pixel() -> None:
    source = '<body><a data-pm-no-track href="https://a.example/1">1</a></body>'
    assert (
        rewrite_html(source, pixel_url=None, tracked={}) == '<body><a href="https://a.example/1">1</a></body>'
    )


def test_a_recipient_not_tracked_lists_every_link() -> None:
    choice = choose(
        [
            LinkSeen("https://a.example/1"),
            LinkSeen("https://a.example/unsubscribe"),
            LinkSeen("https://a.example/1"),
        ]
    )
    assert choice.tracked == ("https://a.example/1",)
    assert choice.untracked(instead="do_not_track") == [
        {"url": "https://a.example/1", "reason": "do_not_track"},
        {"url": "https://a.example/unsubscribe", "reason": "unsubscribe"},
    ]


def test_the_link_text_is_read_through_nested_tags_and_images() -> None:
    seen = scan_links(
        '<a href="https://a.example/1" title="t"><span>Un</span>sub<b>scribe</b></a>'
        '<a href="https://a.example/2">Manage<br>preferences</a>'
        '<a href="https://a.example/3"><img src="x.png" alt="Opt out"><img src="y.png" title="here"></a>'
        '<map><area href="https://a.example/4" alt="Abmelden"></map>'
        '<a href="https://a.example/5">open <a href="https://a.example/6">nested</a> after</a>'
        '<a href="https://a.example/7"><style>.unsubscribe{}</style>Shop</a>'
    )
    assert [(link.url, link.text) for link in seen] == [
        ("https://a.example/1", "Unsubscribe"),
        ("https://a.example/2", "Manage preferences"),
        ("https://a.example/3", "Opt out here"),
        ("https://a.example/4", "Abmelden"),
        ("https://a.example/5", "open"),
        ("https://a.example/6", "nested"),
        ("https://a.example/7", "Shop"),
    ]
    assert seen[0].attributes == (("title", "t"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<https://example.com/unsub?u=1&l=2>", ("https://example.com/unsub?u=1&l=2",)),
        (
            "<mailto:unsub@example.com?subject=unsubscribe>, <https://example.com/u/1>",
            ("mailto:unsub@example.com?subject=unsubscribe", "https://example.com/u/1"),
        ),
        (
            "<https://example.com/u/\r\n 1>,\r\n <mailto:u@example.com>",
            ("https://example.com/u/1", "mailto:u@example.com"),
        ),
        (
            ["https://example.com/u/1", " mailto:u@example.com "],
            ("https://example.com/u/1", "mailto:u@example.com"),
        ),
        (["https://example.com/u/1", "https://example.com/u/1"], ("https://example.com/u/1",)),
        (None, ()),
        ([], ()),
    ],
)
def test_list_unsubscribe_urls(value: str | list[str] | None, expected: tuple[str, ...]) -> None:
    assert list_unsubscribe_urls(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://example.com/unsub", "list_unsubscribe: expected a List-Unsubscribe header value"),
        ("<https://example.com/unsub> junk", "list_unsubscribe: expected a List-Unsubscribe header value"),
        ("<ftp://example.com/unsub>", "list_unsubscribe: 'ftp://example.com/unsub' is neither"),
        (["https:///nohost"], "list_unsubscribe: 'https:///nohost' is neither"),
        (["mailto:"], "list_unsubscribe: 'mailto:' is neither"),
        ([f"https://example.com/{i}" for i in range(11)], "list_unsubscribe: at most 10 URLs"),
    ],
)
def test_bad_list_unsubscribe(value: str | list[str], message: str) -> None:
    with pytest.raises(BadMessage) as refused:
        list_unsubscribe_urls(value)
    assert str(refused.value).startswith(message)


def test_list_unsubscribe_matches_scheme_and_host_in_any_case_only() -> None:
    links = [
        LinkSeen("HTTPS://EXAMPLE.com/u/AbC"),
        LinkSeen("https://example.com/u/abc"),
        LinkSeen("mailto:Leave@Example.com", web=False),
    ]
    choice = choose(links, list_unsubscribe=["https://example.com/u/AbC", "mailto:leave@example.com"])
    assert choice.untracked() == [
        {"url": "HTTPS://EXAMPLE.com/u/AbC", "reason": "list_unsubscribe"},
        {"url": "mailto:Leave@Example.com", "reason": "list_unsubscribe"},
    ]
    assert choice.tracked == ("https://example.com/u/abc",)


def test_links_to_pixelpipe_itself_are_never_tracked() -> None:
    links = [
        LinkSeen("https://T.example.com/track/p/AQUBprefs"),  # the preferences page, under a branded base
        LinkSeen("http://127.0.0.1:8000/c/AQIBclick"),  # an already tracked link, under the public URL
        LinkSeen("http://127.0.0.1:8000/o/AQEBpixel.gif"),
        LinkSeen("https://t.example.com/track/page"),  # another path of that host: a link like any other
        LinkSeen("https://t.example.com/p/AQUB"),  # not under the base's path
    ]
    choice = choose(links, own_bases=("https://t.example.com/track/", "http://127.0.0.1:8000"))
    assert choice.untracked() == [
        {"url": "https://T.example.com/track/p/AQUBprefs", "reason": "pixelpipe"},
        {"url": "http://127.0.0.1:8000/c/AQIBclick", "reason": "pixelpipe"},
        {"url": "http://127.0.0.1:8000/o/AQEBpixel.gif", "reason": "pixelpipe"},
    ]
    assert choice.tracked == ("https://t.example.com/track/page", "https://t.example.com/p/AQUB")
