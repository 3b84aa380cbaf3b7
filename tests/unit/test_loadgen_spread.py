"""The load generator's traffic is people's at any rate: the order in which `pixelpipe.loadgen` picks each
hit's message and client address, replayed at the hits' due times through the pipeline's own replay-flood
rule (`processors.flood.ReplayFlood`), files no hit as a flood, and no (message, network) pair sees more than
`BUCKET_HITS` hits in any 60 s. Pure: the plan is driven without a network."""

from __future__ import annotations

import collections
import heapq
import ipaddress

import pytest

from pixelpipe import loadgen
from processors.flood import ReplayFlood

RESIDENTIAL = ("81.2.69.160", "89.160.20.128")


def _replay(spec: loadgen.LoadSpec, messages: int | None = None) -> tuple[int, int, collections.Counter[str]]:
    """Drive `_Plan` as the generator does, every sample held for the shortest time a sample can take (one
    poll interval: the fastest reuse of the pool); return the floods the rule files, the most hits one pair
    saw within 60 s, and the hits by kind."""
    n = messages or spec.message_count
    addresses = spec.addresses or ["127.0.0.1"]
    plan = loadgen._Plan(
        normal=[f"o{m}".encode() for m in range(n)],
        clicks=[f"c{m}".encode() for m in range(n)],
        addresses=len(addresses),
        samples=[loadgen._SampleMessage(f"s{k}", f"s{k}".encode(), k) for k in range(spec.sample_pool)],
        sample_every=spec.sample_every,
        sample_in_flight=spec.sample_messages,
        click_every=1000 // spec.click_per_mille if spec.click_per_mille else 0,
    )
    rule = ReplayFlood()
    recent: dict[tuple[bytes, str], collections.deque[int]] = collections.defaultdict(collections.deque)
    most, kinds, floods = 0, collections.Counter[str](), 0
    releases: list[tuple[float, int, loadgen._SampleMessage]] = []
    for i in range(spec.total):
        t = i / spec.rate
        while releases and releases[0][0] <= t:
            plan.release(heapq.heappop(releases)[2])
        path, address, kind, sample = plan.pick(i)
        kinds[kind] += 1
        if sample is not None:
            sample.expected += 1
            heapq.heappush(releases, (t + spec.poll_interval_s, i, sample))
        network = loadgen.network_of(addresses[address])
        at_ms = i * 1000 // round(spec.rate)
        floods += not rule.admit(0, hash((path, network)), at_ms)
        window = recent[path, network]
        window.append(at_ms)
        while window[0] <= at_ms - 60_000:  # the rule's window: the last minute, not including its start
            window.popleft()
        most = max(most, len(window))
    return floods, most, kinds


def _spec(rate: float, duration_s: float, **kwargs: object) -> loadgen.LoadSpec:
    kwargs.setdefault("messages", None)
    return loadgen.LoadSpec(
        "http://127.0.0.1:1", "http://127.0.0.1:1", "k", rate, duration_s, campaign_id="c", **kwargs
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "duration_s", "kwargs", "messages", "width"),
    [
        (10_000, 75, {"networks": 256}, 469, 256),  # the benchmark's ramp top
        (2_000, 90, {}, 24_000, 1),  # no X-Forwarded-For: the messages alone
        (400, 2.5, {"forwarded_for": RESIDENTIAL}, 200, 2),  # the integration test's
        (3_000, 80, {"forwarded_for": ("81.2.69.160", "81.2.69.161", "89.160.20.128")}, 36_000, 1),
    ],
)  # fmt: skip
def test_no_pair_of_message_and_network_floods(
    rate: float, duration_s: float, kwargs: dict[str, object], messages: int, width: int
) -> None:
    spec = _spec(rate, duration_s, **kwargs)
    assert (spec.message_count, spec.width) == (messages, width)
    floods, most, kinds = _replay(spec)
    assert floods == 0
    assert most <= loadgen.BUCKET_HITS
    assert kinds["click"] == spec.total // 100  # 1 % clicks, as before


def test_the_old_spread_is_a_flood() -> None:
    """What the generator sent before: 200 messages from two addresses at 10k/s. The rule files most of it,
    and the generator now refuses to be asked for it."""
    with pytest.raises(loadgen.LoadgenError, match="give at least 60000 messages or more networks"):
        _spec(10_000, 60, messages=200, forwarded_for=RESIDENTIAL)
    spec = _spec(10_000, 6, messages=None, forwarded_for=RESIDENTIAL)
    floods, most, _ = _replay(spec, messages=200)
    assert most > 10
    assert floods > 0.9 * spec.total


def test_generated_networks() -> None:
    addresses = loadgen.client_addresses(loadgen.MAX_NETWORKS)
    block = ipaddress.ip_network(loadgen.CLIENT_BLOCK)
    assert all(ipaddress.ip_address(a) in block and ipaddress.ip_address(a).is_global for a in addresses)
    assert len({loadgen.network_of(a) for a in addresses}) == loadgen.MAX_NETWORKS
    assert loadgen.spread_width(addresses[:256]) == 256
    with pytest.raises(loadgen.LoadgenError, match="networks must be in"):
        loadgen.client_addresses(loadgen.MAX_NETWORKS + 1)


@pytest.mark.parametrize(
    ("addresses", "width"),
    [
        ((), 1),
        (("81.2.69.160", "81.2.69.161"), 1),  # one /24
        (("81.2.69.160", "81.2.70.1", "81.2.69.161"), 1),  # 81.2.69.0/24 twice in a turn of three
        (("2001:db8:1::1", "2001:db8:1:2::1", "2001:db8:2::1", "10.0.0.1"), 2),  # one /48 twice in four
        (("2001:db8:1::1", "2001:db8:2::1", "10.0.0.1"), 3),
    ],
)
def test_spread_width(addresses: tuple[str, ...], width: int) -> None:
    assert loadgen.spread_width(addresses) == width
