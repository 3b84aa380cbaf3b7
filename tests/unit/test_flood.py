"""The replay-flood rule (`processors.flood`): exact counts for floods, people, networks, and its bounds."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from notices.making import notices_of
from pixelpipe.settings import SettingsError, load
from processors.flood import FLOOD, ReplayFlood, bucket_key
from processors.geo import GeoLookup
from processors.pipeline import HitProcessor
from processors.ranges import load_ranges
from schemas.events import RawHit
from schemas.verdicts import Verdict

DATA = Path(__file__).parents[1] / "data"
MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
T0 = 1_767_225_612_000
OPEN = RawHit("h0", "open", T0, "81.2.69.160", MAIL, True, "acme", "c1", "m1", 1_767_225_600)


@pytest.fixture(scope="module")
def processor() -> Iterator[HitProcessor]:
    geo = GeoLookup(DATA / "GeoIP2-City-Test.mmdb", DATA / "GeoLite2-ASN-Test.mmdb")
    yield HitProcessor(geo, load_ranges())
    geo.close()


def _verdicts(flood: ReplayFlood, processor: HitProcessor, hits: list[RawHit]) -> list[str]:
    out = []
    for hit in hits:
        c = flood.classify(processor.process(hit, "test"), 0)
        out.append(f"{c.verdict.value}/{c.reason}")
    return out


def _opens(times_ms: list[int], **fields: object) -> list[RawHit]:
    return [replace(OPEN, hit_id=f"h{i}", received_at_ms=T0 + t, **fields) for i, t in enumerate(times_ms)]  # type: ignore[arg-type]


def test_ten_thousand_fetches_in_ten_seconds_are_ten_opens(processor: HitProcessor) -> None:
    flood = ReplayFlood()
    verdicts = _verdicts(flood, processor, _opens(list(range(10_000))))  # one per millisecond
    assert verdicts[:10] == ["human/ua:client"] * 10
    assert verdicts[10:] == ["bot/replay_flood"] * 9_990
    assert flood.filtered == 9_990
    assert len(flood) == 1


def test_a_person_reopening_with_a_client_that_fetches_twice_is_counted_in_full(
    processor: HitProcessor,
) -> None:
    # Five opens in 50 s, each fetching the pixel twice 300 ms apart: ten fetches, all counted.
    times = [t for open_s in (0, 10, 20, 35, 50) for t in (open_s * 1000, open_s * 1000 + 300)]
    assert _verdicts(ReplayFlood(), processor, _opens(times)) == ["human/ua:client"] * 10


def test_the_window_is_sixty_seconds_of_event_time_to_the_millisecond(processor: HitProcessor) -> None:
    # Ten fetches at 0..9 ms; an eleventh is a flood while the first of those ten is less than 60 s behind it.
    ten = list(range(10))
    assert _verdicts(ReplayFlood(), processor, _opens([*ten, 59_999]))[10:] == ["bot/replay_flood"]
    assert _verdicts(ReplayFlood(), processor, _opens([*ten, 60_000]))[10:] == ["human/ua:client"]


def test_a_flood_stays_filtered_while_it_lasts_and_ends_a_window_after_it(processor: HitProcessor) -> None:
    # One fetch a second for ten minutes: the first ten count, the rest is a flood (filtered hits count in the
    # bucket too, so a slow script never gets ten more a minute). A minute after it stops, a person counts.
    times = [s * 1000 for s in range(600)] + [599_000 + 60_000]
    verdicts = _verdicts(ReplayFlood(), processor, _opens(times))
    assert verdicts.count("human/ua:client") == 11
    assert verdicts[:10] == ["human/ua:client"] * 10
    assert verdicts[-1] == "human/ua:client"


def test_buckets_are_per_message_kind_link_and_network(processor: HitProcessor) -> None:
    flood = ReplayFlood(limit=2)
    hits = [
        *_opens([0, 1]),  # fills the bucket of m1's pixel from 81.2.69.0/24
        *_opens([2], ip="81.2.69.142"),  # same /24: a flood
        *_opens([3], ip="89.160.20.128"),  # another network: counted
        *_opens([4], message_id="m2"),  # another message: counted
        *_opens([5], kind="click", link_index=0, url="https://a.example/"),  # a click: its own bucket
        *_opens([6], kind="click", link_index=1, url="https://b.example/"),  # another link: its own bucket
        *_opens([7], account="other"),  # another account's message of the same id: counted
    ]
    assert _verdicts(flood, processor, hits) == [
        "human/ua:client", "human/ua:client", "bot/replay_flood", "human/ua:client", "human/ua:client",
        "human/ua:client", "human/ua:client", "human/ua:client",
    ]  # fmt: skip


def test_an_ipv6_client_is_one_bucket_per_48(processor: HitProcessor) -> None:
    flood = ReplayFlood(limit=1)
    hits = [
        *_opens([0], ip="2001:db8:1:1::1"),
        *_opens([1], ip="2001:db8:1:ffff::2"),  # another /64 of the same /48
        *_opens([2], ip="2001:db8:2::1"),  # another /48
    ]
    assert _verdicts(flood, processor, hits) == ["human/ua:client", "bot/replay_flood", "human/ua:client"]


def test_bots_and_invalid_hits_take_no_part(processor: HitProcessor) -> None:
    flood = ReplayFlood(limit=1)
    curl = _opens([0, 1, 2], user_agent="curl/8.5.0")
    invalid = [replace(h, token_ok=False, token_error="bad_tag") for h in _opens([3, 4])]
    verdicts = _verdicts(flood, processor, [*curl, *invalid, *_opens([5])])
    assert verdicts == [*["bot/ua:http_library"] * 3, *["invalid/token:bad_tag"] * 2, "human/ua:client"]
    assert flood.filtered == 0


def test_machine_opens_are_limited_too(processor: HitProcessor) -> None:
    # Apple's relay (17.0.0.0/8) with a bare "Mozilla/5.0": a machine open; replayed, a flood.
    hits = _opens(list(range(12)), ip="17.58.0.1", user_agent="Mozilla/5.0")
    verdicts = _verdicts(ReplayFlood(), processor, hits)
    assert verdicts == [*["machine/apple_mpp"] * 10, *["bot/replay_flood"] * 2]


def test_the_same_hits_read_again_are_judged_the_same(processor: HitProcessor) -> None:
    hits = _opens([0, 5, 5, 9, 3_000, 3_000, 3_001, 20_000, 40_000, 59_000, 59_500, 61_000, 62_000, 200_000])
    first = _verdicts(ReplayFlood(limit=3), processor, hits)
    again = _verdicts(ReplayFlood(limit=3), processor, hits)
    assert first == again
    assert first.count("bot/replay_flood") == 10  # from 9 ms to 62 s; 200 s is a window past 62 s


def test_state_is_dropped_a_window_and_the_skew_after_a_bucket_is_quiet() -> None:
    flood = ReplayFlood(limit=2, window_ms=1_000, skew_ms=500)
    for m in range(1_000):
        assert flood.admit(0, m, T0)
    assert len(flood) == 1_000
    assert flood.admit(0, -1, T0 + 1_500)  # the horizon is T0: nothing older than it yet
    assert len(flood) == 1_001
    assert flood.admit(0, -2, T0 + 1_501)  # sweeps run every quarter window: the next at T0 + 1_750
    assert flood.admit(0, -3, T0 + 1_750)  # horizon T0 + 250: the thousand buckets at T0 go
    assert len(flood) == 3


def test_buckets_are_capped_least_recent_first() -> None:
    flood = ReplayFlood(limit=1, max_buckets=100)
    for m in range(100):
        assert flood.admit(0, m, T0)
    assert not flood.admit(0, 0, T0 + 1)  # bucket 0 is now the most recent
    assert flood.admit(0, 100, T0 + 2)  # one over the cap: the least recent tenth and one go (1..11)
    assert len(flood) == 90
    assert flood.admit(0, 1, T0 + 3)  # bucket 1 was dropped: lenient, it starts again
    assert not flood.admit(0, 0, T0 + 3)  # bucket 0 was kept
    assert not flood.admit(0, 12, T0 + 3)  # and so was bucket 12


def test_a_sweep_walks_only_the_buckets_it_drops() -> None:
    flood = ReplayFlood(limit=5, window_ms=1_000, skew_ms=0)
    assert flood.admit(0, 1, T0)
    assert flood.admit(0, 2, T0 + 10)
    assert flood.admit(0, 1, T0 + 900)  # bucket 1 is now newer than bucket 2: it moves behind it
    assert flood.admit(0, 3, T0 + 1_005)  # no sweep yet: sweeps run every quarter window (next at T0 + 1_150)
    assert len(flood) == 3
    assert flood.admit(0, 4, T0 + 2_005)  # horizon T0 + 1_005: buckets 2 and 1 go, 3 stays
    assert len(flood) == 2


def test_a_revoked_partition_is_forgotten() -> None:
    flood = ReplayFlood(limit=1)
    assert flood.admit(0, 7, T0)
    assert flood.admit(1, 7, T0)
    assert not flood.admit(0, 7, T0 + 1)
    flood.forget_partitions({0})
    assert len(flood) == 1
    assert flood.admit(0, 7, T0 + 2)  # read again by a new owner: starts empty
    assert not flood.admit(1, 7, T0 + 2)


def test_flood_is_a_filtered_bot_verdict_with_its_reason() -> None:
    assert (FLOOD.verdict, FLOOD.reason, FLOOD.verdict.counted) == (Verdict.BOT, "replay_flood", False)
    assert bucket_key(OPEN, "81.2.69.0") == bucket_key(replace(OPEN, hit_id="other"), "81.2.69.0")
    assert bucket_key(OPEN, "81.2.69.0") != bucket_key(OPEN, "81.2.70.0")


def test_bad_limits_are_refused() -> None:
    for kwargs in ({"limit": -1}, {"window_ms": 0}, {"skew_ms": -1}, {"max_buckets": 0}):
        with pytest.raises(ValueError, match="limit"):
            ReplayFlood(**kwargs)


def test_a_limit_of_zero_turns_the_rule_off(processor: HitProcessor) -> None:
    flood = ReplayFlood(limit=0)
    assert _verdicts(flood, processor, _opens(list(range(100)))) == ["human/ua:client"] * 100
    assert len(flood) == 0


def test_a_flood_makes_no_notice_and_its_first_hits_do(processor: HitProcessor) -> None:
    flood = ReplayFlood(limit=2)
    stored = [(p, flood.classify(p, 0)) for p in (processor.process(h, "test") for h in _opens([0, 1, 2, 3]))]
    notices = notices_of(stored, created_at_ms=42)
    assert [(n.id, n.type) for n in notices] == [("h0", "open"), ("h1", "open")]


def test_the_settings_read_the_limit_and_window_and_refuse_bad_values(tmp_path: Path) -> None:
    base = {"PIXELPIPE_SECRET": "s" * 32, "PIXELPIPE_API_KEYS": "acme=key-12345678"}
    env = {**base, "PIXELPIPE_DATA_DIR": str(tmp_path)}
    defaults = load(env)
    assert (defaults.replay_flood_limit, defaults.replay_flood_window_s) == (10, 60)
    tuned = load({**env, "PIXELPIPE_REPLAY_FLOOD_LIMIT": "0", "PIXELPIPE_REPLAY_FLOOD_WINDOW_S": "600"})
    assert (tuned.replay_flood_limit, tuned.replay_flood_window_s) == (0, 600)
    for variable, value in (
        ("PIXELPIPE_REPLAY_FLOOD_LIMIT", "-1"),
        ("PIXELPIPE_REPLAY_FLOOD_LIMIT", "ten"),
        ("PIXELPIPE_REPLAY_FLOOD_WINDOW_S", "0"),
        ("PIXELPIPE_REPLAY_FLOOD_WINDOW_S", "3601"),
    ):
        with pytest.raises(SettingsError) as info:
            load({**env, variable: value})
        assert info.value.variable == variable


def test_a_lagging_partition_is_judged_on_its_own_hits() -> None:
    # Partition 0 is behind (a backlog), partition 1 live ten minutes ahead: partition 0's flood goes on.
    flood = ReplayFlood(limit=2, window_ms=1_000, skew_ms=0)
    assert flood.admit(0, 7, T0)
    assert flood.admit(0, 7, T0 + 1)
    assert flood.admit(1, 8, T0 + 600_000)  # another partition's watermark sweeps only its own buckets
    assert not flood.admit(0, 7, T0 + 2)


def test_replaying_the_reach_before_any_offset_gives_the_verdicts_of_an_uninterrupted_run() -> None:
    # Six buckets of bursts and lulls, edge clocks up to the skew apart (hits a little out of order): cut
    # the stream anywhere, replay what lies within the reach before the cut into a fresh filter (as the
    # runner does after a restart), and every verdict from the cut on is the uninterrupted run's.
    rng = random.Random(14)
    hits: list[tuple[int, int]] = []
    t = T0
    for _ in range(3_000):
        t += rng.choice((5, 20, 300, 4_000, 30_000)) if rng.random() < 0.3 else rng.randrange(0, 50)
        hits.append((rng.randrange(6), max(T0, t - rng.randrange(0, 5_000))))
    whole = ReplayFlood(skew_ms=5_000)
    verdicts = [whole.admit(0, key, at) for key, at in hits]
    assert 0 < verdicts.count(False) < len(hits)  # floods and people both
    for cut in range(0, len(hits), 97):
        since = hits[cut][1] - whole.reach_ms
        # The first record published at `since` or later: a record's timestamp is never before its hit's
        # time; here the running maximum of the times stands for it.
        published = list(itertools.accumulate((at for _, at in hits), max))
        start = next(i for i, p in enumerate(published) if p >= since)
        restarted = ReplayFlood(skew_ms=5_000)
        for key, at in hits[start:cut]:
            restarted.admit(0, key, at)
        assert [restarted.admit(0, key, at) for key, at in hits[cut:]] == verdicts[cut:], cut
