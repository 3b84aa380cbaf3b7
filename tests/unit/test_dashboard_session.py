"""The dashboard session's pure cores: the signed cookie (issue, read, tamper, expiry, rotation, a removed
key), the CSRF token, the signed-out set, what a cookie request must show (origin, CSRF), the sign-in
throttle, and the settings that size them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from api.cookie_auth import cross_site, csrf_refusal
from api.session import Session, SessionKeys, SessionRefused, Sessions, SignedOut
from api.throttle import SignInThrottle
from pixelpipe.settings import load
from schemas.tokens import Keyring
from tests.settings_env import GOOD, refusal

NOW = 1_800_000_000
KEYRING = Keyring(((1, b"k1-0123456789abcdef"),))
KEYS = {"acme-key-123": "acme", "globex-key-456": "globex"}


def issue(keys: SessionKeys, account: str = "acme", key: str = "acme-key-123", lifetime_s: int = 60) -> str:
    return keys.issue(account, key, now=NOW, lifetime_s=lifetime_s, session_id="sid-AAAAAAAAAAAAAAAAAAAA")


def test_a_cookie_reads_back_as_its_session() -> None:
    keys = SessionKeys(KEYRING, KEYS)
    cookie = issue(keys)
    session = keys.read(cookie, now=NOW + 59)
    assert session == Session(
        "acme", NOW, NOW + 60, "sid-AAAAAAAAAAAAAAAAAAAA", keys.fingerprint("acme-key-123"), 1
    )
    assert cookie.startswith("v1.1.")
    assert "acme-key-123" not in cookie
    assert "acme-key-123" not in base64.urlsafe_b64decode(cookie.split(".")[2] + "==").decode()
    assert keys.fingerprint("acme-key-123") != keys.fingerprint("globex-key-456")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"), "not one this server issued"),
        (lambda c: c.replace("v1.", "v2.", 1), "not one this server issued"),
        (lambda c: c.rpartition(".")[0], "not one this server issued"),
        (lambda c: "", "not one this server issued"),
        (lambda c: "v1.1..", "not one this server issued"),
        (lambda c: "v1.9999." + c.split(".", 2)[2], "not one this server issued"),
        (lambda c: "v1.7." + c.split(".", 2)[2], "a key PIXELPIPE_SECRET no longer holds"),
    ],
)
def test_a_damaged_cookie_is_refused(damage: object, reason: str) -> None:
    keys = SessionKeys(KEYRING, KEYS)
    with pytest.raises(SessionRefused, match=reason):
        keys.read(damage(issue(keys)), now=NOW)  # type: ignore[operator]


def test_a_payload_swapped_between_cookies_fails_its_tag() -> None:
    keys = SessionKeys(KEYRING, KEYS)
    acme, globex = issue(keys), issue(keys, "globex", "globex-key-456")
    forged = ".".join([*acme.split(".")[:2], globex.split(".")[2], acme.split(".")[3]])
    with pytest.raises(SessionRefused, match="not one this server issued"):
        keys.read(forged, now=NOW)


def test_a_session_expires_and_one_from_the_future_is_refused() -> None:
    keys = SessionKeys(KEYRING, KEYS)
    cookie = issue(keys, lifetime_s=60)
    with pytest.raises(SessionRefused, match="expired"):
        keys.read(cookie, now=NOW + 60)
    with pytest.raises(SessionRefused, match="not one this server issued"):
        keys.read(cookie, now=NOW - 61)  # issued more than a minute ahead of this clock
    assert keys.read(cookie, now=NOW - 60).account == "acme"


def test_a_removed_or_reassigned_key_ends_its_sessions() -> None:
    cookie = issue(SessionKeys(KEYRING, KEYS))
    removed = SessionKeys(KEYRING, {"globex-key-456": "globex"})
    with pytest.raises(SessionRefused, match="no longer configured"):
        removed.read(cookie, now=NOW)
    moved = SessionKeys(KEYRING, {"acme-key-123": "globex"})  # the same key, now another account's
    with pytest.raises(SessionRefused, match="no longer configured"):
        moved.read(cookie, now=NOW)
    assert SessionKeys(KEYRING, {**KEYS, "new-key-789": "acme"}).read(cookie, now=NOW).account == "acme"


def test_a_rotated_secret_keeps_the_old_keys_sessions_and_signs_with_the_new() -> None:
    old = issue(SessionKeys(KEYRING, KEYS))
    rotated = SessionKeys(Keyring(((2, b"k2-fedcba9876543210"), *KEYRING.keys)), KEYS)
    assert rotated.read(old, now=NOW).key_id == 1
    assert issue(rotated).startswith("v1.2.")
    dropped = SessionKeys(Keyring(((2, b"k2-fedcba9876543210"),)), KEYS)
    with pytest.raises(SessionRefused, match="no longer holds"):
        dropped.read(old, now=NOW)


def test_the_csrf_token_is_the_sessions_own() -> None:
    keys = SessionKeys(KEYRING, KEYS)
    one = keys.read(issue(keys), now=NOW)
    other = keys.read(keys.issue("acme", "acme-key-123", now=NOW, lifetime_s=60, session_id="sid-B"), now=NOW)
    assert keys.csrf_token(one) == keys.csrf_token(one)
    assert keys.csrf_token(one) != keys.csrf_token(other)
    assert keys.csrf_matches(one, keys.csrf_token(one))
    assert not keys.csrf_matches(one, keys.csrf_token(other))
    assert not keys.csrf_matches(one, "")


def test_sessions_sign_in_by_key_and_sign_out_by_id() -> None:
    clock = [float(NOW)]
    sessions = Sessions(SessionKeys(KEYRING, KEYS), KEYS, 60, secure=False, clock=lambda: clock[0])
    assert sessions.sign_in("nope") is None
    signed = sessions.sign_in("globex-key-456")
    assert signed is not None
    session, cookie = signed
    assert session.account == "globex"
    assert sessions.session_of(cookie) == session
    sessions.sign_out(session)
    with pytest.raises(SessionRefused, match="signed out"):
        sessions.session_of(cookie)
    again = sessions.sign_in("globex-key-456")
    assert again is not None
    assert again[0].session_id != session.session_id
    assert sessions.session_of(again[1]).account == "globex"
    for secret in ("globex-key-456", "k1-0123456789abcdef", session.session_id, cookie):
        assert secret not in repr(sessions)


def test_the_cookie_header_names_every_attribute() -> None:
    plain = Sessions(SessionKeys(KEYRING, KEYS), KEYS, 60, secure=False)
    assert (
        plain.cookie_header("v", 60) == "pixelpipe_session=v; Max-Age=60; Path=/; HttpOnly; SameSite=Strict"
    )
    secure = Sessions.of(KEYRING, KEYS, lifetime_s=60, public_url="https://track.example.com")
    assert secure.cookie_header("", 0).endswith("; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure")


def test_the_signed_out_set_is_bounded_and_forgets_expired_sessions_first() -> None:
    signed_out = SignedOut(limit=3)

    def session(sid: str, expires_at: int) -> Session:
        return Session("acme", NOW, expires_at, sid, "fp", 1)

    signed_out.add(session("a", NOW + 10), now=NOW)
    signed_out.add(session("b", NOW + 100), now=NOW)
    signed_out.add(session("c", NOW + 100), now=NOW)
    signed_out.add(session("d", NOW + 100), now=NOW + 20)  # "a" has expired: it goes, nothing else
    assert [s in signed_out for s in "abcd"] == [False, True, True, True]
    signed_out.add(session("e", NOW + 100), now=NOW + 20)  # none expired: the oldest sign-out goes
    assert [s in signed_out for s in "bcde"] == [False, True, True, True]
    assert len(signed_out) == 3


@pytest.mark.parametrize(
    ("origin", "fetch_site", "host", "refused"),
    [
        (None, None, "127.0.0.1:8000", False),  # a same-origin GET, curl
        ("http://127.0.0.1:8000", None, "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", "same-origin", "127.0.0.1:8000", False),
        ("http://localhost:8000", None, "localhost:8000", False),
        ("https://track.example.com", None, "pixelpipe:8000", False),  # the public URL, behind a proxy
        ("https://track.example.com:443", None, "pixelpipe:8000", False),
        ("https://TRACK.example.com", None, "pixelpipe:8000", False),
        ("http://track.example.com", None, "pixelpipe:8000", True),  # the public URL is https
        ("https://evil.example", None, "127.0.0.1:8000", True),
        ("http://127.0.0.1:8001", None, "127.0.0.1:8000", True),
        ("http://127.0.0.1.evil.example:8000", None, "127.0.0.1:8000", True),
        ("null", None, "127.0.0.1:8000", True),
        ("http://[::1", None, "127.0.0.1:8000", True),  # garbled
        ("http://127.0.0.1:99999", None, "127.0.0.1:8000", True),
        ("file://", None, "127.0.0.1:8000", True),
        (None, "cross-site", "127.0.0.1:8000", True),
        (None, "Cross-Site", "127.0.0.1:8000", True),
        ("http://127.0.0.1:8000", "cross-site", "127.0.0.1:8000", True),
    ],
)
def test_what_counts_as_another_site(
    origin: str | None, fetch_site: str | None, host: str, refused: bool
) -> None:
    assert (cross_site(origin, fetch_site, host, "https://track.example.com") is not None) is refused


def test_a_state_changing_cookie_request_needs_its_token() -> None:
    assert csrf_refusal("GET", None, matches=False) is None
    assert csrf_refusal("HEAD", None, matches=False) is None
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert csrf_refusal(method, None, matches=False) == (
            f"missing X-CSRF-Token: a {method} signed in by the session cookie must carry the csrf_token of "
            "POST /session or GET /session"
        )
        assert (
            csrf_refusal(method, "x", matches=False)
            == "X-CSRF-Token does not match this session's csrf_token"
        )
        assert csrf_refusal(method, "x", matches=True) is None


def test_the_throttle_allows_ten_failures_then_one_every_six_seconds() -> None:
    throttle = SignInThrottle()
    for _ in range(10):
        assert throttle.wait_s("203.0.113.7", NOW) == 0
        throttle.failed("203.0.113.7", NOW)
    assert throttle.wait_s("203.0.113.7", NOW) == 6
    assert throttle.wait_s("203.0.113.7", NOW + 5.5) == 1
    assert throttle.wait_s("203.0.113.7", NOW + 6) == 0
    throttle.failed("203.0.113.7", NOW + 6)
    assert throttle.wait_s("203.0.113.7", NOW + 6) == 6
    assert throttle.wait_s("198.51.100.9", NOW) == 0  # another address
    assert throttle.wait_s("203.0.113.7", NOW + 6 + 60) == 0  # refilled


def test_the_throttle_keeps_a_bounded_number_of_addresses() -> None:
    throttle = SignInThrottle(max_addresses=3)
    for i in range(3):
        throttle.failed(f"10.0.0.{i}", NOW)
    throttle.failed("10.0.0.0", NOW + 100)  # refilled long ago, then failed again: kept, now the newest
    throttle.failed("10.0.0.9", NOW + 100)  # four: the full buckets (10.0.0.1 and .2) are forgotten
    assert set(throttle._buckets) == {"10.0.0.0", "10.0.0.9"}
    assert "10.0.0" not in repr(throttle)


def test_the_session_and_dashboard_settings(tmp_path: Path) -> None:
    base = {**GOOD, "PIXELPIPE_DATA_DIR": str(tmp_path / "data")}
    assert load(base).session_seconds == 12 * 3600
    assert load({**base, "PIXELPIPE_SESSION_HOURS": "0.5"}).session_seconds == 1800
    assert load({**base, "PIXELPIPE_SESSION_HOURS": "720"}).session_seconds == 720 * 3600
    assert load({**base, "PIXELPIPE_SESSION_HOURS": "0.0003"}).session_seconds == 1
    for bad in ("0", "-1", "721", "nan", "inf", "twelve", "0.0001"):
        refusal(tmp_path / "data", "PIXELPIPE_SESSION_HOURS", bad)
    assert load(base).dashboard_dir == Path(__file__).resolve().parents[2] / "web" / "dist"
    assert load({**base, "PIXELPIPE_DASHBOARD_DIR": str(tmp_path)}).dashboard_dir == tmp_path
    nowhere = tmp_path / "nowhere"
    error = refusal(tmp_path / "data", "PIXELPIPE_DASHBOARD_DIR", str(nowhere))
    assert str(error) == f"PIXELPIPE_DASHBOARD_DIR: {nowhere} is not a directory"
