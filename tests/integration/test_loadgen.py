"""`pixelpipe loadgen` against a real served pixelpipe (all roles in one process, the edge's own HTTP
protocol, the in-process bus, the embedded ClickHouse): every hit it sends is answered and counted once as a
person's, none filtered as a replay flood; a run whose hits the pipeline does filter is reported as a
mismatch, with the floods counted; a hit that finds no edge fails with status 0 rather than stalling."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.http_protocol import EdgeHttpProtocol
from pixelpipe import loadgen
from pixelpipe import settings as settings_mod
from pixelpipe.app import build_app, build_components
from tests.serving import free_port, serving

KEY = "acme-key-123"
RESIDENTIAL = ("81.2.69.160", "89.160.20.128")  # human readers in the test GeoIP databases


def _serve(env: dict[str, str]) -> Iterator[str]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app, http=EdgeHttpProtocol) as url:
        yield url


@pytest.fixture
def base(env: dict[str, str]) -> Iterator[str]:
    yield from _serve(env)


@pytest.fixture
def strict_base(env: dict[str, str]) -> Iterator[str]:
    """A pipeline whose flood rule allows one hit per message and network a minute."""
    yield from _serve({**env, "PIXELPIPE_REPLAY_FLOOD_LIMIT": "1"})


@pytest.mark.parametrize(
    ("spread", "messages", "networks"),
    [
        ({"networks": 16}, 200, 16),  # generated client networks, as the benchmark uses (256 there)
        ({"forwarded_for": RESIDENTIAL}, 200, 2),
    ],
)
def test_every_hit_is_answered_and_counted_once(
    base: str, spread: dict[str, object], messages: int, networks: int
) -> None:
    r = loadgen.run_loadgen(
        base, base, KEY, rate=400, duration_s=2.5, connections=8, sample_every=50, click_per_mille=20,
        show_progress=False, **spread,  # type: ignore[arg-type]
    )  # fmt: skip
    assert (r.sent, r.opens_sent, r.clicks_sent) == (1000, 980, 20)
    assert r.statuses == {"200": 980, "302": 20}
    assert (r.answered, r.clicks_answered) == (980, 20)
    assert (r.counted, r.counted_clicks, r.replay_floods) == (980, 20, 0)
    assert r.zero_loss
    assert r.settle_s is not None
    assert r.samples >= 1  # sampled hits became visible through the API
    assert r.sample_timeouts == 0
    assert r.visible_p50_s is not None
    assert r.response_p99_ms is not None
    assert (r.messages, r.networks, r.connections) == (messages, networks, 8)


def test_hits_filtered_as_replay_floods_are_a_mismatch(strict_base: str) -> None:
    """One address, 200 messages, a limit of 1: each message's first pixel counts and the rest are floods.
    Clicks at hits 25, 75, ... take hits 25, 225, ... (all of message 25's), so 196 messages get pixels;
    the 20 clicks go to 20 messages, one each."""
    r = loadgen.run_loadgen(
        strict_base, strict_base, KEY, rate=400, duration_s=2.5, connections=8, sample_every=0,
        click_per_mille=20, forwarded_for=RESIDENTIAL[:1], show_progress=False,
    )  # fmt: skip
    assert (r.answered, r.clicks_answered, r.messages, r.networks) == (980, 20, 200, 1)
    assert (r.counted, r.counted_clicks, r.replay_floods) == (196, 20, 980 - 196)
    assert not r.zero_loss
    assert r.settle_s is not None  # every hit arrived: counted or filtered
    assert "784 filtered as replay floods" in loadgen.summary(r)
    assert "MISMATCH" in loadgen.summary(r)


def test_too_few_messages_for_the_rate_are_refused() -> None:
    with pytest.raises(loadgen.LoadgenError, match="give at least 60000 messages or more networks"):
        loadgen.run_loadgen(
            "http://127.0.0.1:1", "http://127.0.0.1:1", KEY, rate=10_000, duration_s=600, messages=200,
            forwarded_for=RESIDENTIAL, show_progress=False,
        )  # fmt: skip


def test_a_hit_that_finds_no_edge_fails_with_status_0(base: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = loadgen.run_loadgen(
        nowhere, base, KEY, rate=200, duration_s=0.5, messages=20,
        connections=4, sample_every=0, click_per_mille=0, show_progress=False, settle_timeout_s=1,
    )  # fmt: skip
    assert (r.sent, r.statuses) == (100, {"0": 100})
    assert (r.answered, r.counted) == (0, 0)
    assert r.zero_loss  # nothing answered, nothing counted


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 43\r\ncontent-type: image/gif", (200, 43, False)),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nConnection: close", (302, 0, True)),
        (b"HTTP/1.1 503 Busy\r\nconnection:  keep-alive \r\ncontent-length:  7 ", (503, 7, False)),
        (b"HTTP/1.1 204 No Content", (204, 0, False)),
    ],
)  # fmt: skip
def test_response_heads(head: bytes, expected: tuple[int, int, bool]) -> None:
    assert loadgen._parse_head(head) == expected


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "chunked"),
        (b"garbage", "not an HTTP status line"),
        (b"HTTP/1.1 OK", "not an HTTP status line"),
    ],
)
def test_what_is_not_an_answer_is_refused(head: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        loadgen._parse_head(head)
