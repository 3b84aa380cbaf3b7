"""Link controls (issue 19) over real HTTP on an embedded deployment (edge + processors + API, chDB): what
`POST /v1/instrument`, `POST /v1/messages` and the batch answer (exact HTML, exact `links` and
`untracked_links`), where the edge redirects a click with UTM parameters, and that a token whose UTM
parameters were changed never redirects."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.instrument import pixel_tag
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.tokens import Keyring, TokenKind, sign, verify
from tests.integration.helpers import BROWSER, embedded_env, hit, path_of
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
UTM = {"source": "newsletter", "medium": "email"}  # utm_campaign: the campaign id
TAIL = "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"

SALE = "https://shop.example.com/sale?color=red&size=m#offers"
NEW = "https://shop.example.com/new"
ACCOUNT = "https://shop.example.com/account"
RESET = "https://shop.example.com/reset?t=abc"
PARTNER = "https://partner.example.net/?utm_source=us"
GUIDE = "https://shop.example.com/guide?utm_content=hero"
UNSUBSCRIBE = "https://shop.example.com/u/8c1d?list=spring"
PREFERENCES = "https://news.example.com/email/preferences/8c1d"
LEAVE = "https://lists.example.com/leave?id=8c1d"
LIST_UNSUBSCRIBE = "<https://Lists.Example.com/leave?id=8c1d>,\r\n <mailto:leave@lists.example.com>"

# A newsletter as a sender's template renders it: {0}..{5} are where the edits go (tracked URLs, markers).
NEWSLETTER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Spring sale</title></head>
<body>
<p><a href="{sale}" class="btn">Shop the sale</a></p>
<p><a href='{new}'>New in</a> &middot; <a href="{sale}">Again</a></p>
<p><a{m1} href="https://shop.example.com/account">Your account</a>
<a href="https://shop.example.com/reset?t=abc"{m2}>Reset password</a>
<a{m3} href="https://partner.example.net/?utm_source=us">Partner</a>
<a href="{guide}">Guide</a></p>
<p>Questions? <a href="mailto:help@example.com">Write</a>, <a href="tel:+441234567">call</a>,
<a href="#top">top</a>.</p>
<p style="font-size:11px"><a href="https://shop.example.com/u/8c1d?list=spring">Unsubscribe</a> &middot;
<a href="https://news.example.com/email/preferences/8c1d">Manage preferences</a> &middot;
<a href="<%asm_group_unsubscribe_raw_url%>">Unsubscribe (SendGrid)</a> &middot;
<a href="*|UNSUB|*">Unsubscribe (Mailchimp)</a> &middot;
<a href="{{{{{{ pm:unsubscribe }}}}}}">Unsubscribe (Postmark)</a> &middot;
<a href="https://lists.example.com/leave?id=8c1d">Leave this list</a></p>
{pixel}</body></html>"""
SALE_HREF = "https://shop.example.com/sale?color=red&amp;size=m#offers"  # as the HTML writes SALE
MARKERS = (" clicktracking=off", " data-pm-no-track", ' data-pixelpipe-track="off"')


def newsletter(
    sale: str = SALE_HREF,
    new: str = NEW,
    guide: str = GUIDE,
    pixel: str = "",
    markers: tuple[str, ...] = ("",) * 3,
) -> str:
    """The newsletter with these hrefs, markers and pixel: the source (`SOURCE`), or an expected output."""
    m1, m2, m3 = markers
    return NEWSLETTER.format(sale=sale, new=new, guide=guide, m1=m1, m2=m2, m3=m3, pixel=pixel)


