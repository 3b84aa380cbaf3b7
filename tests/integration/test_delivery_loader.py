"""The delivery loader on real chDB: delivery events matched to their sends by each way, unmatched ones
stored with their reason and counted, a provider's replay counted once in the rows and the rollups,
do-not-track recipients dropped, a malformed record dead-lettered, and the in-process delivery bus's bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bus.port import BusRecord
from deliveries.bus import MemoryDeliveryBus
from deliveries.loader import DeliveryLoader
from deliveries.matching import NOTHING_TO_MATCH_BY
from deliveries.port import BusUnavailable
from pixelpipe.app import ROLES, build_components
from pixelpipe.settings import Settings
from schemas.delivery_events import DeliveryEvent, encode_deliveries
from schemas.store import Store
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring
from tests.deliveries_data import OCCURRED_MS, delivery
from tests.integration.helpers import CollectedDeadLetters, ListSource

KEYS = Keyring(((1, b"k" * 32),))


def register(store: Store, *sends: tuple[str, str, str, str, int]) -> None:
    """Sends as `POST /v1/messages` stores them: (campaign, message_id, recipient, provider id, sent at s)."""
    rows = [
        ["acme", c, m, r, p, sent_s * 1000, sent_s * 1000, []] for c, m, r, p, sent_s in sends
    ]  # fmt: skip
    columns = ["account", "campaign_id", "message_id", "recipient", "provider_message_id", "sent_at",
               "registered_at", "links"]  # fmt: skip
    store.insert("sends", columns, rows)


def records(*batches: Sequence[DeliveryEvent] | bytes) -> list[BusRecord]:
    return [
        BusRecord(b if isinstance(b, bytes) else encode_deliveries(b), 0, offset, "deliveries")
        for offset, b in enumerate(batches)
    ]


async def load(store: Store, source: ListSource, **options: Any) -> list[Sequence[DeliveryEvent]]:
    """Run a loader until the source is read and committed; what it handed to ``on_stored``."""
    handed: list[Sequence[DeliveryEvent]] = []
    end = len(source.records)
    loader = DeliveryLoader(
        source=source, store=store, flush_interval_s=0.01, on_stored=handed.append, **options
    )
    task = asyncio.create_task(loader.run())
    for _ in range(500):
        if source.commits and source.commits[-1].get(0) == end:
            break
        await asyncio.sleep(0.01)
    loader.stop()
    await asyncio.wait_for(task, 10)
    assert source.commits[-1] == {0: end}
    return handed


def stored(store: Store) -> dict[str, tuple[str, str, str, str, str, str]]:
    """provider_event_id -> (message_id, campaign_id, recipient, event, matched_by, unmatched_reason)."""
    rows = store.query(
        f"SELECT provider_event_id, message_id, campaign_id, recipient, event, matched_by, unmatched_reason "
        f"FROM {store.database}.deliveries FINAL"
    )
    return {r[0]: tuple(r[1:]) for r in rows}  # type: ignore[misc]


def rollup_messages(store: Store, campaign: str) -> dict[str, int]:
    """Distinct messages per delivery event in a campaign's rollups, read as sets (like `api.sql.exact`)."""
    rows = store.query(
        f"""SELECT who, length(groupUniqArrayArray(messages)) FROM {store.database}.rollups
            WHERE account = 'acme' AND campaign_id = {{c:String}} AND rollup = 'messages'
                AND kind = 'delivery'
            GROUP BY who""",
        {"c": campaign},
    )
    return {str(who): int(n) for who, n in rows}


def unmatched_count(provider: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "pixelpipe_delivery_events_unmatched_total", {"provider": provider, "reason": reason}
    )
    return value or 0.0


SENDS = [
    ("spring", "m-ann", "ann@example.com", "sg-ann", 1_763_900_000),
    ("spring", "m-bob", "bob@example.com", "sg-bob", 1_763_900_000),
    ("spring", "m-bob-2", "bob@example.com", "", 1_763_950_000),  # bob mailed again: the latest send
    ("fall", "m-cy", "cy@example.com", "", 1_763_900_000),
]


async def test_events_are_matched_by_each_way_and_the_rest_stored_unmatched_with_why(store: Store) -> None:
    register(store, *SENDS)
    before = (unmatched_count("mailgun", "message_id"), unmatched_count("mailgun", "nothing"))
    events = [
        delivery("by-id", message_id="m-ann"),  # SendGrid custom args
        delivery("by-provider-id", provider_message_id="sg-bob", event="bounce", bounce_type="hard"),
        delivery("by-recipient", campaign_id="spring", recipient="BOB@example.com", event="complaint"),
        delivery("unknown-id", provider="mailgun", message_id="m-nobody", recipient="zed@example.com"),
        delivery("nothing", provider="mailgun", recipient="zed@example.com"),
        # an open before its delivered is no matter: this one's send is found like any other
        delivery("late-deferred", message_id="m-cy", event="deferred", occurred_at_ms=OCCURRED_MS - 60_000),
    ]
    handed = await load(store, ListSource(records(events[:3], events[3:])))
    assert stored(store) == {
        "by-id": ("m-ann", "spring", "ann@example.com", "delivered", "message_id", ""),
        "by-provider-id": ("m-bob", "spring", "bob@example.com", "bounce", "provider_message_id", ""),
        "by-recipient": ("m-bob-2", "spring", "bob@example.com", "complaint", "recipient", ""),
        "unknown-id": ("", "", "zed@example.com", "delivered", "", "no send with this message_id"),
        "nothing": ("", "", "zed@example.com", "delivered", "", NOTHING_TO_MATCH_BY),
        "late-deferred": ("m-cy", "fall", "cy@example.com", "deferred", "message_id", ""),
    }  # fmt: skip
    assert (unmatched_count("mailgun", "message_id"), unmatched_count("mailgun", "nothing")) == (
        before[0] + 1,
        before[1] + 1,
    )
    # only matched events are handed on (to the notices), filled from their sends
    assert sorted(e.provider_event_id for batch in handed for e in batch) == [
        "by-id", "by-provider-id", "by-recipient", "late-deferred"
    ]  # fmt: skip
    assert rollup_messages(store, "spring") == {"delivered": 1, "bounce": 1, "complaint": 1}
    assert rollup_messages(store, "fall") == {"deferred": 1}


