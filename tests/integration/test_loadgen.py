"""`pixelpipe loadgen` against a real served pixelpipe (all roles in one process, the edge's own HTTP
protocol, the in-process bus, the embedded ClickHouse): every hit it sends is answered, counted once,
and reported exactly; a hit that finds no edge fails with status 0 rather than stalling the run."""

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


@pytest.fixture
def base(env: dict[str, str]) -> Iterator[str]:
    components = build_components(settings_mod.load(env), frozenset({"edge", "process", "api"}))
    app, _ = build_app(components)
    with serving(app, http=EdgeHttpProtocol) as url:
        yield url


def test_every_hit_is_answered_and_counted_once(base: str) -> None:
    r = loadgen.run_loadgen(
        base, base, KEY, rate=400, duration_s=2.5, messages=40,
        connections=8, sample_every=50, click_per_mille=20, forwarded_for=RESIDENTIAL,
        show_progress=False,
    )  # fmt: skip
    assert (r.sent, r.opens_sent, r.clicks_sent) == (1000, 980, 20)
    assert r.statuses == {"200": 980, "302": 20}
    assert (r.answered, r.clicks_answered) == (980, 20)
    assert (r.counted, r.counted_clicks) == (980, 20)
    assert r.zero_loss
    assert r.settle_s is not None
    assert r.samples >= 1  # sampled hits became visible through the API
    assert r.sample_timeouts == 0
    assert r.visible_p50_s is not None
    assert r.response_p99_ms is not None
    assert (r.messages, r.connections) == (40, 8)


def test_a_hit_that_finds_no_edge_fails_with_status_0(base: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = loadgen.run_loadgen(
        nowhere, base, KEY, rate=200, duration_s=0.5, messages=5,
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
