"""The edge's HTTP ingest of delivery events: ``POST /in/{provider}/{ingest_id}`` (`ingest_routes`), and
what one request goes through (`DeliveryIngest`). Public, no API key: each mail service signs its own way.

A request, in order (nothing of it is published unless every step passes):

1. The account by the ingest id of its URL (`MailServiceDirectory`): unknown, or another provider's → 404,
   the same answer either way, so the ingest never says which accounts exist.
2. The body, at most ``PIXELPIPE_DELIVERY_MAX_BODY_BYTES``: a declared ``Content-Length`` over it is refused
   (413) before a byte is read, a body without one as soon as it crosses it; no more is ever kept.
3. The provider's reader (`deliveries.providers`) checks the signature and reads the events, whole or not at
   all: 401 unsigned, 403 forged, 400 malformed, each with its reason as ``{"error": reason}``. For SES the
   SNS signing certificate is fetched first (`deliveries.certificates`, from Amazon's hosts only), and a
   subscription confirmation is confirmed instead of read.
4. Every event published in one call (`DeliveryPublisher.publish`: durable when it returns) → 200
   ``{"accepted": n}`` (a 2xx is what the providers take as delivered; a request with no delivery events,
   such as a SendGrid batch of opens only, is 200 with 0). The bus away or full (`BusUnavailable`), or
   Amazon unreachable for a certificate → 503 with ``Retry-After``: the provider sends the request again,
   and `delivery_id` makes the events it repeats count once.

No input makes a 5xx: a reader refuses what it cannot read. The checks are CPU-bound but sub-millisecond, so
a small body's are run inline; a larger body's reading (JSON of thousands of events: ~37 µs each) runs in a
thread, so the loop keeps serving pixels meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from litestar import MediaType, Request, Response, post
from litestar.exceptions import InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from prometheus_client import Counter, Histogram

from deliveries.certificates import SnsRequests, SnsUnavailable
from deliveries.port import BusUnavailable, DeliveryPublisher, MailService, MailServiceDirectory
from deliveries.providers import generic, mailgun, postmark, reports, sendgrid, ses
from deliveries.providers.inbound import Forged, Inbound, Refused, Unsigned
from deliveries.providers.sns import envelope as sns_envelope
from schemas.delivery_events import PROVIDERS, DeliveryEvent
from schemas.secret import Secret

# The path's provider → the account's provider: SES's events come through SNS, under either name.
PATH_PROVIDERS: Final[Mapping[str, str]] = {**{p: p for p in PROVIDERS}, "sns": "ses"}
DEFAULT_MAX_BODY_BYTES: Final = 25 * 1024 * 1024  # a SendGrid batch of 10,000 events is a few MB
RETRY_AFTER_S: Final = 5
# Larger bodies are read in a thread. Measured: a SendGrid batch reads in ~37 µs an event, ~3.7 µs per 100
# bytes (10,000 events, 3.7 MB: 370 ms); inline, 16 KiB holds the loop ~1.5 ms at most. In a thread the
# loop still gets the GIL every switch interval (5 ms), so pixels keep being answered meanwhile (measured with
# 10,000-event batches back to back: a pixel's p99 62 ms, against 605 ms inline).
INLINE_MAX_BYTES: Final = 16 * 1024
UNKNOWN: Final = "no such ingest URL"

REQUESTS: Final = Counter(
    "pixelpipe_delivery_requests_total",
    "Requests to the delivery ingest by provider (of the path; 'unknown' for another) and outcome: accepted, "
    "confirmed (an SNS subscription), unknown (404), too_large (413), unsigned (401), forged (403), "
    "malformed (400), unavailable (503), disconnected (the client left before its whole body)",
    ["provider", "outcome"],
)
EVENTS: Final = Counter(
    "pixelpipe_delivery_events_accepted_total",
    "Delivery events published (durable) by the ingest, by provider and event",
    ["provider", "event"],
)
SECONDS: Final = Histogram(
    "pixelpipe_delivery_request_seconds",
    "Time from a delivery ingest request's body to its answer (read, checked, published), by provider",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# A reader of one provider, as the ingest calls it: the request and the account it came to.
Reader = Callable[[Inbound, MailService], Sequence[DeliveryEvent]]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the ingest answers: a status, a JSON body and, for a 503, when to try again."""

    status: int
    body: Mapping[str, Any]
    retry_after_s: int | None = None


# A refusal's outcome in the metrics, by its status.
_OUTCOMES: Final[Mapping[int, str]] = {Unsigned.status: "unsigned", Forged.status: "forged"}


