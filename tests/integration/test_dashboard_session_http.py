"""The dashboard's sign-in over real HTTP against a whole embedded deployment (real chDB): an API key becomes
a signed, expiring session cookie with exactly the attributes the contract names; the cookie authorizes the
API (the live feed too, as an `EventSource` opens it) for its own account only; a state-changing request it
authorizes needs the session's CSRF token and this site's origin; a bearer request is unchanged; signing out,
expiry and a key removed from ``PIXELPIPE_API_KEYS`` end a session; the key is never in a log or the cookie;
sign-in attempts are throttled per client address."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.integration.helpers import BROWSER, RESIDENTIAL, path_of
from tests.serving import serving

ALL_ROLES = frozenset({"edge", "process", "api"})
ACME_KEY = "acme-key-123"
GLOBEX_KEY = "globex-key-456"
COOKIE_RE = re.compile(r"^pixelpipe_session=(v1\.1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}); (.*)$")
CLEARED = "pixelpipe_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"


@contextlib.contextmanager
def deployment(env: dict[str, str], **more: str) -> Iterator[str]:
    """A whole embedded pixelpipe (edge, processor, API) on a real socket; yields its base URL."""
    components = build_components(settings_mod.load({**env, **more}), ALL_ROLES)
    app, _ = build_app(components)
    with serving(app) as base:
        yield base


@pytest.fixture
def base(env: dict[str, str]) -> Iterator[str]:
    with deployment(env) as url:
        yield url


def sign_in(client: httpx.Client, key: str = ACME_KEY) -> tuple[dict[str, Any], str]:
    """Sign in; the answer's body and the session cookie's value (the client keeps the cookie)."""
    r = client.post("/session", json={"api_key": key})
    assert r.status_code == 200, r.text
    match = COOKIE_RE.match(r.headers["set-cookie"])
    assert match is not None, r.headers["set-cookie"]
    return dict(r.json()), match.group(1)


def register(client: httpx.Client, campaign: str, message: str, **headers: str) -> httpx.Response:
    body = {"campaign_id": campaign, "recipient": f"{message}@example.com", "message_id": message}
    return client.post("/v1/messages", json=body, headers=headers)


def test_sign_in_answers_the_account_and_sets_the_cookie_exactly(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        wrong = client.post("/session", json={"api_key": "not-a-key"})
        assert wrong.status_code == 401
        assert wrong.json() == {"status_code": 401, "detail": "unknown API key"}
        assert "set-cookie" not in wrong.headers
        assert client.get("/session").status_code == 401  # no cookie yet
        assert client.post("/session", json={}).status_code == 400
        assert client.post("/session", json={"api_key": ACME_KEY, "remember": True}).status_code == 400

        before = int(time.time())
        r = client.post("/session", json={"api_key": ACME_KEY})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert set(body) == {"account", "csrf_token", "expires_at"}
        assert body["account"] == "acme"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body["csrf_token"])
        expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert before + 12 * 3600 <= expires <= int(time.time()) + 12 * 3600
        match = COOKIE_RE.match(r.headers["set-cookie"])
        assert match is not None
        assert match.group(2) == "Max-Age=43200; Path=/; HttpOnly; SameSite=Strict"  # no Secure over http
        cookie = match.group(1)
        payload = base64.urlsafe_b64decode(cookie.split(".")[2] + "==").decode()
        assert ACME_KEY not in cookie
        assert ACME_KEY not in payload
        assert orjson.loads(payload)[0] == "acme"

        assert client.get("/session").json() == body  # the same session, read back
        other, _ = sign_in(client, GLOBEX_KEY)  # a new sign-in replaces the cookie
        assert other["account"] == "globex"
        assert other["csrf_token"] != body["csrf_token"]


def test_the_cookie_is_secure_when_the_public_url_is_https(env: dict[str, str]) -> None:
    with (
        deployment(
            env, PIXELPIPE_PUBLIC_URL="https://track.example.com", PIXELPIPE_SESSION_HOURS="0.5"
        ) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        r = client.post("/session", json={"api_key": ACME_KEY})
        assert r.status_code == 200
        match = COOKIE_RE.match(r.headers["set-cookie"])
        assert match is not None
        assert match.group(2) == "Max-Age=1800; Path=/; HttpOnly; SameSite=Strict; Secure"
        # The public URL's origin is this site's too (TLS ends at a proxy in front).
        cookie = {"Cookie": f"pixelpipe_session={match.group(1)}"}
        assert client.get(
            "/v1/campaigns", headers={**cookie, "Origin": "https://track.example.com"}
        ).is_success
        assert (
            client.get("/v1/campaigns", headers={**cookie, "Origin": "https://evil.example"}).status_code
            == 403
        )


def test_the_cookie_reads_its_own_account_only(base: str) -> None:
    with (
        httpx.Client(base_url=base, timeout=10) as bearer,
        httpx.Client(base_url=base, timeout=10) as browser,
    ):
        acme = {"Authorization": f"Bearer {ACME_KEY}"}
        globex = {"Authorization": f"Bearer {GLOBEX_KEY}"}
        assert register(bearer, "spring", "m-acme", **acme).status_code == 201
        assert register(bearer, "secret-plans", "m-globex", **globex).status_code == 201
        assert browser.get("/v1/campaigns").status_code == 401  # not signed in
        sign_in(browser)

        campaigns = browser.get("/v1/campaigns")
        assert campaigns.status_code == 200
        assert [c["campaign_id"] for c in campaigns.json()["items"]] == ["spring"]
        assert browser.get("/v1/campaigns/spring/stats").json()["sent"] == 1
        assert browser.get("/v1/campaigns/secret-plans/stats").status_code == 404  # globex's
        assert browser.get("/v1/messages/m-globex").status_code == 404
        assert browser.get("/v1/messages/m-acme").status_code == 200

        # A bearer header wins over the cookie, whichever account it names, and a wrong one is not rescued.
        as_globex = browser.get("/v1/campaigns", headers=globex).json()["items"]
        assert [c["campaign_id"] for c in as_globex] == ["secret-plans"]
        assert browser.get("/v1/campaigns", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_changes_by_cookie_need_the_csrf_token_and_this_site(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        session, _ = sign_in(client)
        token = {"X-CSRF-Token": session["csrf_token"]}

        refused = register(client, "c", "m1")
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("missing X-CSRF-Token")
        assert register(client, "c", "m1", **{"X-CSRF-Token": "A" * 43}).status_code == 403
        assert register(client, "c", "m1", **token).status_code == 201
        assert register(client, "c", "m2", **token, Origin=base).status_code == 201  # this site

        cross = register(client, "c", "m3", **token, Origin="https://evil.example")
        assert cross.status_code == 403
        assert "another origin" in cross.json()["detail"]
        assert register(client, "c", "m3", **token, Origin="null").status_code == 403
        assert register(client, "c", "m3", **token, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.get("/v1/campaigns", headers={"Origin": "https://evil.example"}).status_code == 403

        path = "/v1/recipients/ann%40example.com/do-not-track"
        assert client.put(path).status_code == 403
        put = client.put(path, headers=token)
        assert put.status_code == 200
        assert put.json() == {"recipient": "ann@example.com", "tracking": False}
        assert client.delete(path).status_code == 403
        assert client.delete(path, headers=token).json() == {"recipient": "ann@example.com", "tracking": True}

        # Bearer requests are as they were: no token, any origin.
        bearer = {"Authorization": f"Bearer {ACME_KEY}", "Origin": "https://evil.example"}
        assert register(client, "c", "m4", **bearer).status_code == 201
        assert client.put(path, headers=bearer).status_code == 200

        sent = client.get("/v1/campaigns/c/stats").json()["sent"]
        assert sent == 3  # m1, m2, m4


def test_signing_out_ends_the_session(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        session, cookie = sign_in(client)
        assert client.delete("/session").status_code == 403  # the CSRF token is needed
        assert (
            client.delete(
                "/session", headers={"X-CSRF-Token": session["csrf_token"], "Origin": "https://evil.example"}
            ).status_code
            == 403
        )
        out = client.delete("/session", headers={"X-CSRF-Token": session["csrf_token"]})
        assert out.status_code == 204
        assert out.headers["set-cookie"] == CLEARED
        assert "pixelpipe_session" not in client.cookies
        assert client.get("/v1/campaigns").status_code == 401

    with httpx.Client(base_url=base, timeout=10, headers={"Cookie": f"pixelpipe_session={cookie}"}) as replay:
        again = replay.get("/v1/campaigns")  # the old cookie, kept by someone: refused
        assert again.status_code == 401
        assert again.json()["detail"] == "the session was signed out; sign in again"
        read = replay.get("/session")
        assert read.status_code == 401
        assert read.headers["set-cookie"] == CLEARED


def test_a_session_expires(env: dict[str, str]) -> None:
    with (
        deployment(env, PIXELPIPE_SESSION_HOURS="0.0005") as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        r = c.post("/session", json={"api_key": ACME_KEY})
        match = COOKIE_RE.match(r.headers["set-cookie"])
        assert match is not None
        assert match.group(2).startswith("Max-Age=2;")
        assert c.get("/v1/campaigns").status_code == 200
        time.sleep(3.1)
        # httpx keeps an expired cookie off its requests, as a browser does: send it as a stale copy would.
        stale = c.get("/v1/campaigns", headers={"Cookie": f"pixelpipe_session={match.group(1)}"})
        assert stale.status_code == 401
        assert stale.json()["detail"] == "the session has expired; sign in again"


def test_a_key_removed_from_the_settings_ends_its_sessions_at_restart(env: dict[str, str]) -> None:
    with deployment(env) as url, httpx.Client(base_url=url, timeout=10) as client:
        _, acme = sign_in(client)
        _, globex = sign_in(client, GLOBEX_KEY)
    # The same secret and keys: the sessions outlive a restart (nothing was kept but the cookies).
    with deployment(env) as url:
        for cookie in (acme, globex):
            r = httpx.get(
                f"{url}/v1/campaigns", headers={"Cookie": f"pixelpipe_session={cookie}"}, timeout=10
            )
            assert r.status_code == 200
    # acme's key rotated to a new one: its sessions end; globex's key is unchanged.
    with deployment(env, PIXELPIPE_API_KEYS=f"acme=acme-key-789,globex={GLOBEX_KEY}") as url:
        old = httpx.get(f"{url}/v1/campaigns", headers={"Cookie": f"pixelpipe_session={acme}"}, timeout=10)
        assert old.status_code == 401
        assert old.json()["detail"] == "the API key this session was signed in with is no longer configured"
        kept = httpx.get(f"{url}/v1/campaigns", headers={"Cookie": f"pixelpipe_session={globex}"}, timeout=10)
        assert kept.status_code == 200
    # Another PIXELPIPE_SECRET: no session signed under the old one holds.
    with deployment(env, PIXELPIPE_SECRET="another-secret-0123456789abcdef") as url:
        r = httpx.get(f"{url}/v1/campaigns", headers={"Cookie": f"pixelpipe_session={globex}"}, timeout=10)
        assert r.status_code == 401


def test_the_key_never_reaches_a_log(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/session", json={"api_key": "guessed-key-000"}).status_code == 401
        assert client.post("/session", json={"api_key": ACME_KEY * 100}).status_code == 400  # too long
        assert client.post("/session", content=b'{"api_key": "acme-key-123"').status_code == 400  # cut short
        session, cookie = sign_in(client)
        assert register(client, "c", "m1", **{"X-CSRF-Token": session["csrf_token"]}).status_code == 201
        assert client.get("/v1/campaigns").status_code == 200
    # The server's records (the test's own HTTP client logs the headers it receives, the cookie among them).
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in server)
    for secret in (ACME_KEY, "guessed-key-000", cookie, session["csrf_token"]):
        assert secret not in logged


def test_sign_in_attempts_are_throttled_per_client_address(base: str) -> None:
    # The test's peer (127.0.0.1) is a trusted proxy here: X-Forwarded-For names the client.
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    with httpx.Client(base_url=base, timeout=10) as client:
        for i in range(10):
            r = client.post("/session", json={"api_key": f"guess-{i}"}, headers=guesser)
            assert r.status_code == 401
        throttled = client.post("/session", json={"api_key": "guess-10"}, headers=guesser)
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "6"
        # While throttled, the right key is refused too: the answer must not tell a right guess.
        assert client.post("/session", json={"api_key": ACME_KEY}, headers=guesser).status_code == 429
        # Another address is not held up, and someone who knows their key never fails.
        other = client.post(
            "/session", json={"api_key": ACME_KEY}, headers={"X-Forwarded-For": "198.51.100.9"}
        )
        assert other.status_code == 200


async def signed_in_send(client: httpx.AsyncClient, message_id: str) -> tuple[dict[str, str], str]:
    """Sign in as acme, register a message with the cookie; the CSRF header and the message's pixel path."""
    r = await client.post("/session", json={"api_key": ACME_KEY})
    token = {"X-CSRF-Token": r.json()["csrf_token"]}
    body = {"campaign_id": "live", "recipient": "ann@example.com", "message_id": message_id}
    sent = await client.post("/v1/messages", json=body, headers=token)
    assert sent.status_code == 201
    return token, path_of(sent.json()["pixel_url"])


