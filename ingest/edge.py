"""The edge's hot path: ``GET /o/{token}.gif`` and ``GET /c/{token}``.

It sits in front of the Litestar app (every other path falls through to it), because a pixel must cost as
little as possible: no routing table, no request object, no middleware. For each hit it verifies the token
(HMAC, no lookup), answers, and hands the raw hit to the bus, which never blocks. It must never wait on
anything slow and never answer a pixel with anything but the GIF: whatever arrives, the handler catches it.

Two ways in, one logic: `Edge.serve` hands each `Answer` to a callback, which the edge's HTTP protocol
(`ingest.http_protocol`) turns straight into bytes on the socket, below ASGI (a pixel's GIF is on its way
before the hit is recorded); `Edge.__call__` is the same as an ASGI app (for any other server, and for the
rare request that protocol passes on), which sends the answer after the hit is recorded.

**Timed opens** (read time, issue 18: `schemas.tokens.TokenKind.TIMED_OPEN`, told from a plain open by the
token's first characters, before anything is verified). A plain open's GIF leaves first, as above. A timed
open is verified and published first, exactly as an open (the hit id its read record will name), then
answered with a `TimedAnswer`: the edge's HTTP protocol holds it (`ingest.read_time`). The ASGI path does not
hold: it sends the read-time GIF whole (`ReadEnd.BUSY`, counted as ``asgi``), so a graceful shutdown never
waits on a held ASGI response. A timed token that does not verify, or a recipient on do-not-track, gets the
plain GIF, as a plain open does; a HEAD gets the read-time GIF's head, holds nothing and publishes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from bus.port import EncodedHitPublisher, HitPublisher
from ingest import metrics
from ingest.aggregate import AggregatePixels
from ingest.client_ip import Network, client_ip
from ingest.native import NativeEdge, PixelPath, pixel_path
from ingest.read_time import HeldPixels, TimedOpen
from schemas.aggregate_opens import looks_aggregate
from schemas.events import SCHEMA_VERSION, HitKind, RawHit
from schemas.reads import ReadEnd
from schemas.suppression import DoNotTrack
from schemas.tokens import Claim, InvalidToken, Keyring, TokenKind, token_shape, token_starts, verify
from schemas.wire import fast_constructor

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The smallest transparent 1x1 GIF89a: 43 bytes.
PIXEL_GIF: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE: Final = b"no-store, no-cache, must-revalidate, private"
_PIXEL_HEADERS: Final = (
    (b"content-type", b"image/gif"),
    (b"content-length", b"43"),
    (b"cache-control", NO_STORE),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
)
_BAD_LINK: Final = b"This link is invalid or has been altered.\n"
_MAX_UA_CHARS: Final = 1024


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class _RandomHex:
    """16 hex digits (64 bits) from the OS's CSPRNG per call, as ``os.urandom(8).hex()``, but fetched
    ``batch`` at a time: one ``getrandom`` system call per ``batch`` hits instead of one per hit.

    Each value is handed out once: a list iterator's ``__next__`` is atomic under the GIL (so threads
    cannot share one), and a forked child drops its parent's values (so two processes cannot either).
    """

    def __init__(self, batch: int = 256) -> None:
        self._batch = batch
        self._next: Callable[[], str] = iter(()).__next__
        os.register_at_fork(after_in_child=self._discard)

    def _discard(self) -> None:
        self._next = iter(()).__next__

    def __call__(self) -> str:
        try:
            return self._next()
        except StopIteration:
            digits = os.urandom(8 * self._batch).hex()
            self._next = iter([digits[i : i + 16] for i in range(0, len(digits), 16)]).__next__
            return self._next()


_random_hex: Final = _RandomHex()


def _hit_id(received_at_ms: int) -> str:
    # Time-ordered (ms since epoch, 12 hex digits) + 64 random bits: unique without coordination.
    return f"{received_at_ms:012x}{_random_hex()}"


def safe_location(url: str) -> bytes | None:
    """The Location header for a signed destination, or None if it is not an http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # Percent-encode anything outside printable ASCII; keep URL syntax as it is.
    return quote(url, safe="!#$%&'()*+,-./:;=?@[]_~").encode("ascii")