async def test_a_replayed_event_in_another_batch_counts_once(store: Store) -> None:
    register(store, *SENDS)
    first = [delivery(f"d{i}", message_id=m) for i, m in enumerate(["m-ann", "m-bob", "m-cy"])]
    await load(store, ListSource(records(first)))
    # The provider retries the first two (with a new one) in another request: another batch, another token.
    again = [*first[:2], delivery("d9", message_id="m-bob-2"), first[0]]
    await load(store, ListSource(records(again)))
    db = store.database
    [(rows, unique)] = store.query(f"SELECT count(), uniqExact(delivery_id) FROM {db}.deliveries")
    assert unique == 4
    assert rows in (4, 6)  # 6 until the ReplacingMergeTree merges the repeats away
    assert rollup_messages(store, "spring") == {"delivered": 3}
    assert rollup_messages(store, "fall") == {"delivered": 1}
    # the same batch read again (a crash before its commit) is deduplicated by its token
    await load(store, ListSource(records(again)))
    [(rows_after,)] = store.query(f"SELECT count() FROM {db}.deliveries")
    assert rows_after == rows


async def test_events_of_do_not_track_recipients_are_dropped_by_their_own_or_their_sends_recipient(
    store: Store,
) -> None:
    register(store, *SENDS)
    dnt = DoNotTrack(KEYS)
    dnt.add("acme", "Ann@Example.com")
    before = REGISTRY.get_sample_value("pixelpipe_delivery_events_suppressed_total") or 0.0
    events = [
        delivery("ann-own", recipient="ann@example.com", campaign_id="spring"),
        delivery("ann-by-send", message_id="m-ann"),  # no recipient of its own: its send's
        delivery("bob", message_id="m-bob"),
    ]
    handed = await load(store, ListSource(records(events)), do_not_track=dnt)
    assert set(stored(store)) == {"bob"}
    assert REGISTRY.get_sample_value("pixelpipe_delivery_events_suppressed_total") == before + 2
    assert [e.provider_event_id for batch in handed for e in batch] == ["bob"]


async def test_a_malformed_record_goes_to_the_dead_letters_and_the_rest_is_stored(store: Store) -> None:
    register(store, *SENDS)
    dead = CollectedDeadLetters()
    bad_event, not_json = b'{"v": 1, "events": [{"delivery_id": 7}]}', b"not json"
    ok_1, ok_2 = [delivery("ok-1", message_id="m-ann")], [delivery("ok-2", message_id="m-bob")]
    source = ListSource(records(ok_1, bad_event, not_json, ok_2))
    await load(store, source, dead_letters=dead)
    assert set(stored(store)) == {"ok-1", "ok-2"}
    assert [(r.offset, reason.split(":")[0]) for r, reason in dead.letters] == [
        (1, "not delivery events"),
        (2, "not JSON"),
    ]


async def test_the_in_process_bus_takes_a_request_whole_or_refuses_it_and_the_loader_drains_it(
    store: Store,
) -> None:
    register(store, *SENDS)
    bus = MemoryDeliveryBus(capacity=3)
    await bus.publish([delivery("a", message_id="m-ann"), delivery("b", message_id="m-bob")])
    with pytest.raises(BusUnavailable):
        await bus.publish([delivery("c", message_id="m-cy"), delivery("d", message_id="m-cy")])
    assert bus.depth == 2
    loader = DeliveryLoader(source=bus, store=store, flush_interval_s=0.01, drain_on_stop=True)
    task = asyncio.create_task(loader.run())
    await bus.publish([delivery("c", message_id="m-cy")])
    loader.stop()  # the in-process bus cannot replay: what it took is stored before the loop ends
    await asyncio.wait_for(task, 10)
    assert set(stored(store)) == {"a", "b", "c"}
    with pytest.raises(BusUnavailable):  # stopped: refused, never taken and lost
        await bus.publish([delivery("e", message_id="m-cy")])


async def test_one_process_wires_the_in_process_queue_as_the_ingests_publisher_and_the_loaders_source(
    settings: Settings, store: Store
) -> None:
    register(store, *SENDS)
    c = build_components(settings, frozenset(ROLES))  # its own store (closed by its stop), same database
    assert c.delivery_publisher is not None
    assert c.delivery_loader is not None
    handed: list[Sequence[DeliveryEvent]] = []
    c.on_deliveries_stored.append(handed.append)
    await c.start()
    try:
        assert c.readiness()["delivery_loader"] is True
        await c.delivery_publisher.publish([delivery("w1", message_id="m-ann"), delivery("w2")])
        for _ in range(500):
            if len(stored(store)) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await c.stop()
    assert stored(store)["w1"][4] == "message_id"
    assert [e.provider_event_id for batch in handed for e in batch] == ["w1"]