SOURCE = newsletter(markers=MARKERS)
UNTRACKED = [
    {"url": ACCOUNT, "reason": "attribute"},
    {"url": RESET, "reason": "attribute"},
    {"url": PARTNER, "reason": "attribute"},
    {"url": "mailto:help@example.com", "reason": "not_http"},
    {"url": "tel:+441234567", "reason": "not_http"},
    {"url": "#top", "reason": "not_http"},
    {"url": UNSUBSCRIBE, "reason": "unsubscribe"},
    {"url": PREFERENCES, "reason": "unsubscribe"},
    {"url": "<%asm_group_unsubscribe_raw_url%>", "reason": "unsubscribe"},
    {"url": "*|UNSUB|*", "reason": "unsubscribe"},
    {"url": "{{{ pm:unsubscribe }}}", "reason": "unsubscribe"},
    {"url": LEAVE, "reason": "list_unsubscribe"},
]


@dataclass(frozen=True, slots=True)
class Served:
    client: httpx.Client
    keyring: Keyring


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Served]:
    settings = settings_mod.load(embedded_env(tmp_path_factory.mktemp("data"), chdb_path))
    components = build_components(settings, frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Served(client, settings.keyring)
        assert components.store is not None
        components.store.command(f"DROP DATABASE IF EXISTS {components.store.database}")


def post(served: Served, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = served.client.post(path, json=body, headers=ACME)
    assert r.status_code == 201, r.text
    return dict(r.json())


def instrument(served: Served, message_id: str, **fields: Any) -> dict[str, Any]:
    body = {"campaign_id": "spring-sale", "recipient": "ann@example.com", "message_id": message_id}
    return post(served, "/v1/instrument", {**body, "html": SOURCE, **fields})


def destination(served: Served, tracked_url: str) -> str:
    """Where the edge redirects a person's click on ``tracked_url``."""
    r = hit(served.client, tracked_url)
    assert r.status_code == 302, r.text
    return str(r.headers["location"])


def test_instrument_tracks_only_what_it_may_and_says_why_not_the_rest(served: Served) -> None:
    answer = instrument(served, "m-news", utm=UTM, list_unsubscribe=LIST_UNSUBSCRIBE)
    links = answer["links"]
    assert answer["tracked"] is True
    assert answer["untracked_links"] == UNTRACKED
    assert set(links) == {SALE, NEW, ACCOUNT, RESET, PARTNER, GUIDE, UNSUBSCRIBE, PREFERENCES, LEAVE}
    assert {url: links[url] for url in (ACCOUNT, RESET, PARTNER, UNSUBSCRIBE, PREFERENCES, LEAVE)} == {
        url: url for url in (ACCOUNT, RESET, PARTNER, UNSUBSCRIBE, PREFERENCES, LEAVE)
    }
    assert all(path_of(links[url]).startswith("/c/") for url in (SALE, NEW, GUIDE))
    assert answer["html"] == newsletter(links[SALE], links[NEW], links[GUIDE], pixel_tag(answer["pixel_url"]))

    # Each tracked link lands on its URL with the UTM parameters, the query and the fragment kept in place,
    # a parameter the link already had (utm_content) kept and not repeated.
    assert destination(served, links[SALE]) == f"https://shop.example.com/sale?color=red&size=m&{TAIL}#offers"
    assert destination(served, links[NEW]) == f"https://shop.example.com/new?{TAIL}"
    assert destination(served, links[GUIDE]) == f"https://shop.example.com/guide?utm_content=hero&{TAIL}"

    # Instrumenting the same message again gives the same answer.
    assert instrument(served, "m-news", utm=UTM, list_unsubscribe=LIST_UNSUBSCRIBE) == answer


def test_a_token_whose_utm_parameters_were_changed_never_redirects(served: Served) -> None:
    answer = instrument(served, "m-tamper", utm={**UTM, "campaign": "Été 2026", "term": "a&b"})
    token = path_of(answer["links"][NEW]).removeprefix("/c/")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body, tag = raw[:-16], raw[-16:]
    signed = (
        f"https://shop.example.com/new?{TAIL.replace('spring-sale', '%C3%89t%C3%A9%202026')}&utm_term=a%26b"
    )
    assert verify(token, served.keyring, TokenKind.CLICK).url == signed
    assert destination(served, answer["links"][NEW]) == signed

    def encode(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    same_length = body.replace(b"utm_medium=email", b"utm_medium=print")
    assert same_length != body
    dropped_term = body.replace(b"&utm_term=a%26b", b"")
    dropped_term = dropped_term.replace(
        bytes([len(signed)]) + b"https://", bytes([len(signed) - 15]) + b"https://"
    )
    claim = verify(token, served.keyring, TokenKind.CLICK)
    other_key = Keyring(((served.keyring.signing_key[0], b"another-secret-0123456789"),))
    forgeries = [
        encode(same_length + tag),  # a UTM value changed in place, the tag kept
        encode(dropped_term + tag),  # a parameter removed, the length fixed, the tag kept
        sign(
            replace(claim, url=claim.url.replace("newsletter", "evil")), other_key
        ),  # signed, by another key
    ]
    for forged in forgeries:
        r = served.client.get(f"/c/{forged}", headers={"User-Agent": BROWSER})
        assert r.status_code == 400, forged
        assert "location" not in r.headers


def test_track_clicks_and_track_opens_off(served: Served) -> None:
    off = instrument(served, "m-off", utm=UTM, track_clicks=False, track_opens=False)
    assert off["pixel_url"] is None
    assert off["links"] == {url: url for url in off["links"]}
    assert off["html"] == newsletter()  # only the markers removed
    assert (
        off["untracked_links"]
        == [
            {"url": SALE, "reason": "clicks_off"},
            {"url": NEW, "reason": "clicks_off"},
            *UNTRACKED[:3],
            {"url": GUIDE, "reason": "clicks_off"},
            *UNTRACKED[3:9],  # without list_unsubscribe, the List-Unsubscribe URL is only a link
            *UNTRACKED[9:11],
            {"url": LEAVE, "reason": "clicks_off"},
        ]
    )

    opens_off = instrument(served, "m-opens-off", track_opens=False, list_unsubscribe=LIST_UNSUBSCRIBE)
    assert opens_off["pixel_url"] is None
    links = opens_off["links"]
    assert opens_off["html"] == newsletter(links[SALE], links[NEW], links[GUIDE])
    assert destination(served, links[SALE]) == SALE  # no UTM asked for: the link as it was
    assert opens_off["untracked_links"] == UNTRACKED

    pixel_only = instrument(served, "m-clicks-off", track_clicks=False)
    assert pixel_only["pixel_url"].endswith(".gif")
    assert pixel_only["html"].endswith(f"{pixel_tag(pixel_only['pixel_url'])}</body></html>")


def test_registration_and_the_batch_apply_the_same_controls(served: Served) -> None:
    body = {
        "campaign_id": "spring-sale",
        "recipient": "bob@example.com",
        "message_id": "m-reg",
        "links": [
            SALE,
            LEAVE,
            "https://shop.example.com/account/opt-out?u=1",
            "https://x.example/{{id}}",
            SALE,
        ],
        "list_unsubscribe": ["mailto:leave@lists.example.com", LEAVE],
        "utm": {"source": "newsletter", "medium": "email", "campaign": "spring", "content": "footer"},
    }
    one = post(served, "/v1/messages", body)
    assert (one["tracked"], one["tracking"], one["tracking_reason"]) == (True, "individual", None)
    assert one["untracked_links"] == [
        {"url": LEAVE, "reason": "list_unsubscribe"},
        {"url": "https://shop.example.com/account/opt-out?u=1", "reason": "unsubscribe"},
        {"url": "https://x.example/{{id}}", "reason": "template"},
    ]
    assert one["links"][LEAVE] == LEAVE
    assert destination(served, one["links"][SALE]) == (
        "https://shop.example.com/sale?color=red&size=m"
        "&utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_content=footer#offers"
    )
    batch = post(
        served,
        "/v1/messages/batch",
        {"messages": [body, {**body, "message_id": "m-reg-2", "track_clicks": False}]},
    )
    first, second = batch["messages"]
    assert first == one
    assert second["links"] == {url: url for url in one["links"]}
    assert second["untracked_links"] == [{"url": SALE, "reason": "clicks_off"}, *one["untracked_links"]]

    # Every link is registered with the send, tracked or not.
    r = served.client.get("/v1/messages/m-reg", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json()["links"] == [
        SALE,
        LEAVE,
        "https://shop.example.com/account/opt-out?u=1",
        "https://x.example/{{id}}",
    ]


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {"list_unsubscribe": "https://lists.example.com/leave"},
            "list_unsubscribe: expected a List-Unsubscribe header value",
        ),
        (
            {"list_unsubscribe": "<ftp://lists.example.com/leave>"},
            "list_unsubscribe: 'ftp://lists.example.com/leave'",
        ),
        ({"list_unsubscribe": ["ftp://lists.example.com/leave"]}, "list_unsubscribe"),
        ({"utm": {"source": ""}}, "utm.source"),
        ({"utm": {"sorce": "x"}}, "Object contains unknown field `sorce`"),
        ({"utm": {"medium": "a\nb"}}, "utm.medium"),
        ({"track_clicks": "no"}, "track_clicks"),
    ],
)
def test_bad_link_controls_are_a_400_naming_the_field(
    served: Served, fields: dict[str, Any], detail: str
) -> None:
    body = {"campaign_id": "bad", "recipient": "c@example.com", "links": [NEW], **fields}
    for path in ("/v1/messages", "/v1/instrument"):
        r = served.client.post(path, json=body, headers=ACME)
        assert r.status_code == 400, r.text
        assert detail in r.json()["detail"]
    assert served.client.get("/v1/campaigns/bad/stats", headers=ACME).status_code == 404  # nothing stored


def test_utm_that_no_longer_fits_a_click_token_is_a_400(served: Served) -> None:
    long_link = "https://shop.example.com/" + "a" * 2000
    utm = dict.fromkeys(("source", "medium", "campaign", "term", "content"), "é" * 256)
    body = {"campaign_id": "long", "recipient": "c@example.com", "links": [long_link], "utm": utm}
    r = served.client.post("/v1/messages", json=body, headers=ACME)
    assert r.status_code == 400, r.text
    assert "too long for a click token" in r.json()["detail"]


def test_a_recipient_on_do_not_track_gets_the_html_back_without_the_markers(served: Served) -> None:
    r = served.client.put("/v1/recipients/dora@example.com/do-not-track", headers=ACME)
    assert r.status_code == 200, r.text
    answer = instrument(
        served, "m-dnt", recipient="dora@example.com", utm=UTM, list_unsubscribe=LIST_UNSUBSCRIBE
    )
    assert (answer["tracked"], answer["tracking_reason"], answer["pixel_url"]) == (
        False,
        "do_not_track",
        None,
    )
    assert answer["links"] == {url: url for url in answer["links"]}
    assert answer["html"] == newsletter()  # as given, but for the markers
    assert answer["untracked_links"] == [
        {"url": SALE, "reason": "do_not_track"},
        {"url": NEW, "reason": "do_not_track"},
        *UNTRACKED[:3],
        {"url": GUIDE, "reason": "do_not_track"},
        *UNTRACKED[3:],
    ]


def test_the_tracking_preferences_link_in_the_html_is_never_tracked(served: Served) -> None:
    body = {"campaign_id": "spring-sale", "recipient": "eve@example.com", "message_id": "m-prefs"}
    preferences = post(served, "/v1/messages", body)["tracking_preferences_url"]
    html = f'<p><a href="{NEW}">New</a> <a href="{preferences}">Tracking preferences</a></p>'
    answer = post(served, "/v1/instrument", {**body, "html": html})
    assert answer["tracking_preferences_url"] == preferences
    assert answer["untracked_links"] == [{"url": preferences, "reason": "pixelpipe"}]
    assert answer["links"][preferences] == preferences
    assert answer["html"] == (
        f'<p><a href="{answer["links"][NEW]}">New</a> <a href="{preferences}">Tracking preferences</a></p>'
        + pixel_tag(answer["pixel_url"])
    )
