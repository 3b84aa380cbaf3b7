"""The recipient in a `/v1/recipients/{recipient}...` path, exactly as the client encoded it.

A recipient is any string up to 512 characters, and addresses may hold `/`, `%`, `+` or any Unicode. ASGI
servers hand the router the *decoded* path, in which `a%2Fb@example.com` is two segments: it would match no
route (or another one), and no encoding of it could be erased or opted out. So the recipient is read from
the raw path instead: the one segment after `/v1/recipients/`, percent-decoded once (`+` stays a plus, as
in any path; `%252F` is the literal `%2F`), as UTF-8. `recipient_paths` keeps routing working for such a
segment: when its decoded form holds a `/`, the path the router sees gets that slash re-encoded, so the
segment stays one; after routing, `raw_recipient` gives the route's ``recipient`` parameter its exact value.

Owns nothing else: what a recipient *is* (normalisation) is `schemas.recipient.normalize_recipient`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.types import ASGIApp as LitestarApp
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend

# Plain ASGI (the server's side of Litestar, as `ingest.edge` types it).
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX: Final = b"/v1/recipients/"


def _raw_segments(scope: Mapping[str, Any]) -> list[bytes] | None:
    """The raw path's segments after `PREFIX` (None: not such a path, or the server gave no raw path)."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes) or not raw.startswith(PREFIX):
        return None
    return raw[len(PREFIX) :].split(b"/")


def decode_segment(segment: bytes) -> str:
    """One path segment, percent-decoded once, as UTF-8; `ValueError` when it is not UTF-8."""
    return unquote_to_bytes(segment).decode("utf-8")


def recipient_paths(app: ASGIApp) -> ASGIApp:
    """``app``, with a recipient's `/` kept inside its segment of the path the router sees."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            segments = _raw_segments(scope)
            if segments is not None and b"%2f" in segments[0].lower():
                # The recipient's segment stays encoded (one segment, whatever it decodes to); the rest is
                # decoded as the server would have.
                rest = [unquote_to_bytes(s).decode("utf-8", "replace") for s in segments[1:]]
                path = "/".join(["/v1/recipients", quote(unquote_to_bytes(segments[0]), safe=""), *rest])
                scope = {**scope, "path": path}
        await app(scope, receive, send)

    return routed


def raw_recipient(app: LitestarApp) -> LitestarApp:
    """Litestar middleware: a route's ``recipient`` path parameter, taken from the raw path (see above)."""

    async def exact(scope: LitestarScope, receive: LitestarReceive, send: LitestarSend) -> None:
        segments = _raw_segments(scope) if scope["type"] == ScopeType.HTTP else None
        params = scope.get("path_params")
        if segments is not None and isinstance(params, dict) and "recipient" in params:
            try:
                recipient = decode_segment(segments[0])
            except ValueError as exc:
                raise ClientException("recipient: not UTF-8 once percent-decoded") from exc
            scope["path_params"] = {**params, "recipient": recipient}
        await app(scope, receive, send)

    return exact
