"""Implied opens and the MPP-adjusted open rate over real HTTP on a real chDB (issue 20): messages registered
through the API, pixels and clicks through the edge (real classification), campaign stats and summary, with
and without the machine-open switch and with delivery data, and a message's detail.

Campaign ``rates``, 7 messages, no delivery data:

    m-human          a person's open                              pixel open
    m-mpp            Apple MPP prefetch only                      MPP-only
    m-both           Apple MPP prefetch, then a person's open     pixel open
    m-click          a person's click, no open of any kind        implied open
    m-machine-click  Gmail's prefetch, then a person's click      neither (the pixel loaded)
    m-mpp-click      Apple MPP prefetch, then a person's click    MPP-only (left out, click or not)
    m-none           nothing                                      -

Campaign ``rates-dlv``, 4 messages, with delivery events (rates over delivered):

    d-human      a person's open          delivered (inferred), pixel open
    d-mpp        Apple MPP prefetch only  delivered (inferred), MPP-only
    d-delivered  a delivered event        delivered
    d-bounced    a hard bounce            bounced
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from schemas.delivery_events import delivery_id
from tests.integration.helpers import BROWSER, embedded_env, hit, wait_for
from tests.serving import serving

ACME = {"Authorization": "Bearer acme-key-123"}
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
APPLE_MPP = ("Mozilla/5.0", "17.58.63.200")
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0",
    "66.102.6.15",
)
PERSON = (APPLE_MAIL, "81.2.69.160")
CLICKER = (BROWSER, "81.2.69.161")
LINK = "https://shop.example.com/a"
SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
REGISTERED: dict[str, dict[str, Any]] = {}  # message id -> its registration's answer (pixel and link URLs)
DELIVERY_COLUMNS = (
    "delivery_id", "account", "campaign_id", "message_id", "recipient", "provider", "provider_event_id",
    "provider_message_id", "event", "bounce_type", "smtp_status", "smtp_code", "diagnostic", "provider_type",
    "matched_by", "unmatched_reason", "occurred_at", "received_at",
)  # fmt: skip


def _delivery(message: str, event: str, bounce: str = "") -> list[Any]:
    at = SENT + timedelta(minutes=1)
    event_id = f"{message}-{event}"
    return [
        delivery_id("acme", "sendgrid", event_id), "acme", "rates-dlv", message, f"{message}@example.org",
        "sendgrid", event_id, f"sg-{message}", event, bounce, "", 0, "", event, "message_id", "", at,
        at + timedelta(seconds=5),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[httpx.Client]:
    env = embedded_env(
        tmp_path_factory.mktemp("data"), chdb_path, PIXELPIPE_TRUSTED_PROXIES="127.0.0.0/8,::1/128"
    )
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    store = components.store
    assert store is not None
    with serving(app) as base, httpx.Client(base_url=base, timeout=10, headers=ACME) as client:
        sent = REGISTERED
        messages = [
            ("rates", m) for m in ("human", "mpp", "both", "click", "machine-click", "mpp-click", "none")
        ]
        messages += [("rates-dlv", m) for m in ("human", "mpp", "delivered", "bounced")]
        for campaign, name in messages:
            message_id = f"{'d' if campaign == 'rates-dlv' else 'm'}-{name}"
            body = {
                "campaign_id": campaign,
                "message_id": message_id,
                "recipient": f"{message_id}@example.org",
                "links": [LINK],
                "sent_at": SENT.isoformat(),
            }
            r = client.post("/v1/messages", json=body)
            assert r.status_code == 201, r.text
            sent[message_id] = r.json()
        store.insert(
            "deliveries",
            DELIVERY_COLUMNS,
            [_delivery("d-delivered", "delivered"), _delivery("d-bounced", "bounce", "hard")],
        )

        def pixel(m: str) -> str:
            return str(sent[m]["pixel_url"])

        def click(m: str) -> str:
            return str(sent[m]["links"][LINK])

        plan = [
            (pixel("m-human"), *PERSON),
            (pixel("m-mpp"), *APPLE_MPP),
            (pixel("m-both"), *APPLE_MPP),
            (pixel("m-both"), *PERSON),
            (click("m-click"), *CLICKER),
            (pixel("m-machine-click"), *GMAIL_PREFETCH),
            (click("m-machine-click"), *CLICKER),
            (pixel("m-mpp-click"), *APPLE_MPP),
            (click("m-mpp-click"), *CLICKER),
            (pixel("d-human"), *PERSON),
            (pixel("d-mpp"), *APPLE_MPP),
        ]
        for url, ua, ip in plan:
            assert hit(client, url, ua=ua, ip=ip).status_code == (302 if "/c/" in url else 200)
        wait_for(
            lambda: _json(client, "/v1/campaigns/rates/summary", include_machine="true"),
            lambda s: (s["opens"], s["clicks"]) == (6, 3),
            30,
        )
        wait_for(
            lambda: _json(client, "/v1/campaigns/rates-dlv/stats"), lambda s: s["machine_opens"] == 1, 30
        )
        yield client
        store.command(f"DROP DATABASE IF EXISTS {store.database}")


def _json(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


FIELDS = (
    "sent", "opens", "unique_opens", "unique_pixel_opens", "implied_opens", "open_rate",
    "unique_machine_opens", "unique_clicks", "mpp_only_messages", "mpp_adjusted_open_rate",
)  # fmt: skip


def test_implied_opens_count_as_opened_and_mpp_only_messages_leave_the_adjusted_rate(
    served: httpx.Client,
) -> None:
    for path in ("/v1/campaigns/rates/stats", "/v1/campaigns/rates/summary"):
        stats = _json(served, path)
        assert {k: stats[k] for k in FIELDS} == {
            "sent": 7,
            "opens": 2,  # pixel loads by people: m-human, m-both
            "unique_opens": 3,  # m-human, m-both, and m-click by implication
            "unique_pixel_opens": 2,
            "implied_opens": 1,  # m-click only: m-machine-click's and m-mpp-click's pixels loaded
            "open_rate": 0.4286,  # 3 / 7
            "unique_machine_opens": 4,
            "unique_clicks": 3,
            "mpp_only_messages": 2,  # m-mpp, m-mpp-click (m-both has a person's open)
            "mpp_adjusted_open_rate": 0.6,  # 3 / (7 - 2)
        }, path
        assert stats["click_rate"] == 0.4286


def test_the_machine_switch_counts_machine_opens_but_not_in_the_adjusted_rate(served: httpx.Client) -> None:
    machine = _json(served, "/v1/campaigns/rates/summary", include_machine="true")
    assert {k: machine[k] for k in FIELDS} == {
        "sent": 7,
        "opens": 6,  # 2 by people, 4 by machines
        "unique_opens": 6,  # 5 messages with an open of any kind, and m-click
        "unique_pixel_opens": 5,
        "implied_opens": 1,
        "open_rate": 0.8571,
        "unique_machine_opens": 4,
        "unique_clicks": 3,
        "mpp_only_messages": 2,
        "mpp_adjusted_open_rate": 0.6,  # people's opens only, whatever the switch says
    }


def test_with_delivery_data_the_rates_are_over_delivered(served: httpx.Client) -> None:
    for path in ("/v1/campaigns/rates-dlv/stats", "/v1/campaigns/rates-dlv/summary"):
        stats = _json(served, path)
        assert stats["rate_basis"] == "delivered"
        assert (stats["sent"], stats["delivered"], stats["bounced"]) == (4, 3, 1), path
        assert (stats["unique_opens"], stats["implied_opens"], stats["mpp_only_messages"]) == (1, 0, 1)
        assert stats["open_rate"] == 0.3333  # 1 / 3 delivered
        assert stats["mpp_adjusted_open_rate"] == 0.5  # 1 / (3 delivered - 1 MPP-only)


def test_a_message_clicked_without_an_open_says_it_was_opened_by_implication(served: httpx.Client) -> None:
    detail = {
        m: _json(served, f"/v1/messages/{m}") for m in ("m-human", "m-click", "m-machine-click", "m-none")
    }
    assert {m: (d["opens"], d["clicks"], d["opened"], d["open_implied"]) for m, d in detail.items()} == {
        "m-human": (1, 0, True, False),
        "m-click": (0, 1, True, True),
        "m-machine-click": (0, 1, False, False),  # its pixel loaded: a machine-only open, not implied
        "m-none": (0, 0, False, False),
    }


def test_the_reports_summary_carries_them(served: httpx.Client) -> None:
    report = _json(served, "/v1/campaigns/rates/report")
    stats = _json(served, "/v1/campaigns/rates/summary")
    assert {k: report["summary"][k] for k in FIELDS} == {k: stats[k] for k in FIELDS}
    assert (report["summary"]["implied_opens"], report["summary"]["mpp_adjusted_open_rate"]) == (1, 0.6)


def test_the_campaign_list_counts_implied_opens_as_the_summary_does(served: httpx.Client) -> None:
    listed = {c["campaign_id"]: c for c in _json(served, "/v1/campaigns")["items"]}
    for campaign_id in ("rates", "rates-dlv"):
        stats = _json(served, f"/v1/campaigns/{campaign_id}/summary")
        fields = ("unique_opens", "implied_opens", "open_rate")
        assert {k: listed[campaign_id][k] for k in fields} == {k: stats[k] for k in fields}, campaign_id
    assert (listed["rates"]["unique_opens"], listed["rates"]["implied_opens"]) == (3, 1)


def test_new_opens_are_counted_where_they_came(served: httpx.Client) -> None:
    """Last (it adds opens): a person opens m-mpp and m-click's pixel loads, so m-mpp is no longer MPP-only
    and m-click no longer implied; the campaign's numbers are counted again (`api.open_numbers`: the buckets
    the new opens touched)."""
    for m in ("m-mpp", "m-click"):
        assert hit(served, str(REGISTERED[m]["pixel_url"]), ua=PERSON[0], ip=PERSON[1]).status_code == 200
    stats, _ = wait_for(
        lambda: _json(served, "/v1/campaigns/rates/stats"), lambda s: s["unique_pixel_opens"] == 4, 30
    )
    assert {k: stats[k] for k in FIELDS} == {
        "sent": 7,
        "opens": 4,
        "unique_opens": 4,  # m-human, m-both, m-mpp, m-click: every one by its pixel now
        "unique_pixel_opens": 4,
        "implied_opens": 0,
        "open_rate": 0.5714,
        "unique_machine_opens": 4,
        "unique_clicks": 3,
        "mpp_only_messages": 1,  # m-mpp-click
        "mpp_adjusted_open_rate": 0.6667,  # 4 / (7 - 1)
    }