_NO_CLAIM: Final = Claim(TokenKind.OPEN, "", "", "", 0)
_raw_hit: Final = fast_constructor(RawHit)


def raw_hit(
    *,
    kind: HitKind,
    token: str,
    claim: Claim | None,
    error: str,
    received_at_ms: int,
    ip: str,
    user_agent: str,
) -> RawHit:
    """The raw hit the edge publishes: the verified claim, or the token's error and shape."""
    c = claim or _NO_CLAIM
    return _raw_hit(
        hit_id=_hit_id(received_at_ms),
        kind=kind,
        received_at_ms=received_at_ms,
        ip=ip,
        user_agent=user_agent,
        token_ok=claim is not None,
        account=c.account,
        campaign_id=c.campaign_id,
        message_id=c.message_id,
        sent_at=c.sent_at,
        link_index=c.link_index,
        url=c.url,
        recipient_tag=c.recipient_tag.hex() if claim else "",
        token_error=error,
        token_head="" if claim else token_shape(token),  # never the token: its body names the recipient
        v=SCHEMA_VERSION,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response: what the hot path answers, served as ASGI messages or as raw bytes."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""


def _plain(status: int, body: bytes, *extra: tuple[bytes, bytes]) -> Answer:
    headers = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", NO_STORE),
        *extra,
    )
    return Answer(status, headers, body)


PIXEL: Final = Answer(200, _PIXEL_HEADERS, PIXEL_GIF)
PIXEL_HEAD: Final = Answer(200, PIXEL.headers, b"")
METHOD_NOT_ALLOWED: Final = _plain(405, b"Method Not Allowed\n", (b"allow", b"GET, HEAD"))
BAD_LINK: Final = _plain(400, _BAD_LINK)


def redirect(location: bytes) -> Answer:
    return Answer(
        302,
        (
            (b"location", location),
            (b"cache-control", NO_STORE),
            (b"content-length", b"0"),
            (b"referrer-policy", b"no-referrer"),
        ),
    )


def read_time_answers(pixels: HeldPixels) -> tuple[Answer, Answer, Answer]:
    """The read-time GIF's answers: its head with the first frame (what a held answer writes at once), the
    whole animation at once (an answer not held), and the answer to a HEAD. All declare the whole length."""
    headers = (
        (b"content-type", b"image/gif"),
        (b"content-length", str(pixels.gif.content_length).encode()),
        (b"cache-control", NO_STORE),
        (b"pragma", b"no-cache"),
        (b"expires", b"0"),
    )
    return Answer(200, headers, pixels.gif.head), Answer(200, headers, pixels.gif.whole), Answer(200, headers)


# A timed open is told from a plain one by its first characters, before anything is verified.
_TIMED_STARTS: Final = token_starts(TokenKind.TIMED_OPEN)


def looks_timed(token: str) -> bool:
    """Whether ``token`` says it is a timed open (unverified: `verify` decides what it is)."""
    return token[:3] in _TIMED_STARTS


@dataclass(frozen=True, slots=True)
class TimedAnswer:
    """A verified timed open, published: its answer is the read-time GIF, held by the server that can
    (`ingest.http_protocol`), else sent whole (`Edge.whole_answer`, the ASGI path)."""

    opened: TimedOpen
    user_agent: str


Respond = Callable[[Answer | TimedAnswer], None]


