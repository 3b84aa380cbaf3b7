"""The only requests the delivery ingest makes: Amazon SNS's signing certificates and its subscription
confirmations (`SnsRequests`).

Both URLs come from the body of a request anyone can send, so each is checked before it is requested, by the
rules of `deliveries.providers.sns`: a certificate only from an SNS host's ``.pem`` over https, a
subscription only confirmed at an SNS host's ``ConfirmSubscription`` URL. Nothing else is ever requested: a
refused URL raises `Forged` (403: a real SNS message never carries one) before any connection. Redirects are
never followed, no proxy or ``.netrc`` from the environment is used, every request has a timeout and its
answer a size cap. Certificates are kept in memory by URL (SNS names each by its own hash, so a URL's
certificate never changes), and one fetch serves every request waiting for the same URL.

The HTTP transport is a port: the edge passes none (httpx's own, a fresh one per request: these requests
are rare); tests pass one that answers as Amazon would, since the real hosts cannot be reached from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Final

import httpx

from deliveries.providers import sns
from deliveries.providers.inbound import Forged
from schemas.errors import PixelpipeError

log = logging.getLogger(__name__)

TIMEOUT_S: Final = 5.0
CERTIFICATE_MAX_BYTES: Final = 64 * 1024  # an SNS certificate is ~2 KB; a chain a few
CONFIRMATION_MAX_BYTES: Final = 64 * 1024  # the ConfirmSubscriptionResponse XML is well under 1 KB
CACHED_CERTIFICATES: Final = 64  # SNS rotates its certificate rarely: a handful of URLs in a year
_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"


class SnsUnavailable(PixelpipeError, RuntimeError):
    """Amazon did not answer as it should (unreachable, slow, an error status, too large, not a certificate):
    the ingest answers 503 and SNS retries the message."""

    retriable = True


class _Borrowed(httpx.AsyncBaseTransport):
    """A transport handed in, used by a client per request without being closed by it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)


class SnsRequests:
    """Fetches SNS signing certificates (cached) and confirms SNS subscriptions, at allowed URLs only."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        timeout_s: float = TIMEOUT_S,
        cached: int = CACHED_CERTIFICATES,
    ) -> None:
        self._transport = transport
        self._timeout = httpx.Timeout(timeout_s)
        self._cached = cached
        self._certificates: OrderedDict[str, bytes] = OrderedDict()
        self._fetching: dict[str, asyncio.Task[bytes]] = {}

    async def certificate(self, url: str) -> bytes:
        """The PEM certificate at ``url``: `Forged` when SNS would never sign with it, `SnsUnavailable`
        when it cannot be fetched now."""
        if not sns.certificate_url_allowed(url):
            raise Forged("the signing certificate URL is not an Amazon SNS certificate")
        pem = self._certificates.get(url)
        if pem is not None:
            self._certificates.move_to_end(url)
            return pem
        task = self._fetching.get(url)
        if task is None:
            task = asyncio.create_task(self._fetch_certificate(url), name="pixelpipe-sns-certificate")
            self._fetching[url] = task
            task.add_done_callback(lambda _: self._fetching.pop(url, None))
        # Shielded: a request that goes away must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def confirm_subscription(self, confirmation: sns.SnsEnvelope) -> None:
        """Visit a verified SubscriptionConfirmation's SubscribeURL: `Forged` when it is not SNS's
        confirmation of that topic in its own region, `SnsUnavailable` when SNS did not confirm."""
        if not sns.subscribe_url_allowed(confirmation):
            raise Forged("the SubscribeURL is not SNS's confirmation of this topic in its own region")
        await self._get(confirmation.subscribe_url, CONFIRMATION_MAX_BYTES)
        log.info("confirmed an Amazon SNS subscription")  # not the URL: its token confirms it again

    async def _fetch_certificate(self, url: str) -> bytes:
        pem = await self._get(url, CERTIFICATE_MAX_BYTES)
        if _PEM_BEGIN not in pem:
            raise SnsUnavailable("the SNS signing certificate URL did not answer a PEM certificate")
        self._certificates[url] = pem
        while len(self._certificates) > self._cached:
            self._certificates.popitem(last=False)
        return pem

    async def _get(self, url: str, max_bytes: int) -> bytes:
        """The body of a 200 answer to ``GET url``, at most ``max_bytes``; else `SnsUnavailable`."""
        transport = _Borrowed(self._transport) if self._transport is not None else None
        try:
            async with (
                httpx.AsyncClient(
                    transport=transport, timeout=self._timeout, follow_redirects=False, trust_env=False
                ) as client,
                client.stream("GET", url, headers={"accept-encoding": "identity"}) as answer,
            ):
                if answer.status_code != httpx.codes.OK:
                    raise SnsUnavailable(f"Amazon SNS answered {answer.status_code}")
                declared = answer.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise SnsUnavailable(f"Amazon SNS's answer is over {max_bytes} bytes")
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise SnsUnavailable(f"Amazon SNS's answer is over {max_bytes} bytes")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise SnsUnavailable(f"Amazon SNS could not be reached: {type(exc).__name__}") from exc
