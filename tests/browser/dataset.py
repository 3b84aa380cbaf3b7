"""The dashboard tests' data, made through the public API as a sender's code and its recipients' mail apps
would: messages registered with `POST /v1/messages`, pixels and clicks fetched through the edge with
realistic user agents and addresses, so the counts have people, machine opens (Apple MPP, Gmail prefetch)
and bots in them, and delivery events posted to the ingest URL Postmark would be given. Account ``acme``
has two campaigns; ``globex`` one, which acme's session must never see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.helpers import BROWSER, hit, path_of, wait_for
from tests.mail_services import postmark_auth, postmark_bounce, postmark_delivery

ACME_KEY = "acme-key-123"
GLOBEX_KEY = "globex-key-456"
ACME = {"Authorization": f"Bearer {ACME_KEY}"}
GLOBEX = {"Authorization": f"Bearer {GLOBEX_KEY}"}

APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")
# Addresses in MaxMind's test City DB (tests/data): London, Stockholm, Los Angeles.
LONDON, STOCKHOLM, LOS_ANGELES = "81.2.69.160", "89.160.20.128", "216.160.83.56"
LINKS = ["https://shop.example.com/sale", "https://shop.example.com/new"]

SPRING = "spring-sale"
NEWSLETTER = "newsletter"
SECRET_CAMPAIGN = "globex-only"  # globex's: never in acme's pages


@dataclass(frozen=True)
class Dataset:
    """What was sent: message id -> the `POST /v1/messages` answer (pixel URL, tracked links)."""

    sent: Mapping[str, Mapping[str, Any]]

    def pixel(self, message_id: str) -> str:
        return str(self.sent[message_id]["pixel_url"])


def register(
    client: httpx.Client,
    campaign_id: str,
    message_id: str,
    recipient: str,
    *,
    sent_at: datetime,
    headers: Mapping[str, str] = ACME,
) -> dict[str, Any]:
    body = {
        "campaign_id": campaign_id,
        "message_id": message_id,
        "recipient": recipient,
        "links": LINKS,
        "sent_at": sent_at.isoformat(),
    }
    r = client.post("/v1/messages", json=body, headers=dict(headers))
    assert r.status_code == 201, r.text
    return dict(r.json())


def summary(client: httpx.Client, campaign_id: str, headers: Mapping[str, str] = ACME) -> dict[str, Any]:
    r = client.get(f"/v1/campaigns/{campaign_id}/summary", headers=dict(headers))
    assert r.status_code == 200, r.text
    return dict(r.json())


def make(client: httpx.Client) -> Dataset:
    """Send, open and click; return once the API counts every hit (exact numbers, asserted here once)."""
    now = datetime.now(UTC)
    spring_at, newsletter_at = now - timedelta(hours=3), now - timedelta(hours=1)
    people = ("ann", "bob", "cat", "dan", "eve", "fay")
    sent = {
        f"m-{who}": register(client, SPRING, f"m-{who}", f"{who}@example.com", sent_at=spring_at)
        for who in people
    }
    for who in ("ann", "gus"):
        sent[f"n-{who}"] = register(
            client, NEWSLETTER, f"n-{who}", f"{who}@example.com", sent_at=newsletter_at
        )
    sent["g-zed"] = register(
        client, SECRET_CAMPAIGN, "g-zed", "zed@example.com", sent_at=spring_at, headers=GLOBEX
    )
    px = {m: str(s["pixel_url"]) for m, s in sent.items()}
    plan = [
        *[(px["m-ann"], APPLE_MAIL, LONDON)] * 2,  # a person, twice
        (px["m-ann"], *APPLE_MPP),  # Apple's privacy proxy: a machine open
        (px["m-bob"], IPHONE_MAIL, LOS_ANGELES),
        (px["m-bob"], GMAIL_PROXY, "66.249.88.12"),
        (px["m-cat"], OUTLOOK, STOCKHOLM),
        (px["m-cat"], GMAIL_PREFETCH, "66.102.6.15"),  # Gmail's prefetch: a machine open
        (px["m-dan"], *APPLE_MPP),  # only a machine open: not counted as opened
        (px["m-eve"], "curl/8.4.0", "24.6.101.34"),  # a bot: filtered
        (px["m-eve"], "python-requests/2.31", "24.6.101.35"),  # a bot: filtered
        (px["n-ann"], APPLE_MAIL, LONDON),
        (px["g-zed"], APPLE_MAIL, LONDON),
        (sent["m-ann"]["links"][LINKS[0]], BROWSER, "81.2.69.161"),
        (sent["m-bob"]["links"][LINKS[1]], IPHONE_MAIL, LOS_ANGELES),
        (sent["m-cat"]["links"][LINKS[1]], "Wget/1.21.3", "24.6.101.42"),  # a bot's click
    ]
    for url, ua, ip in plan:
        assert hit(client, url, ua=ua, ip=ip).status_code == (302 if "/c/" in url else 200)
    deliver(client, sent)
    wait_for(lambda: summary(client, SPRING), lambda s: s["clicks"] == 2 and s["bot_clicks"] == 1, 30)
    wait_for(lambda: summary(client, NEWSLETTER), lambda s: s["unique_opens"] == 1, 30)
    wait_for(lambda: summary(client, SECRET_CAMPAIGN, GLOBEX), lambda s: s["unique_opens"] == 1, 30)
    return Dataset(sent)


def deliver(client: httpx.Client, sent: Mapping[str, Mapping[str, Any]]) -> None:
    """Postmark's webhook, as Postmark calls it (basic auth in the URL pixelpipe gave): spring's messages
    delivered, but fay's, which bounced hard."""
    r = client.put("/v1/mail-services/postmark", json={}, headers=ACME)
    assert r.status_code in (200, 201), r.text
    url = httpx.URL(r.json()["ingest_url"])
    auth = postmark_auth(url.username, url.password)
    records = [
        postmark_delivery(message_id=f"pm-{who}", recipient=f"{who}@example.com", ids=(f"m-{who}", SPRING))
        for who in ("ann", "bob", "cat", "dan", "eve")
    ]
    records.append(postmark_bounce(1, message_id="pm-fay", email="fay@example.com", ids=("m-fay", SPRING)))
    for record in records:
        answer = client.post(path_of(str(url)), json=record, headers=auth)
        assert answer.status_code in (200, 202, 204), answer.text
    wait_for(lambda: summary(client, SPRING), lambda s: s.get("delivered") == 5, 30)
