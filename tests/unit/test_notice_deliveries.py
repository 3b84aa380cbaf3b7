"""Which webhook gets which notice, under which id and with which body."""

from __future__ import annotations

import orjson

from notices.deliveries import delivery_id, plan_deliveries
from tests.notice_samples import notice, webhook


def test_each_webhook_gets_the_events_it_asked_for_of_its_own_account() -> None:
    hooks = {
        "acme": [webhook("wh_all", "open", "click", "machine_open"), webhook("wh_first", "first_open")],
        "globex": [webhook("wh_other", "open", "click", account="globex")],
    }
    notices = [
        notice("m1", 1, first=True),
        notice("m1", 2),
        notice("m1", 3, kind="click"),
        notice("m1", 4, kind="machine_open"),
    ]
    deliveries = plan_deliveries(notices, lambda account: hooks.get(account, []))
    got = [(d.webhook_id, d.notice_id) for d in deliveries]
    assert got == [
        ("wh_all", "m1-1"),
        ("wh_first", "m1-1"),
        ("wh_all", "m1-2"),
        ("wh_all", "m1-3"),
        ("wh_all", "m1-4"),
    ]
    first = orjson.loads(deliveries[1].body)
    assert first["id"] == "m1-1"
    assert first["type"] == "open"  # first_open is a filter; the event is an open with data.first
    assert first["data"]["first"] is True
    assert first["created_at"] == "2023-11-14T22:13:20.501Z"
    assert set(first) == {"id", "type", "created_at", "data"}


def test_a_webhook_of_another_account_never_gets_a_notice_even_if_listed() -> None:
    stray = webhook("wh_globex", "open", account="globex")
    assert plan_deliveries([notice("m1", 1)], lambda _: [stray]) == []


def test_delivery_ids_are_deterministic_per_webhook_and_notice() -> None:
    assert delivery_id("wh_a", "h1") == delivery_id("wh_a", "h1")
    assert delivery_id("wh_a", "h1") != delivery_id("wh_b", "h1")
    assert delivery_id("wh_a", "h1") != delivery_id("wh_a", "h2")
    assert delivery_id("wh_a", "h1").startswith("dlv_")