async def test_the_live_feed_opens_with_the_cookie(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        _, pixel = await signed_in_send(client, "m-live")
        events: asyncio.Queue[Any] = asyncio.Queue()
        connected = asyncio.Event()

        async def listen() -> None:
            # What an EventSource sends: the cookie, `Accept: text/event-stream`, no Authorization.
            async with aconnect_sse(client, "GET", "/v1/live") as source:
                assert source.response.status_code == 200
                connected.set()
                async for sse in source.aiter_sse():
                    if sse.event == "open":
                        await events.put(sse)

        task = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(connected.wait(), 10)
            hit = await client.get(pixel, headers={"User-Agent": BROWSER, "X-Forwarded-For": RESIDENTIAL})
            assert hit.status_code == 200
            opened = await asyncio.wait_for(events.get(), 30)
            assert orjson.loads(opened.data)["message_id"] == "m-live"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        # Without the cookie (or a key), the feed is refused.
        async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
            assert (await anonymous.get("/v1/live")).status_code == 401


async def test_signing_out_ends_a_live_stream_the_session_opened(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        token, pixel = await signed_in_send(client, "m-out")
        seen: list[str] = []
        connected = asyncio.Event()

        async def listen() -> None:
            async with aconnect_sse(client, "GET", "/v1/live") as source:
                connected.set()
                async for sse in source.aiter_sse():
                    seen.append(sse.event)  # noqa: PERF401 - read while it grows

        task = asyncio.create_task(listen())
        await asyncio.wait_for(connected.wait(), 10)
        browser = {"User-Agent": BROWSER, "X-Forwarded-For": RESIDENTIAL}
        assert (await client.get(pixel, headers=browser)).status_code == 200
        deadline = time.monotonic() + 30
        while "open" not in seen:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.05)
        assert (await client.delete("/session", headers=token)).status_code == 204
        # The next notice finds the session gone: the stream ends instead of sending it.
        assert (await client.get(pixel, headers=browser)).status_code == 200
        await asyncio.wait_for(task, 30)
        assert seen.count("open") == 1
