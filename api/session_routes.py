"""`/session`: the dashboard signs in with an API key, reads its session, and signs out.

- ``POST /session`` ``{"api_key"}`` -> 200 ``{"account", "csrf_token", "expires_at"}`` and the session
  cookie (``HttpOnly; SameSite=Strict; Path=/; Max-Age``, ``Secure`` when the public URL is https); 401 for a
  key no account has, 429 (``Retry-After``) while the client address is throttled (`api.throttle`).
- ``GET /session`` -> 200, the same body, or 401 (and the cookie cleared when it no longer stands for a
  session).
- ``DELETE /session`` (``X-CSRF-Token``) -> 204, the session signed out and the cookie cleared.

Every one of them refuses another site's request (403, `api.cookie_auth`). Not in the OpenAPI document: the
API's clients use bearer keys; this is the dashboard's door (README: "The dashboard"). The key is never
logged, kept or echoed: only its account and a fingerprint end up in the cookie (`api.session`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.params import JSONBody

from api.auth import CHALLENGE
from api.cookie_auth import cookie_session, refuse_cross_site, require_csrf
from api.session import COOKIE, Session, Sessions
from api.throttle import SignInThrottle

_NO_STORE = {"Cache-Control": "no-store"}


class SignInBody(msgspec.Struct, forbid_unknown_fields=True):
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


@dataclass(slots=True)
class SignIn:
    """What the routes need: the sessions, the public URL (whose origin is this site's), the sign-in
    throttle, and how to tell the client's address (the socket peer, or what a trusted proxy forwarded)."""

    sessions: Sessions
    public_url: str
    client_address: Callable[[str | None, str | None], str]  # (peer, X-Forwarded-For) -> address
    throttle: SignInThrottle = field(default_factory=SignInThrottle)

    def body(self, session: Session) -> dict[str, str]:
        expires = datetime.fromtimestamp(session.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "account": session.account,
            "csrf_token": self.sessions.keys.csrf_token(session),
            "expires_at": expires,
        }

    def cleared(self) -> str:
        return self.sessions.cookie_header("", 0)


class SessionController(Controller):
    path = "/session"
    include_in_schema = False

    @post(sync_to_thread=False, status_code=200)
    def sign_in(
        self, request: Request[Any, Any, Any], data: JSONBody[SignInBody], sign_in: NamedDependency[SignIn]
    ) -> Response[dict[str, str]]:
        """Trade an API key for a session cookie."""
        refuse_cross_site(request, sign_in.public_url)
        peer = request.client.host if request.client else None
        address = sign_in.client_address(peer, request.headers.get("x-forwarded-for"))
        now = sign_in.sessions.clock()
        wait = sign_in.throttle.wait_s(address, now)
        if wait:
            raise TooManyRequestsException(
                f"too many failed sign-ins from this address; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        signed = sign_in.sessions.sign_in(data.api_key)
        if signed is None:
            sign_in.throttle.failed(address, now)
            raise NotAuthorizedException("unknown API key", headers=CHALLENGE)
        session, cookie = signed
        set_cookie = sign_in.sessions.cookie_header(cookie, session.expires_at - session.issued_at)
        return Response(sign_in.body(session), headers={**_NO_STORE, "Set-Cookie": set_cookie})

    @get(sync_to_thread=False)
    def current(
        self, request: Request[Any, Any, Any], sign_in: NamedDependency[SignIn]
    ) -> Response[dict[str, str]]:
        """The signed-in session: its account, CSRF token and expiry."""
        refuse_cross_site(request, sign_in.public_url)
        session = _session(request, sign_in)
        return Response(sign_in.body(session), headers=_NO_STORE)

    @delete(sync_to_thread=False, status_code=204)
    def sign_out(self, request: Request[Any, Any, Any], sign_in: NamedDependency[SignIn]) -> Response[None]:
        """End the session: refused here from now on, and the cookie cleared."""
        refuse_cross_site(request, sign_in.public_url)
        session = _session(request, sign_in)
        require_csrf(request, sign_in.sessions, session)
        sign_in.sessions.sign_out(session)
        return Response(None, status_code=204, headers={**_NO_STORE, "Set-Cookie": sign_in.cleared()})


def _session(request: Request[Any, Any, Any], sign_in: SignIn) -> Session:
    """The request's session; 401 without one, clearing a cookie that no longer stands for a session."""
    try:
        return cookie_session(request, sign_in.sessions)
    except NotAuthorizedException as exc:
        if COOKIE not in request.cookies:
            raise
        headers = {**CHALLENGE, **_NO_STORE, "Set-Cookie": sign_in.cleared()}
        raise NotAuthorizedException(exc.detail, headers=headers) from None
