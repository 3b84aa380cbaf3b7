"""Reminders' pure core (issue 20): the duration a registration may ask and its bounds, what a reminder's time
decides (a click is an implied open; machine opens only are unknown), the one notice id per message, the
notice's public shape, webhooks' event filter, the live feed showing a reminder emitted twice once, and the
state ranks that keep a decision from being undone."""

from __future__ import annotations

import orjson
import pytest

from notices.deliveries import plan_deliveries
from notices.live import LiveFeed
from notices.reminder_making import DueReminder, reminder_notice
from schemas.notices import (
    NOTICE_TYPES,
    REMINDER_NOTICE_TYPES,
    WEBHOOK_EVENTS,
    Webhook,
    decode_notice_batch,
    encode_notice_batch,
    notice_data,
    wanted_by,
)
from schemas.reminders import (
    MAX_AFTER_S,
    NOT_OPENED,
    OPENED,
    UNKNOWN,
    BadReminder,
    ReminderState,
    Seen,
    decide,
    parse_after,
    reminder_notice_id,
)
from schemas.secret import Secret


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3d", 3 * 86_400),
        ("12h", 12 * 3_600),
        ("90m", 90 * 60),
        ("1m", 60),
        ("60s", 60),
        ("1d12h", 36 * 3_600),
        (" 2W ", 14 * 86_400),
        ("90d", MAX_AFTER_S),
    ],
)
def test_durations_are_read_in_seconds(text: str, seconds: int) -> None:
    assert parse_after(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not a duration"),
        ("3", "is not a duration"),
        ("d", "is not a duration"),
        ("3x", "is not a duration"),
        ("-3d", "is not a duration"),
        ("3.5d", "is not a duration"),
        ("3 d", "is not a duration"),
        ("P3D", "is not a duration"),
        ("1" * 40 + "d", "is not a duration"),
        ("59s", "is shorter than 1 minute (1m)"),
        ("0m", "is shorter than 1 minute (1m)"),
        ("91d", "is longer than 90 days (90d)"),
        ("90d1s", "is longer than 90 days (90d)"),
        ("9999999w", "is longer than 90 days (90d)"),
    ],
)
def test_bad_durations_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(BadReminder, match="remind_if_unopened_after") as caught:
        parse_after(text)
    assert says in str(caught.value)


def test_a_lower_floor_is_a_setting_and_never_below_a_second() -> None:
    assert parse_after("5s", min_s=1) == 5
    with pytest.raises(BadReminder, match=r"shorter than 5 seconds \(5s\)"):
        parse_after("4s", min_s=5)


@pytest.mark.parametrize(
    ("seen", "outcome"),
    [
        (Seen(), NOT_OPENED),
        (Seen(machine_opens=3), UNKNOWN),
        (Seen(human_opens=1), OPENED),
        (Seen(human_opens=1, machine_opens=2), OPENED),
        (Seen(human_clicks=1), OPENED),  # a click proves an open the pixel never saw: an implied open
        (Seen(human_clicks=1, machine_opens=1), OPENED),
    ],
)
def test_a_reminders_time_decides_from_what_came_before_it(seen: Seen, outcome: str) -> None:
    assert decide(seen) == outcome


def test_one_notice_id_per_message() -> None:
    assert reminder_notice_id("acme", "m1") == reminder_notice_id("acme", "m1")
    assert reminder_notice_id("acme", "m1") != reminder_notice_id("acme", "m2")
    assert reminder_notice_id("acme", "m1") != reminder_notice_id("globex", "m1")
    assert reminder_notice_id("acme", "m1").startswith("rem_")


def test_a_later_state_outranks_an_earlier_one() -> None:
    ranks = {state: state.rank for state in ReminderState}
    assert ranks[ReminderState.PENDING] < ranks[ReminderState.DECIDED] < ranks[ReminderState.SENT]
    assert ranks[ReminderState.OPENED] > ranks[ReminderState.DECIDED]


def due(message: str = "m1", outcome: str = NOT_OPENED, machine_opens: int = 0) -> DueReminder:
    return DueReminder(
        account="acme",
        campaign_id="spring",
        message_id=message,
        recipient_tag="00" * 8,
        registered_at_ms=1_700_000_000_000,
        sent_at_ms=1_700_000_000_000,
        due_at_ms=1_700_259_200_000,
        state="decided",
        outcome=outcome,
        machine_opens=machine_opens,
        decided_at_ms=1_700_259_260_000,
    )


def test_the_notice_says_the_outcome_and_when_and_nothing_of_a_hit() -> None:
    n = reminder_notice(due(outcome=UNKNOWN, machine_opens=2))
    assert n.type == "unknown"
    assert n.id == reminder_notice_id("acme", "m1")
    assert notice_data(n) == {
        "id": n.id,
        "type": "unknown",
        "account": "acme",
        "campaign_id": "spring",
        "message_id": "m1",
        "recipient": None,  # filled from the send by the message lookup
        "at": "2023-11-17T22:13:20.000Z",  # when it was due, as every notice has its `at`
        "outcome": "unknown",
        "registered_at": "2023-11-14T22:13:20.000Z",
        "sent_at": "2023-11-14T22:13:20.000Z",
        "due_at": "2023-11-17T22:13:20.000Z",
        "machine_opens": 2,
    }
    # the same decision makes the same notice, on the wire too
    assert reminder_notice(due(outcome=UNKNOWN, machine_opens=2)) == n
    assert decode_notice_batch(encode_notice_batch([n])) == ([n], [])


def test_webhooks_subscribe_to_reminders_by_type() -> None:
    assert {"not_opened", "unknown"} <= set(WEBHOOK_EVENTS)
    assert REMINDER_NOTICE_TYPES <= NOTICE_TYPES
    n = reminder_notice(due())
    assert wanted_by(["not_opened"], n)
    assert not wanted_by(["unknown", "open", "first_open"], n)
    hooks = [
        Webhook("acme", "wh_1", "https://a.example/h", ("not_opened",), Secret("s")),
        Webhook("acme", "wh_2", "https://a.example/i", ("open",), Secret("s")),
    ]
    [delivery] = plan_deliveries([n], lambda account: hooks if account == "acme" else [])
    assert delivery.webhook_id == "wh_1"
    assert orjson.loads(delivery.body)["id"] == n.id
    assert orjson.loads(delivery.body)["data"]["outcome"] == "not_opened"


async def test_the_live_feed_shows_a_reminder_emitted_twice_once() -> None:
    feed = LiveFeed(ring_size=10, heartbeat_s=5)
    first, other = reminder_notice(due("m1")), reminder_notice(due("m2", UNKNOWN, 1))
    feed.accept_now([first])
    feed.accept_now([first, other])  # emitted again after a crash, then the next one
    assert feed.held("acme") == 2
    stream = feed.stream("acme", last_event_id="0-0", types=REMINDER_NOTICE_TYPES)
    items = [await anext(stream) for _ in range(4)]  # connected, gap, the two reminders
    assert [(i.event, orjson.loads(i.data or b"{}").get("message_id")) for i in items[2:]] == [
        ("not_opened", "m1"),
        ("unknown", "m2"),
    ]
    await stream.aclose()
