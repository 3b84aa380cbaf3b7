"""Sample notices, webhooks and stored hits for the notice stage's tests (`notices/`)."""

from __future__ import annotations

from processors.geo import Geo
from processors.pipeline import ProcessedHit
from processors.useragent import Agent
from schemas.events import RawHit
from schemas.notices import Notice, Webhook
from schemas.secret import Secret
from schemas.verdicts import Classification, Verdict
from tests.notice_data import open_notice

SECRET = "whsec_unit-test-secret"


def notice(
    message: str, seq: int, *, kind: str = "open", first: bool = False, account: str = "acme"
) -> Notice:
    return open_notice(
        message,
        seq,
        type=kind,
        account=account,
        verdict="machine" if kind == "machine_open" else "human",
        first=first,
        link_index=0 if kind == "click" else -1,
        url="https://example.com/sale" if kind == "click" else "",
    )


def webhook(
    webhook_id: str, *events: str, account: str = "acme", url: str = "http://receiver/hook"
) -> Webhook:
    return Webhook(account, webhook_id, url, events, Secret(SECRET))


def stored_hit(
    hit_id: str, verdict: Verdict = Verdict.HUMAN, *, kind: str = "open", message: str = "m1"
) -> tuple[ProcessedHit, Classification]:
    hit = RawHit(
        hit_id=hit_id,
        kind=kind,  # type: ignore[arg-type]
        received_at_ms=1_700_000_000_000,
        ip="81.2.69.160",
        user_agent="Mozilla/5.0",
        token_ok=verdict is not Verdict.INVALID,
        account="acme",
        campaign_id="spring",
        message_id=message,
        sent_at=1_699_999_000,
        link_index=1 if kind == "click" else -1,
        url="https://example.com/b" if kind == "click" else "",
    )
    c = Classification(verdict, "why")
    agent = Agent("Apple Mail", "16", "iOS", "mobile")
    return ProcessedHit(hit, "memory:0:1", Geo(country="GB"), agent, c), c
