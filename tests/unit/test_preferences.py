"""The preferences page's pure core (`api.preferences`): its URL and token, the form's nonce, the cross-site
check, and what the page and its evidence say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.preferences import (
    NONCE_TTL_S,
    PageState,
    confirmation_html,
    cross_site,
    evidence,
    form_nonce,
    nonce_shown_at,
    page_claim,
    page_html,
    preferences_url,
)
from schemas.consent import ConsentState
from schemas.tokens import Claim, Keyring, TokenKind, recipient_tag, sign

OLD = Keyring(((1, b"o" * 32),))
KEYS = Keyring(((2, b"k" * 32), (1, b"o" * 32)))
TAG = recipient_tag(b"k" * 32, "acme", "ann@example.com")
NOW = 1_800_000_000


def token_of(url: str) -> str:
    return url.rsplit("/p/", 1)[1]


def test_the_url_is_deterministic_and_names_the_message_and_the_recipients_tag_only() -> None:
    url = preferences_url(KEYS, "https://t.example.com/", "acme", "spring", "m-1", TAG)
    assert url == preferences_url(KEYS, "https://t.example.com", "acme", "spring", "m-1", TAG)
    assert url.startswith("https://t.example.com/p/")
    assert page_claim(token_of(url), KEYS) == Claim(
        TokenKind.PREFERENCES, "acme", "spring", "m-1", 0, recipient_tag=TAG
    )
    assert "ann" not in url
    with pytest.raises(ValueError, match="8 bytes"):
        preferences_url(KEYS, "https://t.example.com", "acme", "spring", "m-1", b"short")


def test_only_a_preferences_token_we_signed_opens_the_page() -> None:
    token = token_of(preferences_url(KEYS, "https://t", "acme", "c", "m", TAG))
    assert page_claim(token, OLD) is None  # signed under key 2, which OLD lacks
    assert page_claim(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), KEYS) is None
    for kind in (TokenKind.OPEN, TokenKind.CLICK, TokenKind.AGGREGATE_OPEN, TokenKind.TIMED_OPEN):
        other = sign(Claim(kind, "acme", "c", "m", 0, link_index=0, url="https://x", recipient_tag=TAG), KEYS)
        assert page_claim(other, KEYS) is None
    assert page_claim("", KEYS) is None
    assert page_claim("not a token!", KEYS) is None


def test_the_nonce_is_this_pages_and_expires_after_a_day() -> None:
    token = token_of(preferences_url(KEYS, "https://t", "acme", "c", "m", TAG))
    other = token_of(preferences_url(KEYS, "https://t", "acme", "c", "m2", TAG))
    nonce = form_nonce(KEYS, token, NOW)
    assert nonce.startswith("2.1800000000.")
    assert nonce_shown_at(KEYS, token, nonce, NOW + 5) == NOW
    assert nonce_shown_at(KEYS, token, nonce, NOW + NONCE_TTL_S) == NOW
    assert nonce_shown_at(KEYS, token, nonce, NOW + NONCE_TTL_S + 1) is None  # a day-old form
    assert nonce_shown_at(KEYS, token, nonce, NOW - 3600) is None  # shown an hour in the future
    assert nonce_shown_at(KEYS, other, nonce, NOW) is None  # another page's
    assert nonce_shown_at(OLD, token, nonce, NOW) is None  # a key no longer held
    key, shown, mac = nonce.split(".")
    forgeries = (
        f"{key}.{int(shown) + 1}.{mac}", f"1.{shown}.{mac}", f"{key}.{shown}.{mac[:-1]}", "", "a.b.c",
        f"{key}.{shown}.{mac}.x", f"{key}.{shown}.!!!",
    )  # fmt: skip
    for forged in forgeries:
        assert nonce_shown_at(KEYS, token, forged, NOW) is None, forged
    # A page shown before a rotation still works under the old key.
    assert nonce_shown_at(KEYS, token, form_nonce(OLD, token, NOW), NOW) == NOW


@pytest.mark.parametrize(
    ("origin", "fetch_site", "host", "refused"),
    [
        (None, None, "t.example.com", False),  # curl: the nonce decides
        ("null", None, "t.example.com", False),  # a browser under no-referrer
        ("https://t.example.com", "same-origin", "t.example.com", False),
        ("http://127.0.0.1:8000", None, "127.0.0.1:8000", False),
        ("https://T.Example.com:443", None, "t.example.com", False),
        ("https://evil.example", None, "t.example.com", True),
        ("https://t.example.com:8443", None, "t.example.com", True),
        ("http://t.example.com", None, "t.example.com:8000", True),
        (None, "cross-site", "t.example.com", True),
        ("https://t.example.com", "cross-site", "t.example.com", True),
        ("javascript:alert(1)", None, "t.example.com", True),
        ("https://t.example.com", None, None, True),
    ],
)
def test_a_post_from_another_site_is_refused(
    origin: str | None, fetch_site: str | None, host: str | None, refused: bool
) -> None:
    assert cross_site(origin, fetch_site, host) is refused


def test_the_page_has_no_script_escapes_the_account_and_the_evidence_names_no_one() -> None:
    state = PageState("<b>acme</b>", ConsentState.UNKNOWN, sender_stopped=False, measured=True)
    html = page_html(state, 'n"once')
    assert "<script" not in html
    assert "&lt;b&gt;acme&lt;/b&gt;" in html
    assert 'value="n&quot;once"' in html
    assert 'name="choice" value="refuse"' in html
    assert 'name="choice" value="grant"' in html
    at = datetime.fromtimestamp(NOW + 30, UTC)
    said = evidence(state, ConsentState.REFUSED, NOW, at)
    assert said == (
        'preferences page v1; shown 2027-01-15T08:00:00Z: "You have not made a choice yet. The sender '
        'measures when you open their emails and which links you click."; pressed "Do not track me" at '
        "2027-01-15T08:00:30Z"
    )
    stopped = PageState("acme", ConsentState.GRANTED, sender_stopped=True, measured=False)
    assert "already stopped" in confirmation_html(stopped, ConsentState.GRANTED)
    assert "already stopped" not in confirmation_html(stopped, ConsentState.REFUSED)