class Edge:
    """The ASGI app for pixels and clicks; everything else goes to ``fallback`` (the Litestar app).

    `serve` is the same hot path without ASGI, for a server protocol that answers with raw bytes
    (`ingest.http_protocol`): both call the same `_pixel` and `_click` and differ only in how an `Answer`
    leaves."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        publisher: HitPublisher,
        trusted_proxies: Sequence[Network],
        fallback: ASGIApp,
        do_not_track: DoNotTrack | None = None,
        clock: Callable[[], float] = time.time,
        native: NativeEdge = "auto",
        read_time: HeldPixels | None = None,
    ) -> None:
        self.keyring = keyring
        self.publisher = publisher
        self.trusted_proxies = tuple(trusted_proxies)
        self.fallback = fallback
        self.do_not_track = do_not_track
        self.clock = clock
        # The native fast path writes encoded hits: only for a publisher that takes them (Kafka's).
        self.pixel_path: PixelPath | None = None
        self._publish_encoded: Callable[[bytes | None, bytes], None] | None = None
        if isinstance(publisher, EncodedHitPublisher):
            self.pixel_path = pixel_path(keyring, native, self.trusted_proxies)
            self._publish_encoded = publisher.publish_encoded
        # Campaign pixels (issue 19, `ingest.aggregate`): published through the encoded path (every publisher
        # of the edge has one: the memory bus's and Kafka's).
        encoded = getattr(publisher, "publish_encoded", None)
        self.aggregate = AggregatePixels(keyring, encoded, self.trusted_proxies, clock) if encoded else None
        # The held read-time pixels (the edge's HTTP protocol holds them; `pixelpipe.app` stops them).
        self.read_time = read_time or HeldPixels(publisher, cap_s=25, max_held=5_000, clock=clock)
        answers = read_time_answers(self.read_time)
        self.read_time_head, self.read_time_whole, self.read_time_head_only = answers
        # The counters' children, bound once: `.labels()` per hit costs a locked lookup.
        self._hits = {
            (kind, token): metrics.HITS.labels(kind, token)
            for kind in ("open", "click")
            for token in ("ok", "invalid", "do_not_track")
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(("/o/", "/c/")):
                answers: list[Answer | TimedAnswer] = []
                peer = scope.get("client")
                self.serve(
                    scope["method"],
                    path,
                    peer[0] if peer else None,
                    scope.get("headers") or (),
                    answers.append,
                )
                for given in answers:
                    answer = given if isinstance(given, Answer) else self.whole_answer(given)
                    await send(
                        {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
                    )
                    await send({"type": "http.response.body", "body": answer.body})
                return
        await self.fallback(scope, receive, send)

    def whole_answer(self, timed: TimedAnswer) -> Answer:
        """The ASGI path's answer to a timed open: the whole read-time GIF, its record published
        (`ReadEnd.PROXY` for a proxy's, else `ReadEnd.BUSY`, counted as ``asgi``): this path holds nothing."""
        pixels = self.read_time
        if pixels.unheld_reason(timed.user_agent) is ReadEnd.PROXY:
            pixels.unheld(timed.opened, ReadEnd.PROXY)
        else:
            pixels.unheld(timed.opened, ReadEnd.BUSY, "asgi")
        return self.read_time_whole

    def serve(
        self,
        method: str,
        path: str,
        peer: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        respond: Respond,
    ) -> bool:
        """Answer ``path`` through ``respond`` (exactly once) if it is a pixel or a click; False if it is not
        (nothing was answered: the caller passes the request on). ``headers`` as in an ASGI scope."""
        if path.startswith("/o/"):
            self._pixel(method, path[3:], peer, headers, respond)
            return True
        if path.startswith("/c/"):
            self._click(method, path[3:], peer, headers, respond)
            return True
        return False

    def _pixel(
        self,
        method: str,
        token: str,
        peer: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        respond: Respond,
    ) -> None:
        if method != "GET":
            if method == "HEAD":
                respond(self.read_time_head_only if looks_timed(token) else PIXEL_HEAD)
            else:
                respond(METHOD_NOT_ALLOWED)
            return
        token = token.removesuffix(".gif")
        if looks_timed(token) and self.read_time.measures:
            self._timed_pixel(token, peer, headers, respond)
            return
        # Answer first: the GIF goes out before anything else happens.
        respond(PIXEL)
        try:
            if looks_aggregate(token) and self.aggregate and self.aggregate.record(token, peer, headers):
                return  # a campaign pixel: an aggregate open, naming nobody (`ingest.aggregate`)
            self._record("open", token, TokenKind.OPEN, peer, headers)
        except Exception:  # the email is already served; a bug here must not surface
            log.exception("could not record a pixel hit")

    def _timed_pixel(
        self, token: str, peer: str | None, headers: Sequence[tuple[bytes, bytes]], respond: Respond
    ) -> None:
        """Publish the open first (its hit id is the one its read record names), then answer: the read-time
        GIF for a verified timed open, the plain GIF for anything else (a forged token, do-not-track)."""
        published: list[RawHit] = []
        claim: Claim | None = None
        try:
            claim = self._record("open", token, TokenKind.OPEN, peer, headers, published=published)
        except Exception:
            log.exception("could not record a pixel hit")
        if claim is None or not claim.read_time or not published:
            respond(PIXEL)
            return
        hit = published[0]
        respond(TimedAnswer(TimedOpen.of(hit), hit.user_agent))

    def _click(
        self,
        method: str,
        token: str,
        peer: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        respond: Respond,
    ) -> None:
        if method not in ("GET", "HEAD"):
            respond(METHOD_NOT_ALLOWED)
            return
        claim: Claim | None = None
        location: bytes | None = None
        try:
            claim = self._record("click", token, TokenKind.CLICK, peer, headers, publish=method == "GET")
        except Exception:
            log.exception("could not record a click")
        if claim is not None:
            location = safe_location(claim.url)
        respond(BAD_LINK if location is None else redirect(location))

    def _suppressed(self, kind: HitKind, recipient_tag: bytes) -> bool:
        """The recipient asked not to be tracked: the hit is counted as such, and recorded nowhere."""
        do_not_track = self.do_not_track
        if do_not_track is not None and recipient_tag in do_not_track:
            self._hits[kind, "do_not_track"].inc()
            return True
        return False

    def record_pixel_line(self, recipient_tag: bytes, key: bytes, line: bytes) -> None:
        """What `_record` does for a pixel whose hit `pixel_path` has verified and encoded (its GIF is
        already answered): honour do-not-track, count, publish."""
        try:
            if self._suppressed("open", recipient_tag):
                return
            self._hits["open", "ok"].inc()
            if self._publish_encoded is not None:
                self._publish_encoded(key, line)
        except Exception:  # the email is already served; a bug here must not surface
            log.exception("could not record a pixel hit")

    def _record(
        self,
        kind: HitKind,
        token: str,
        expect: TokenKind,
        peer: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        publish: bool = True,
        published: list[RawHit] | None = None,
    ) -> Claim | None:
        """Verify the token, publish the raw hit (valid or not; also appended to ``published`` if given),
        and return the claim if it verified."""
        received_at_ms = int(self.clock() * 1000)
        ip = client_ip(
            peer,
            _header(headers, b"x-forwarded-for") if self.trusted_proxies else None,
            self.trusted_proxies,
        )
        user_agent = (_header(headers, b"user-agent") or "")[:_MAX_UA_CHARS]
        try:
            claim: Claim | None = verify(token, self.keyring, expect)
            error = ""
        except InvalidToken as exc:
            claim, error = None, str(exc)
        if claim is not None and self._suppressed(kind, claim.recipient_tag):
            return claim  # answered as usual, recorded nowhere
        self._hits[kind, "ok" if claim else "invalid"].inc()
        if not publish:
            return claim
        hit = raw_hit(
            kind=kind,
            token=token,
            claim=claim,
            error=error,
            received_at_ms=received_at_ms,
            ip=ip,
            user_agent=user_agent,
        )
        self.publisher.publish(hit)
        if published is not None:
            published.append(hit)
        return claim
