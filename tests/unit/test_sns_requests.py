"""`deliveries.certificates.SnsRequests`: what it requests (only allowed URLs, never a redirect's target),
what it takes back (a 200 under the size cap, a PEM certificate), and that a certificate is fetched once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deliveries.certificates import CERTIFICATE_MAX_BYTES, SnsRequests, SnsUnavailable
from deliveries.providers.inbound import Forged
from deliveries.providers.sns import SnsEnvelope, envelope
from tests import sns_signing

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
SUBSCRIBE_URL = f"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tok"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _confirmation(subscribe_url: str) -> SnsEnvelope:
    """A SubscriptionConfirmation of ``TOPIC`` asking for ``subscribe_url``, as the ingest has it."""
    message = sns_signing.confirmation(topic_arn=TOPIC, subscribe_url=subscribe_url, token="tok")
    return envelope(sns_signing.inbound(message))


class Amazon(httpx.AsyncBaseTransport):
    """Answers ``answers[url]`` and records every URL requested."""

    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers
        self.requested: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requested.append(str(request.url))
        await asyncio.sleep(0.01)  # concurrent callers overlap
        answer = self.answers.get(str(request.url), httpx.Response(404))
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _sns(amazon: Amazon) -> SnsRequests:
    return SnsRequests(amazon)


async def test_a_certificate_is_fetched_once_for_all_who_ask() -> None:
    amazon = Amazon({CERT_URL: httpx.Response(200, content=PEM)})
    sns = _sns(amazon)
    got = await asyncio.gather(*(sns.certificate(CERT_URL) for _ in range(5)))
    assert got == [PEM] * 5
    assert await sns.certificate(CERT_URL) == PEM
    assert amazon.requested == [CERT_URL]


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://169.254.169.254/latest/meta-data/",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem?x=1",
    ],
)
async def test_a_refused_certificate_url_is_never_requested(url: str) -> None:
    amazon = Amazon({url: httpx.Response(200, content=PEM)})
    with pytest.raises(Forged):
        await _sns(amazon).certificate(url)
    assert amazon.requested == []


async def test_a_refused_subscribe_url_is_never_requested() -> None:
    amazon = Amazon({})
    with pytest.raises(Forged):
        await _sns(amazon).confirm_subscription(
            _confirmation(SUBSCRIBE_URL.replace("eu-west-1.", "us-east-1."))
        )
    with pytest.raises(Forged):
        await _sns(amazon).confirm_subscription(
            _confirmation("https://attacker.example/?Action=ConfirmSubscription")
        )
    assert amazon.requested == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(301, headers={"location": "http://169.254.169.254/"}), "answered 301"),
        (httpx.Response(500), "answered 500"),
        (httpx.Response(200, content=b"<html>not a certificate</html>"), "did not answer a PEM certificate"),
        (httpx.Response(200, content=PEM + b"x" * CERTIFICATE_MAX_BYTES), "over 65536 bytes"),
    ],
)
async def test_a_wrong_answer_is_unavailable_and_not_kept(answer: httpx.Response, reason: str) -> None:
    amazon = Amazon({CERT_URL: answer})
    sns = _sns(amazon)
    with pytest.raises(SnsUnavailable, match=reason):
        await sns.certificate(CERT_URL)
    amazon.answers[CERT_URL] = httpx.Response(200, content=PEM)
    assert await sns.certificate(CERT_URL) == PEM  # fetched again: a failure is not cached
    assert amazon.requested == [CERT_URL, CERT_URL]  # the redirect's target never


async def test_amazon_unreachable_is_unavailable() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    sns = SnsRequests(httpx.MockTransport(unreachable))
    with pytest.raises(SnsUnavailable, match="could not be reached: ConnectError"):
        await sns.certificate(CERT_URL)


async def test_a_subscription_is_confirmed_at_its_url() -> None:
    amazon = Amazon({SUBSCRIBE_URL: httpx.Response(200, content=b"<ConfirmSubscriptionResponse/>")})
    await _sns(amazon).confirm_subscription(_confirmation(SUBSCRIBE_URL))
    assert amazon.requested == [SUBSCRIBE_URL]