class DeliveryIngest:
    """One request's path through the ingest, without HTTP (`ingest_routes` is the shell)."""

    def __init__(
        self,
        directory: MailServiceDirectory,
        publisher: DeliveryPublisher,
        *,
        sns: SnsRequests,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        readers: Mapping[str, Reader] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.publisher = publisher
        self.sns = sns
        self.max_body_bytes = max_body_bytes
        self.readers = dict(readers) if readers is not None else provider_readers()
        self.clock = clock

    def account(self, path_provider: str, ingest_id: str) -> MailService | None:
        """The account whose ingest URL this is, or None (unknown, or another provider's)."""
        provider = PATH_PROVIDERS.get(path_provider)
        if provider is None or (provider not in self.readers and provider != "ses"):
            return None
        service = self.directory.find(ingest_id)
        if service is None or service.provider != provider:
            return None
        return service

    async def take(self, service: MailService, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Check, read and publish one request's events to ``service``'s ingest URL."""
        provider = service.provider
        inbound = Inbound(
            account=service.account,
            body=body,
            headers=headers,
            received_at_ms=int(self.clock() * 1000),
            content_type=headers.get("content-type", ""),
        )
        try:
            if provider == "ses":
                read = await self._read_sns(service, inbound)
                if read.confirm_url:
                    count(provider, "confirmed")
                    return Answer(200, {"accepted": 0, "subscription": "confirmed"})
                events: Sequence[DeliveryEvent] = read.events
            else:
                events = await self._read(service, inbound)
        except Refused as exc:
            return refused(provider, _OUTCOMES.get(exc.status, "malformed"), exc.status, str(exc))
        except SnsUnavailable as exc:
            return unavailable(provider, f"Amazon SNS: {exc}")
        if events:
            try:
                await self.publisher.publish(events)
            except BusUnavailable:
                return unavailable(provider, "the events could not be made durable now")
        count(provider, "accepted")
        for kind, n in collections.Counter(e.event for e in events).items():
            EVENTS.labels(provider, kind).inc(n)
        return Answer(200, {"accepted": len(events)})

    async def _read(self, service: MailService, inbound: Inbound) -> Sequence[DeliveryEvent]:
        return await _off_the_loop_if_large(inbound, self.readers[service.provider], inbound, service)

    async def _read_sns(self, service: MailService, inbound: Inbound) -> ses.SesRead:
        """SES's events through SNS: the certificate first (from Amazon's hosts only), then the reader; a
        subscription confirmation, once verified, is confirmed (nothing to publish)."""
        message = await _off_the_loop_if_large(inbound, sns_envelope, inbound)
        certificate = await self.sns.certificate(message.signing_cert_url)
        topics = tuple(service.options.get("topic_arns") or ())
        read = await _off_the_loop_if_large(
            inbound, lambda: ses.read(inbound, certificate, topic_arns=topics, now_ms=inbound.received_at_ms)
        )
        if read.confirm_url:
            await self.sns.confirm_subscription(message)
        return read


async def _off_the_loop_if_large(inbound: Inbound, read: Callable[..., _T], *args: Any) -> _T:
    """``read(*args)``: inline for a small body, in a thread for one over `INLINE_MAX_BYTES`."""
    if len(inbound.body) > INLINE_MAX_BYTES:
        return await asyncio.to_thread(read, *args)
    return read(*args)


def count(provider: str, outcome: str) -> None:
    REQUESTS.labels(provider, outcome).inc()


def refused(provider: str, outcome: str, status: int, reason: str) -> Answer:
    count(provider, outcome)
    return Answer(status, {"error": reason})


def unavailable(provider: str, reason: str) -> Answer:
    count(provider, "unavailable")
    return Answer(503, {"error": f"{reason}; retry later"}, retry_after_s=RETRY_AFTER_S)


def provider_readers() -> dict[str, Reader]:
    """Each provider's reader (SES apart: it needs a certificate fetched first), given the account's keys
    (`MailService.credentials`; one missing is empty, which verifies nothing: 401 or 403)."""

    def key(service: MailService, name: str) -> Secret:
        return service.credentials.get(name) or Secret("")

    return {
        "sendgrid": lambda inbound, service: sendgrid.read(inbound, key(service, "public_key")),
        "mailgun": lambda inbound, service: mailgun.read(inbound, key(service, "signing_key")),
        "postmark": lambda inbound, service: postmark.read(
            inbound, key(service, "username"), key(service, "password")
        ),
        "generic": lambda inbound, service: generic.read(inbound, key(service, "secret")),
        "report": lambda inbound, service: (
            reports.read(inbound, key(service, "username"), key(service, "password")).events
        ),
    }


def inbound_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """An ASGI scope's headers as `Inbound` takes them: names lower-cased (they are in ASGI), a repeated
    header's values joined by ", ", bytes read as Latin-1 (HTTP's own: any byte reads)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _no_checks(_: Request[Any, Any, Any]) -> None:
    """Instead of the API's `before_request`, which reads the whole body before any limit applies; the
    ingest reads its body itself, bounded."""


def ingest_routes(ingest: DeliveryIngest) -> list[HTTPRouteHandler]:
    """The ingest's route, for the edge's Litestar app."""

    @post(
        "/in/{provider:str}/{ingest_id:str}",
        include_in_schema=False,
        request_max_body_size=ingest.max_body_bytes,
        before_request=_no_checks,
        name="delivery-ingest",
    )
    async def take_deliveries(
        request: Request[Any, Any, Any], provider: FromPath[str], ingest_id: FromPath[str]
    ) -> Response[Mapping[str, Any]]:
        service = ingest.account(provider, ingest_id)
        label = PATH_PROVIDERS.get(provider, "unknown")
        if service is None:
            return _response(refused(label, "unknown", 404, UNKNOWN))
        try:
            body = b"".join([chunk async for chunk in request.stream()])
        except RequestEntityTooLarge:
            reason = f"the body is over the limit of {ingest.max_body_bytes} bytes"
            return _response(refused(label, "too_large", 413, reason))
        except InternalServerException:  # Litestar's word for a client that left before its whole body
            return _response(refused(label, "disconnected", 400, "the body did not arrive whole"))
        started = time.perf_counter()
        answer = await ingest.take(service, body, inbound_headers(request.scope["headers"]))
        SECONDS.labels(label).observe(time.perf_counter() - started)
        return _response(answer)

    return [take_deliveries]


def _response(answer: Answer) -> Response[Mapping[str, Any]]:
    headers = {"Retry-After": str(answer.retry_after_s)} if answer.retry_after_s is not None else None
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=MediaType.JSON)
