from __future__ import annotations

from processors.window import BURST, ClickBurstWindow, Released
from schemas.verdicts import Classification, Verdict

HUMAN = Classification(Verdict.HUMAN, "ua:client")
BOT = Classification(Verdict.BOT, "ua:http_library")
KEY = ("acme", "m1")


def admit(
    w: ClickBurstWindow[str], name: str, at: int, link: int, c: Classification = HUMAN, *, offset: int = 0
) -> list[Released[str]]:
    return w.admit(
        key=KEY, at_ms=at, link_index=link, item=name, classification=c, partition=0, offset=offset
    )


def test_a_lone_click_is_held_then_released_as_it_was() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    assert admit(w, "a", 1000, 0) == []
    assert w.held_offsets() == {0: 0}
    assert w.release(2000, caught_up=True) == []
    released = w.release(2600, caught_up=True)
    assert [(r.item, r.classification) for r in released] == [("a", HUMAN)]
    assert w.held_offsets() == {}


def test_distinct_links_within_the_window_are_a_burst() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    assert admit(w, "a", 1000, 0, offset=1) == []
    # the second distinct link reveals the burst: it is not held, and the held first click is now a bot
    out = admit(w, "b", 1150, 1, offset=2) + admit(w, "c", 1300, 2, offset=3)
    assert [(r.item, r.classification) for r in out] == [("b", BURST), ("c", BURST)]
    assert w.held_offsets() == {0: 1}
    released = w.release(5000, caught_up=True)
    assert [(r.item, r.classification) for r in released] == [("a", BURST)]


def test_the_same_link_twice_is_not_a_burst() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    admit(w, "a", 1000, 0)
    admit(w, "a2", 1200, 0)
    assert [r.classification for r in w.release(5000, caught_up=True)] == [HUMAN, HUMAN]


def test_links_a_minute_apart_are_a_person() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    admit(w, "a", 1000, 1)
    assert [r.item for r in w.release(3000, caught_up=True)] == ["a"]
    admit(w, "b", 56_000, 2)
    assert [(r.item, r.classification) for r in w.release(60_000, caught_up=True)] == [("b", HUMAN)]


def test_bot_clicks_pass_at_once_but_still_reveal_a_burst() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    assert admit(w, "a", 1000, 0) == []
    out = admit(w, "scanner", 1100, 1, BOT)
    assert [(r.item, r.classification) for r in out] == [("scanner", BOT)]
    assert [(r.item, r.classification) for r in w.release(5000, caught_up=True)] == [("a", BURST)]


def test_event_time_watermark_releases_during_a_replay() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    admit(w, "a", 1000, 0)
    admit(w, "other-message-open-later", 1000, 0)  # same link: no burst
    assert w.release(0, caught_up=False) == []  # wall clock unknown, watermark not past
    w.admit(
        key=("acme", "m2"), at_ms=3000, link_index=0, item="z", classification=HUMAN, partition=0, offset=9
    )
    assert [r.item for r in w.release(0, caught_up=False)] == ["a", "other-message-open-later"]


def test_zero_window_holds_nothing() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(0)
    assert [r.item for r in admit(w, "a", 1000, 0)] == ["a"]


def test_flush_all_releases_everything_held() -> None:
    w: ClickBurstWindow[str] = ClickBurstWindow(1500)
    admit(w, "a", 1000, 0)
    assert [r.item for r in w.flush_all()] == ["a"]
    assert len(w) == 0
