"""The account of a request signed in with the dashboard's session cookie, and what such a request must show.

A browser sends the cookie by itself, so a request it carries is trusted only when it comes from this site:
- a request whose ``Origin`` is another origin, or whose ``Sec-Fetch-Site`` is ``cross-site``, is refused
  (403), whatever its method;
- a state-changing request (POST, PUT, PATCH, DELETE) must carry the session's CSRF token in
  ``X-CSRF-Token`` (403 without it, or with another).
`SameSite=Strict` already keeps the cookie off other sites' requests; these checks hold where it does not
(an older browser, a sibling subdomain). A request with an ``Authorization`` header is a bearer request and
never reaches here (`api.context`): it needs none of this.

The checks (`cross_site`, `csrf_refusal`) are pure; `session_account` applies them to a request, and leaves
on it how to ask later whether its session still holds (`session_alive`: the live feed ends a stream whose
session expired or was signed out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from api.auth import CHALLENGE
from api.session import COOKIE, Session, SessionRefused, Sessions

STATE_CHANGING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER: Final = "X-CSRF-Token"
# Request state: for a request authorized by the cookie, whether its session still holds (`session_alive`).
SESSION_ALIVE: Final = "pixelpipe_session_alive"


def _origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    return scheme, f"{host}:{port}"


def _host_port(host_header: str, scheme: str) -> str:
    return _origin_of(f"{scheme}://{host_header}")[1]


def cross_site(origin: str | None, fetch_site: str | None, host: str | None, public_url: str) -> str | None:
    """Why a cookie request is from another site, or None. Its own origin is the one it was sent to (the
    ``Host`` header, any scheme: TLS may end at a proxy) or ``public_url``'s. Pure."""
    if (fetch_site or "").strip().lower() == "cross-site":
        return "a cross-site request (Sec-Fetch-Site: cross-site) cannot use the session cookie"
    if origin is None:
        return None  # a same-origin GET, or a client that is not a browser: nothing says another site
    refusal = "a request from another origin than this server's cannot use the session cookie"
    if origin.strip().lower() == "null":
        return refusal
    try:
        scheme, host_port = _origin_of(origin.strip())
        ours = {_origin_of(public_url)}
        if host:
            ours.add((scheme, _host_port(host, scheme)))
    except ValueError:  # a port out of range, a garbled host
        return refusal
    if scheme not in ("http", "https") or (scheme, host_port) not in ours:
        return refusal
    return None


def csrf_refusal(method: str, given: str | None, matches: bool) -> str | None:
    """Why a cookie request lacks its CSRF token, or None (not state-changing, or the token matches). Pure."""
    if method.upper() not in STATE_CHANGING:
        return None
    if not given:
        return (
            f"missing {CSRF_HEADER}: a {method.upper()} signed in by the session cookie must carry the "
            "csrf_token of POST /session or GET /session"
        )
    if not matches:
        return f"{CSRF_HEADER} does not match this session's csrf_token"
    return None


def refuse_cross_site(request: Request[Any, Any, Any], public_url: str) -> None:
    """403 when the request shows another site (see `cross_site`)."""
    headers = request.headers
    reason = cross_site(headers.get("origin"), headers.get("sec-fetch-site"), headers.get("host"), public_url)
    if reason is not None:
        raise PermissionDeniedException(reason)


def require_csrf(request: Request[Any, Any, Any], sessions: Sessions, session: Session) -> None:
    """403 when a state-changing request does not carry the session's CSRF token."""
    given = request.headers.get(CSRF_HEADER)
    matches = given is not None and sessions.keys.csrf_matches(session, given)
    reason = csrf_refusal(request.method, given, matches)
    if reason is not None:
        raise PermissionDeniedException(reason)


def cookie_session(request: Request[Any, Any, Any], sessions: Sessions) -> Session:
    """The session of the request's cookie, or 401 saying why there is none."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise NotAuthorizedException("missing bearer key or session cookie", headers=CHALLENGE)
    try:
        return sessions.session_of(cookie)
    except SessionRefused as exc:
        raise NotAuthorizedException(str(exc), headers=CHALLENGE) from None


def session_account(request: Request[Any, Any, Any], sessions: Sessions, public_url: str) -> str:
    """The account of a request authorized by the session cookie: from this site, with its CSRF token when
    it changes something. 401 without a valid session, 403 from another site or without the token."""
    session = cookie_session(request, sessions)
    refuse_cross_site(request, public_url)
    require_csrf(request, sessions, session)
    setattr(request.state, SESSION_ALIVE, functools.partial(sessions.alive, session))
    return session.account


def session_alive(request: Request[Any, Any, Any]) -> Callable[[], bool] | None:
    """For a request authorized by the cookie: whether its session still holds (expired or signed out since
    the request began: no longer). None for a bearer request."""
    alive: Callable[[], bool] | None = getattr(request.state, SESSION_ALIVE, None)
    return alive
