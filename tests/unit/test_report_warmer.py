"""The report warmer's bookkeeping (`api.report_warmer`): what it computes each round, what it forgets, and
that a failing report neither stops the others nor the thread."""

from __future__ import annotations

import threading

from api.report_warmer import MAX_ASKS, ReportAsk, ReportWarmer


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warmer(computed: list[ReportAsk], clock: _Clock, fail: set[str] | None = None) -> ReportWarmer:
    def compute(ask: ReportAsk) -> object:
        if fail and ask.campaign_id in fail:
            raise RuntimeError("store gone")
        computed.append(ask)
        return {}

    return ReportWarmer(compute, list, interval_s=0.01, keep_asking_s=900.0, clock=clock)


def test_each_report_asked_lately_is_computed_once_a_round() -> None:
    computed: list[ReportAsk] = []
    clock = _Clock()
    warmer = _warmer(computed, clock)
    a, b = ReportAsk("acme", "launch"), ReportAsk("acme", "launch", include_machine=True, tz="Europe/London")
    warmer.asked(a)
    warmer.asked(b)
    warmer.asked(a)  # asked again: still one
    assert warmer.run_once() == 2
    assert computed == [b, a]  # the least recently asked first


def test_a_report_nobody_asked_for_in_the_window_is_forgotten() -> None:
    computed: list[ReportAsk] = []
    clock = _Clock()
    warmer = _warmer(computed, clock)
    old, new = ReportAsk("acme", "old"), ReportAsk("acme", "new")
    warmer.asked(old)
    clock.now += 600
    warmer.asked(new)
    clock.now += 301  # old: 901 s since asked; new: 301 s
    assert warmer.due() == [new]
    clock.now += 600
    assert warmer.due() == []


def test_at_most_max_asks_are_kept_the_most_recent() -> None:
    computed: list[ReportAsk] = []
    warmer = _warmer(computed, _Clock())
    for i in range(MAX_ASKS + 5):
        warmer.asked(ReportAsk("acme", f"c{i}"))
    due = warmer.due()
    assert len(due) == MAX_ASKS
    assert due[0].campaign_id == "c5"
    assert due[-1].campaign_id == f"c{MAX_ASKS + 4}"


def test_a_failing_report_does_not_stop_the_others() -> None:
    computed: list[ReportAsk] = []
    warmer = _warmer(computed, _Clock(), fail={"broken"})
    warmer.asked(ReportAsk("acme", "broken"))
    warmer.asked(ReportAsk("acme", "fine"))
    assert warmer.run_once() == 1
    assert computed == [ReportAsk("acme", "fine")]


def test_the_thread_seeds_then_refreshes_until_stopped() -> None:
    computed: list[ReportAsk] = []
    rounds = threading.Event()

    def compute(ask: ReportAsk) -> object:
        computed.append(ask)
        if len(computed) >= 4:
            rounds.set()
        return {}

    def seed() -> list[ReportAsk]:
        return [ReportAsk("acme", "largest"), ReportAsk("globex", "newest")]

    warmer = ReportWarmer(compute, seed, interval_s=0.01)
    warmer.start()
    try:
        assert rounds.wait(10)
    finally:
        warmer.stop()
    seen = len(computed)
    assert computed[:4] == [ReportAsk("acme", "largest"), ReportAsk("globex", "newest")] * 2
    threading.Event().wait(0.05)
    assert len(computed) == seen  # stopped: nothing more


def test_a_failing_seed_leaves_the_warmer_running_on_what_is_asked() -> None:
    computed: list[ReportAsk] = []
    done = threading.Event()

    def compute(ask: ReportAsk) -> object:
        computed.append(ask)
        done.set()
        return {}

    def seed() -> list[ReportAsk]:
        raise RuntimeError("no store yet")

    warmer = ReportWarmer(compute, seed, interval_s=0.01)
    warmer.start()
    try:
        warmer.asked(ReportAsk("acme", "launch"))
        assert done.wait(10)
    finally:
        warmer.stop()
    assert computed[0] == ReportAsk("acme", "launch")
