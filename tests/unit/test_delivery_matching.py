"""Matching a delivery event to its send (`deliveries.matching`'s pure core): the order of the ways, what a
match fills, why an unmatched event did not match, and which keys each way looks up."""

from __future__ import annotations

import pytest

from deliveries.matching import (
    NO_SEND_TO_RECIPIENT,
    NO_SEND_WITH_MESSAGE_ID,
    NO_SEND_WITH_PROVIDER_ID,
    NOTHING_TO_MATCH_BY,
    REASON_LABELS,
    Found,
    Send,
    match,
    message_keys,
    provider_keys,
    recipient_keys,
)
from deliveries.rows import dedup_token, first_of_each
from tests.deliveries_data import delivery

ANN = Send(campaign_id="spring", message_id="m-ann", recipient="ann@example.com")
BOB = Send(campaign_id="spring", message_id="m-bob", recipient="bob@example.com")
FOUND = Found(
    by_message_id={("acme", "m-ann"): ANN},
    by_provider_id={("acme", "sg-bob"): BOB},
    by_recipient={("acme", "spring", "bob@example.com"): BOB},
)


def test_our_message_id_matches_first_and_fills_campaign_and_recipient() -> None:
    m = match(delivery("e1", message_id="m-ann", provider_message_id="sg-bob"), FOUND)
    assert (m.matched_by, m.unmatched_reason) == ("message_id", "")
    assert (m.event.message_id, m.event.campaign_id, m.event.recipient) == (
        "m-ann",
        "spring",
        "ann@example.com",
    )


def test_an_unknown_message_id_falls_through_to_the_provider_id_then_the_recipient() -> None:
    by_provider = match(delivery("e1", message_id="m-gone", provider_message_id="sg-bob"), FOUND)
    assert (by_provider.matched_by, by_provider.event.message_id) == ("provider_message_id", "m-bob")
    by_recipient = match(
        delivery("e2", message_id="m-gone", campaign_id="spring", recipient=" Bob@Example.COM "), FOUND
    )
    assert (by_recipient.matched_by, by_recipient.event.message_id) == ("recipient", "m-bob")
    assert by_recipient.event.recipient == "bob@example.com"  # normalised, as the sends keep it


def test_the_events_own_recipient_is_kept_and_the_sends_campaign_wins() -> None:
    m = match(delivery("e1", message_id="m-ann", campaign_id="other", recipient="Ann+x@example.com"), FOUND)
    assert (m.event.campaign_id, m.event.recipient) == ("spring", "ann+x@example.com")


def test_another_accounts_send_never_matches() -> None:
    m = match(delivery("e1", account="globex", message_id="m-ann"), FOUND)
    assert (m.matched_by, m.unmatched_reason, m.event.message_id) == ("", NO_SEND_WITH_MESSAGE_ID, "")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"message_id": "m-gone", "provider_message_id": "sg-gone"}, NO_SEND_WITH_MESSAGE_ID),
        (
            {"provider_message_id": "sg-gone", "campaign_id": "spring", "recipient": "x@y.z"},
            NO_SEND_WITH_PROVIDER_ID,
        ),
        ({"campaign_id": "spring", "recipient": "carol@example.com"}, NO_SEND_TO_RECIPIENT),
        (
            {"recipient": "bob@example.com"},
            NOTHING_TO_MATCH_BY,
        ),  # no campaign: a recipient alone is not enough
        ({}, NOTHING_TO_MATCH_BY),
    ],
)
def test_an_unmatched_event_says_the_first_way_it_could_have_taken(
    fields: dict[str, str], reason: str
) -> None:
    m = match(delivery("e1", **fields), FOUND)
    assert (m.matched, m.matched_by, m.unmatched_reason, m.event.message_id) == (False, "", reason, "")
    assert reason in REASON_LABELS


def test_each_way_looks_up_only_what_the_ways_before_it_left() -> None:
    events = [
        delivery(
            "e1", message_id="m-ann", provider_message_id="sg-ann", campaign_id="spring", recipient="a@x"
        ),
        delivery(
            "e2", message_id="m-gone", provider_message_id="sg-bob", campaign_id="spring", recipient="b@x"
        ),
        delivery("e3", provider_message_id="sg-gone", campaign_id="fall", recipient="C@X"),
        delivery("e4", recipient="d@x"),
    ]
    assert message_keys(events) == {("acme", "m-ann"), ("acme", "m-gone")}
    assert provider_keys(events, FOUND) == {("acme", "sg-bob"), ("acme", "sg-gone")}
    assert recipient_keys(events, FOUND) == {("acme", "fall", "c@x")}


def test_a_batch_keeps_the_first_of_each_delivery_id_and_its_token_depends_on_them_in_order() -> None:
    one, two = delivery("e1"), delivery("e2")
    kept = first_of_each([match(e, FOUND) for e in (one, two, one)])
    assert [m.event.delivery_id for m in kept] == [one.delivery_id, two.delivery_id]
    token = dedup_token([one.delivery_id, two.delivery_id])
    assert (
        token
        == dedup_token([one.delivery_id, two.delivery_id])
        != dedup_token([two.delivery_id, one.delivery_id])
    )
    assert token.startswith("deliveries:")
