"""What the user sees of the mail services' delivery events, over real HTTP on a real chDB: campaign stats and
summary (counted per message by `api.sql.deliveries.RULES`), the campaign list, a message's detail and
timeline, a recipient's last delivery status, and `provider_message_id` at registration.

Delivery rows are inserted into ``deliveries`` directly, as the delivery loader stores them once matched
(message id, campaign id and recipient filled); opens come through the edge.

Campaign ``dlv``, 13 messages (the rule each shows):

    m1  delivered, opened                 delivered
    m2  delivered, the event replayed     delivered (once)
    m3  two hard bounces                  bounced hard (once)
    m4  soft bounce, then delivered       delivered
    m5  soft bounce                       bounced soft
    m6  deferred                          deferred
    m7  dropped                           dropped
    m8  delivered, complaint              delivered, a complaint
    m9  unsubscribe only                  delivered (inferred), an unsubscribe
    m10 opened; its delivered event comes later but happened before the open   delivered
    m11 nothing                           -
    m12 hard bounce, yet opened           delivered (inferred: the open proves it)
    m13 only an unmatched event about its recipient (no message id): counted nowhere
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.sql import reference
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.delivery_events import delivery_id
from schemas.store import Store
from tests.integration.helpers import embedded_env, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
COLUMNS = (
    "delivery_id", "account", "campaign_id", "message_id", "recipient", "provider", "provider_event_id",
    "provider_message_id", "event", "bounce_type", "smtp_status", "smtp_code", "diagnostic", "provider_type",
    "matched_by", "unmatched_reason", "occurred_at", "received_at",
)  # fmt: skip
SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def delivery(
    message: str, event: str, minutes: float, *, bounce: str = "", status: str = "", code: int = 0,
    diagnostic: str = "", event_id: str | None = None, campaign: str = "dlv", recipient: str | None = None,
) -> list[Any]:  # fmt: skip
    """A stored delivery row, as the loader writes a matched event ``minutes`` after the send."""
    provider_event_id = event_id or f"{message}-{event}-{minutes}"
    at = SENT + timedelta(minutes=minutes)
    return [
        delivery_id("acme", "sendgrid", provider_event_id), "acme", campaign, message,
        recipient if recipient is not None else f"{message}@example.org", "sendgrid", provider_event_id,
        f"sg-{message}", event, bounce, status, code, diagnostic, event, "message_id" if message else "",
        "" if message else "no_message", at, at + timedelta(seconds=5),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[tuple[httpx.Client, Store]]:
    env = embedded_env(
        tmp_path_factory.mktemp("data"), chdb_path, PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8,::1/128"
    )
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    store = components.store
    assert store is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=10, headers=ACME) as client:
        sent_at = SENT.isoformat()
        pixels = {}
        for i in range(1, 14):
            body = {"campaign_id": "dlv", "recipient": f"m{i}@example.org", "message_id": f"m{i}"}
            if i == 4:
                body["provider_message_id"] = "<20260101.abc@mg.example.com>"  # Mailgun's, with brackets
            r = client.post("/v1/messages", json={**body, "sent_at": sent_at})
            assert r.status_code == 201, r.text
            pixels[f"m{i}"] = r.json()["pixel_url"]
        r = client.post("/v1/messages", json={"campaign_id": "plain", "recipient": "p1@example.org"})
        plain = r.json()["pixel_url"]
        client.post("/v1/messages", json={"campaign_id": "plain", "recipient": "p2@example.org"})
        store.insert(
            "deliveries",
            COLUMNS,
            [
                delivery("m1", "delivered", 1),
                delivery("m2", "delivered", 1, event_id="m2-once"),
                delivery("m3", "bounce", 1, bounce="hard", status="5.1.1", code=550,
                         diagnostic="550 5.1.1 <m3@example.org>: user unknown"),
                delivery("m4", "bounce", 1, bounce="soft", status="4.2.2", code=452,
                         diagnostic="mailbox full"),
                delivery("m4", "delivered", 30),
                delivery("m5", "bounce", 2, bounce="soft", status="4.4.7", code=421),
                delivery("m6", "deferred", 3, status="4.7.1", code=421),
                delivery("m7", "dropped", 0.5),
                delivery("m8", "delivered", 1),
                delivery("m8", "complaint", 90),
                delivery("m9", "unsubscribe", 60),
                delivery("m12", "bounce", 1, bounce="hard", status="5.1.1", code=550),
                delivery("", "bounce", 1, bounce="hard", recipient="m13@example.org", campaign=""),
            ],
        )  # fmt: skip
        # A provider's retry of m2's event (the same delivery id), and m3's second hard bounce.
        store.insert(
            "deliveries",
            COLUMNS,
            [delivery("m2", "delivered", 1, event_id="m2-once"), delivery("m3", "bounce", 5, bounce="hard")],
        )
        for message, ip in (("m1", "81.2.69.160"), ("m10", "81.2.69.161"), ("m12", "89.160.20.128")):
            assert hit(client, pixels[message], ua=OUTLOOK, ip=ip).status_code == 200
        assert hit(client, plain, ua=OUTLOOK, ip="81.2.69.162").status_code == 200
        wait_for(lambda: client.get("/v1/campaigns/dlv/stats").json(), lambda s: s.get("opens") == 3, 10.0)
        wait_for(lambda: client.get("/v1/campaigns/plain/stats").json(), lambda s: s.get("opens") == 1, 10.0)
        # m10's delivered event arrives after its open, but happened a minute after the send.
        store.insert("deliveries", COLUMNS, [delivery("m10", "delivered", 1)])
        yield client, store
        store.command(f"DROP DATABASE IF EXISTS {store.database}")


def _json(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_campaign_stats_count_messages_by_their_delivery_status(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    for path in ("/v1/campaigns/dlv/stats", "/v1/campaigns/dlv/summary"):
        stats = _json(client, path)
        assert {k: stats[k] for k in (
            "sent", "delivered", "deferred", "bounced", "bounces", "dropped", "complaints", "unsubscribes",
            "delivered_inferred", "delivery_rate", "bounce_rate", "complaint_rate", "rate_basis",
            "delivery_data", "opens", "unique_opens", "open_rate", "unique_clicks", "click_rate",
        )} == {
            "sent": 13,
            "delivered": 7,  # m1 m2 m4 m8 m9 m10 m12
            "deferred": 1,
            "bounced": 2,
            "bounces": {"hard": 1, "soft": 1},
            "dropped": 1,
            "complaints": 1,
            "unsubscribes": 1,
            "delivered_inferred": 2,  # m9 (unsubscribe), m12 (opened despite its hard bounce)
            "delivery_rate": 0.5385,  # 7 / 13
            "bounce_rate": 0.1538,  # 2 / 13
            "complaint_rate": 0.1429,  # 1 / 7
            "rate_basis": "delivered",
            "delivery_data": True,
            "opens": 3,
            "unique_opens": 3,
            "open_rate": 0.4286,  # 3 / 7 delivered
            "unique_clicks": 0,
            "click_rate": 0.0,
        }, path  # fmt: skip


def test_the_rollups_equal_the_raw_reference(served: tuple[httpx.Client, Store]) -> None:
    client, store = served
    stats = _json(client, "/v1/campaigns/dlv/stats")
    q = reference.campaign_delivery(store.database, "acme", "dlv")
    (raw,) = store.query(q.sql, q.parameters)
    rolled = (
        stats["delivered"], stats["delivered_inferred"], stats["bounces"]["hard"], stats["bounces"]["soft"],
        stats["dropped"], stats["deferred"], stats["complaints"], stats["unsubscribes"],
        stats["sent"] - 13,  # every message was registered
    )  # fmt: skip
    assert tuple(raw) == rolled == (7, 2, 1, 1, 1, 1, 1, 1, 0)


def test_a_campaign_without_delivery_data_keeps_its_rates_over_sent(
    served: tuple[httpx.Client, Store],
) -> None:
    client, _ = served
    stats = _json(client, "/v1/campaigns/plain/stats")
    assert (stats["sent"], stats["unique_opens"], stats["open_rate"], stats["click_rate"]) == (2, 1, 0.5, 0.0)
    assert (stats["delivery_data"], stats["rate_basis"]) == (False, "sent")
    assert [stats[k] for k in ("delivered", "bounced", "complaints", "delivery_rate", "bounce_rate")] == [
        None
    ] * 5


def test_the_campaign_list_shows_delivery_rates(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    items = {c["campaign_id"]: c for c in _json(client, "/v1/campaigns")["items"]}
    dlv, plain = items["dlv"], items["plain"]
    assert (dlv["sent"], dlv["delivered"], dlv["bounced"], dlv["delivery_rate"]) == (13, 7, 2, 0.5385)
    assert (plain["sent"], plain["delivered"], plain["bounced"], plain["delivery_rate"]) == (
        2,
        None,
        None,
        None,
    )


def test_a_message_answers_its_delivery_status_and_provider_id(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    m4 = _json(client, "/v1/messages/m4")
    assert (m4["provider_message_id"], m4["delivery_status"], m4["bounce_type"]) == (
        "20260101.abc@mg.example.com", "delivered", None,
    )  # fmt: skip
    assert (m4["last_delivery"]["event"], m4["last_delivery"]["at"]) == (
        "delivered", (SENT + timedelta(minutes=30)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )  # fmt: skip
    m3 = _json(client, "/v1/messages/m3")
    assert (m3["provider_message_id"], m3["delivery_status"], m3["bounce_type"]) == (None, "bounced", "hard")
    assert m3["last_delivery"]["event"] == "bounce"
    expected = {"m5": "bounced", "m6": "deferred", "m7": "dropped", "m9": "delivered", "m12": "delivered"}
    assert {m: _json(client, f"/v1/messages/{m}")["delivery_status"] for m in expected} == expected
    m11 = _json(client, "/v1/messages/m11")
    assert (m11["delivery_status"], m11["last_delivery"]) == (None, None)


def test_the_timeline_shows_delivery_events_in_the_order_they_happened(
    served: tuple[httpx.Client, Store],
) -> None:
    client, _ = served
    # m10: the open came first, its delivered event later, but the delivery happened before the open.
    timeline = _json(client, "/v1/messages/m10/timeline")["timeline"]
    assert [(e["kind"], e.get("event"), e.get("verdict")) for e in timeline] == [
        ("delivery", "delivered", None), ("open", None, "human"),
    ]  # fmt: skip
    m4 = _json(client, "/v1/messages/m4/timeline")["timeline"]
    assert [
        (e["event"], e["bounce_type"], e["smtp_status"], e["smtp_code"], e["diagnostic"], e["provider"])
        for e in m4
    ] == [
        ("bounce", "soft", "4.2.2", 452, "mailbox full", "sendgrid"),
        ("delivered", None, None, None, None, "sendgrid"),
    ]
    # a replayed event is listed once
    assert [e["event"] for e in _json(client, "/v1/messages/m2/timeline")["timeline"]] == ["delivered"]


def test_a_recipient_carries_their_last_delivery_status(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    hard = _json(client, "/v1/recipients/m3@example.org")
    assert (hard["hard_bounced"], hard["complained"]) == (True, False)
    assert (hard["last_delivery"]["event"], hard["last_delivery"]["bounce_type"]) == ("bounce", "hard")
    assert hard["delivery_events"] == {"bounce_hard": 1}
    complained = _json(client, "/v1/recipients/M8@Example.org")
    assert (complained["hard_bounced"], complained["complained"]) == (False, True)
    assert complained["last_delivery"]["event"] == "complaint"
    assert complained["delivery_events"] == {"complaint": 1, "delivered": 1}
    quiet = _json(client, "/v1/recipients/m11@example.org")
    assert (quiet["last_delivery"], quiet["hard_bounced"], quiet["complained"]) == (None, False, False)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("has space", "provider_message_id"),
        ("", "provider_message_id"),
        ("x" * 257, "provider_message_id"),
        ("tab\there", "provider_message_id"),
    ],
)
def test_a_provider_message_id_that_cannot_be_one_is_refused(
    served: tuple[httpx.Client, Store], value: str, reason: str
) -> None:
    client, _ = served
    body = {"campaign_id": "bad", "recipient": "x@example.org", "provider_message_id": value}
    for path, payload in (
        ("/v1/messages", body),
        ("/v1/instrument", {**body, "html": "<p>hi</p>"}),
        ("/v1/messages/batch", {"messages": [body]}),
    ):
        r = client.post(path, json=payload)
        assert r.status_code == 400, (path, r.text)
        assert reason in r.json()["detail"], r.text


def test_the_batch_and_instrument_store_the_provider_message_id(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    batch = {"messages": [{"campaign_id": "reg", "recipient": "r1@example.org", "message_id": "r1",
                           "provider_message_id": "0100018c-ses-id-000000"}]}  # fmt: skip
    assert client.post("/v1/messages/batch", json=batch).status_code == 201
    instrument = {"campaign_id": "reg", "recipient": "r2@example.org", "message_id": "r2", "html": "<p/>",
                  "provider_message_id": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"}  # fmt: skip
    assert client.post("/v1/instrument", json=instrument).status_code == 201
    assert _json(client, "/v1/messages/r1")["provider_message_id"] == "0100018c-ses-id-000000"
    assert _json(client, "/v1/messages/r2")["provider_message_id"] == "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"


def test_the_openapi_document_names_the_new_fields(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    doc = _json(client, "/schema/openapi.json")
    body = doc["components"]["schemas"]["MessageIn"]["properties"]["provider_message_id"]
    assert "pattern" in str(body)
    assert "256" in str(body)
    stats = doc["paths"]["/v1/campaigns/{campaign_id}/stats"]["get"]
    assert "rate_basis" in stats["description"]


def test_the_delivery_series_counts_events_per_hour(served: tuple[httpx.Client, Store]) -> None:
    client, _ = served
    series = _json(client, "/v1/campaigns/dlv/delivery-series")["series"]
    hours = [row["t"] for row in series]
    assert hours == sorted(hours)
    assert all(t.endswith(":00:00.000Z") for t in hours)
    totals = {k: sum(row[k] for row in series) for k in series[0] if k != "t"}
    # events, not messages: m3's two hard bounces are two; m2's replayed event is one
    assert totals == {
        "delivered": 5, "deferred": 1, "bounce_hard": 3, "bounce_soft": 2, "dropped": 1, "complaint": 1,
        "unsubscribe": 1,
    }  # fmt: skip
    assert _json(client, "/v1/campaigns/plain/delivery-series")["series"] == []
    assert client.get("/v1/campaigns/nope/delivery-series").status_code == 404


def test_the_numbers_follow_new_events_and_erasure(served: tuple[httpx.Client, Store]) -> None:
    """The delivery numbers are counted again where the data changed (`api.delivery_numbers`): a new event,
    a replay, an erasure."""
    client, store = served
    for i in (1, 2, 3):
        body = {"campaign_id": "live", "recipient": f"l{i}@example.org", "message_id": f"l{i}"}
        assert client.post("/v1/messages", json={**body, "sent_at": SENT.isoformat()}).status_code == 201
    store.insert("deliveries", COLUMNS, [delivery("l1", "delivered", 1, campaign="live")])

    def numbers() -> tuple[Any, ...]:
        s = _json(client, "/v1/campaigns/live/stats")
        return s["delivered"], s["bounces"]["hard"], s["deferred"], s["delivery_rate"]

    assert numbers() == (1, 0, 0, 0.3333)
    store.insert(
        "deliveries",
        COLUMNS,
        [
            delivery("l2", "bounce", 2, bounce="hard", campaign="live"),
            delivery("l3", "deferred", 2, campaign="live"),
        ],
    )
    assert numbers() == (1, 1, 1, 0.3333)
    store.insert(
        "deliveries",
        COLUMNS,
        [delivery("l3", "delivered", 9, campaign="live"), delivery("l1", "delivered", 1, campaign="live")],
    )  # l3 delivered after its deferral; l1's event again
    assert numbers() == (2, 1, 0, 0.6667)
    r = client.delete("/v1/recipients/l3@example.org")
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["deliveries"] == 2
    s = _json(client, "/v1/campaigns/live/stats")
    assert (s["sent"], s["delivered"], s["bounces"]["hard"], s["deferred"]) == (2, 1, 1, 0)
