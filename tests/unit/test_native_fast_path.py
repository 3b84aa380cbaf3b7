"""The native fast path (`ingest.native`, ``native/src/lib.rs``) against the Python path behind it.

The Python path is the reference. For every request the native path answers, its line must be byte for byte
what the Python edge publishes (`Edge.serve` → `encode_hit`), given the same hit id; every request it cannot
answer exactly so (anything but one complete ``GET /o/…`` whose open token verifies) it must decline, and
every token it accepts the Python `verify` must accept too.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import string
from collections.abc import Sequence
from pathlib import Path

import httptools
import orjson
import pytest

from ingest.client_ip import Network, client_ip, forwarded_for_counts
from ingest.edge import Answer, Edge
from ingest.native import PixelPath, pixel_path
from pixelpipe.settings import parse_networks
from schemas.events import RawHit, decode_hit, encode_hit
from schemas.tokens import Claim, InvalidToken, Keyring, TokenKind, sign, verify
from tests.native import require_native

KEYS = Keyring(((1, b"k" * 32),))
NOW_MS = 1_763_000_123_456
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hits.jsonl"
CLAIMS = [
    Claim(TokenKind.OPEN, "acme", "spring-2026", "msg-1", 1_763_000_000),
    Claim(TokenKind.OPEN, "", "", "", 0),
    Claim(
        TokenKind.OPEN,
        'a"c\\me',
        "caf\u00e9 \U0001f600",
        "m\n\t\x00\x1f\x7f",
        2**32 - 1,
        recipient_tag=b"\xff" * 8,
    ),
    Claim(TokenKind.OPEN, "acme", "c" * 200, "m" * 300, 5, recipient_tag=bytes(range(8))),  # 2-byte varints
]
IPS = ["127.0.0.1", "2001:db8::1", ""]
UAS = [
    b"",
    b"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15",
    b'quote " backslash \\ tab \t latin-1 \xe9\xff',
    b"  \t spaces around, kept inside only \t ",
    bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]) * 5,  # over the 1024 characters kept
]
# Bytes a header value may not hold (RFC 9110): the native parser refuses them, and the Python path,
# more lenient, serves such a request.
UA_REFUSED = [bytes([b]) for b in (*range(0x09), *range(0x0B, 0x0D), *range(0x0E, 0x20), 0x7F)]


@pytest.fixture(autouse=True)
def _native() -> None:
    require_native()


def _path(keyring: Keyring = KEYS, proxies: Sequence[Network] = ()) -> PixelPath:
    path = pixel_path(keyring, "on", proxies)
    assert path is not None
    return path


def _request(
    target: str, *headers: tuple[bytes, bytes], method: bytes = b"GET", version: bytes = b"1.1"
) -> bytes:
    lines = [method + b" " + target.encode("latin-1") + b" HTTP/" + version, b"Host: mail.example.com"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Published:
    def __init__(self) -> None:
        self.hits: list[RawHit] = []

    async def start(self) -> None:
        return None

    def publish(self, hit: RawHit) -> None:
        self.hits.append(hit)

    def ready(self) -> bool:
        return True

    async def stop(self) -> None:
        return None


async def _no_fallback(*_: object) -> None:
    raise AssertionError("not a pixel")


class _Parsed:
    """httptools' view of a request, as uvicorn's protocol hands it to the edge (header names lowercased)."""

    def __init__(self, data: bytes) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        httptools.HttpRequestParser(self).feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def header(self, name: bytes) -> str | None:
        return next((value.decode("latin-1") for key, value in self.headers if key == name), None)


def _python_hit(data: bytes, ip: str) -> RawHit:
    """What the Python edge publishes for the pixel request ``data``."""
    published = _Published()
    edge = Edge(
        keyring=KEYS,
        publisher=published,
        trusted_proxies=(),
        fallback=_no_fallback,
        clock=lambda: NOW_MS / 1000,
        native="off",
    )
    parsed = _Parsed(data)
    answers: list[Answer] = []
    path = parsed.url.partition(b"?")[0].decode("ascii")
    assert edge.serve("GET", path, ip or None, parsed.headers, answers.append)
    assert len(answers) == 1
    assert len(published.hits) == 1
    return published.hits[0]


def _corpus_agents() -> list[bytes]:
    """The shared corpus's user agents. CI runs beside ``../shared``: there a missing corpus is a broken
    checkout, not a reason to test fewer agents. Elsewhere the copy in tests/data stands in for it."""
    corpus = CORPUS
    if not corpus.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"required under CI=true: the shared corpus {CORPUS} is missing", pytrace=False)
        corpus = Path(__file__).parents[1] / "data" / "corpus_hits.jsonl"
    lines = corpus.read_text().splitlines()
    return sorted({orjson.loads(line)["ua"].encode("latin-1", "replace") for line in lines if line.strip()})


@pytest.mark.parametrize("claim", CLAIMS, ids=range(len(CLAIMS)))
@pytest.mark.parametrize("ip", IPS)
def test_the_line_is_byte_for_byte_the_python_edges(claim: Claim, ip: str) -> None:
    path = _path()
    token = sign(claim, KEYS)
    for user_agent in [*UAS, *_corpus_agents()]:
        data = _request(f"/o/{token}.gif", (b"User-Agent", user_agent))
        found = path.answer(data, ip, False, NOW_MS)
        assert found is not None
        keep_alive, recipient_tag, key, line = found
        expected = dataclasses.replace(_python_hit(data, ip), hit_id=decode_hit(line).hit_id)
        assert line == encode_hit(expected)
        assert key == expected.partition_key
        assert recipient_tag == claim.recipient_tag
        assert keep_alive


def test_a_user_agent_with_control_characters_is_declined() -> None:
    path = _path()
    for byte in UA_REFUSED:
        data = _request(f"/o/{OPEN}.gif", (b"User-Agent", b"a" + byte + b"b"))
        assert path.answer(data, "", False, NOW_MS) is None, byte


def test_a_token_signed_by_an_older_key_verifies_and_an_unknown_key_does_not() -> None:
    old, new = (1, b"o" * 32), (2, b"n" * 40)
    rotated = Keyring((new, old))
    path = _path(rotated)
    claim = CLAIMS[0]
    for keys in (Keyring((old,)), Keyring((new,))):
        assert path.answer(_request(f"/o/{sign(claim, keys)}.gif"), "", False, NOW_MS) is not None
    stranger = Keyring(((3, b"s" * 32),))
    assert path.answer(_request(f"/o/{sign(claim, stranger)}.gif"), "", False, NOW_MS) is None
    long_key = Keyring(((1, b"L" * 100),))  # over HMAC's 64-byte block: hashed first
    assert _path(long_key).answer(_request(f"/o/{sign(claim, long_key)}"), "", False, NOW_MS) is not None


def test_every_one_character_change_of_a_token_is_declined_unless_python_accepts_it() -> None:
    path = _path()
    token = sign(CLAIMS[0], KEYS)
    alphabet = string.ascii_letters + string.digits + "-_=+/.~"
    accepted = 0
    for position in range(len(token)):
        for char in alphabet:
            changed = token[:position] + char + token[position + 1 :]
            try:
                python_ok = verify(changed, KEYS, TokenKind.OPEN) is not None
            except InvalidToken:
                python_ok = False
            native_ok = path.answer(_request(f"/o/{changed}.gif"), "", False, NOW_MS) is not None
            assert native_ok == python_ok, changed
            accepted += native_ok
    assert accepted == len(token)  # only the token itself (each position's own character)


def test_random_damage_to_a_request_is_declined_or_answered_as_python_would() -> None:
    """Bytes changed, dropped or repeated anywhere in a pixel request: the native path never fails, and what
    it answers the Python path answers with the same line."""
    rng = random.Random(7)
    path = _path()
    good = _request(f"/o/{sign(CLAIMS[2], KEYS)}.gif", (b"User-Agent", UAS[1]), (b"Accept", b"*/*"))
    answered = 0
    for _ in range(5000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            match rng.randrange(3):
                case 0:
                    data[at] = rng.randrange(256)
                case 1:
                    del data[at]
                case _:
                    data.insert(at, data[at])
        found = path.answer(bytes(data), "127.0.0.1", False, NOW_MS)
        if found is None:
            continue
        answered += 1
        line = found[3]
        assert line == encode_hit(
            dataclasses.replace(_python_hit(bytes(data), "127.0.0.1"), hit_id=decode_hit(line).hit_id)
        )
    assert answered > 100  # damage to the user agent or another header's value leaves a pixel


OPEN = sign(CLAIMS[0], KEYS)
CLICK = sign(Claim(TokenKind.CLICK, "acme", "c", "m", 1, 0, "https://example.com/"), KEYS)


@pytest.mark.parametrize(
    "data",
    [
        _request(f"/o/{OPEN}.gif", method=b"HEAD"),
        _request(f"/o/{OPEN}.gif", method=b"POST"),
        _request(f"/o/{OPEN}.gif") * 2,  # pipelined: one request per call
        _request(f"/o/{OPEN}.gif")[:-2],  # not complete yet
        _request(f"/o/{OPEN}.gif", (b"Content-Length", b"0")),
        _request(f"/o/{OPEN}.gif", (b"Transfer-Encoding", b"chunked")),
        _request(f"/o/{OPEN}.gif", (b"Upgrade", b"websocket"), (b"Connection", b"upgrade")),
        _request(f"/o/{OPEN}.gif", (b"Expect", b"100-continue")),
        _request(f"/o/%{ord(OPEN[0]):02X}{OPEN[1:]}.gif"),  # percent-encoded
        _request(f"/c/{CLICK}"),
        _request(f"/o/{CLICK}.gif"),  # a click token is not an open's
        _request(f"/x/{OPEN}.gif"),
        _request("/o/.gif"),
        _request("/o/" + "A" * 5000),
        _request(f"/o/{OPEN}=.gif"),  # padded
        _request(f"/o/{OPEN}.gif", *[(b"X-H", b"v")] * 64),  # more headers than the native parser takes
        _request(f"/o/{OPEN}.gif", version=b"2.0"),
        b"GET /o/" + OPEN.encode() + b".gif HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # TLS on the plain port
    ],
    ids=[
        "head", "post", "pipelined", "partial", "content-length", "chunked", "upgrade", "expect",
        "percent", "click-path", "click-token", "other-path", "empty-token", "long-token", "padded",
        "many-headers", "http2", "malformed-header", "tls",
    ],
)  # fmt: skip
def test_what_the_native_path_declines(data: bytes) -> None:
    assert _path().answer(data, "127.0.0.1", False, NOW_MS) is None


PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1/32, 2001:db8::/32, ::1/128")
CHAINS = [
    "203.0.113.9",
    "203.0.113.9, 10.0.0.2",
    "198.51.100.1, 203.0.113.9, 10.1.2.3, 10.0.0.2",  # the client wrote the leftmost: not believed
    "10.9.9.9, 10.0.0.2",  # every hop trusted: the leftmost
    "[2001:db8::1]:443, [2606:4700::1111]:443",
    "198.51.100.7:8080",
    "::ffff:203.0.113.9",
    "2606:4700:0:0:0:0:0:1111",
    "2001:DB8::A, 2606:4700::0:1",
    " 203.0.113.9 ,\t10.0.0.2 ",
    ",".join(["10.0.0.1"] * 40),  # 32 hops read at most
]


def _xff_request(chain: str) -> bytes:
    return _request(f"/o/{OPEN}.gif", (b"X-Forwarded-For", chain.encode("latin-1")))


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("peer", ["10.0.0.1", "127.0.0.1", "::1", "192.0.2.1"])
def test_the_client_behind_trusted_proxies_is_the_python_paths(chain: str, peer: str) -> None:
    path = _path(proxies=PROXIES)
    counts = forwarded_for_counts(peer, PROXIES)
    found = path.answer(_xff_request(chain), client_ip(peer, None, PROXIES), counts, NOW_MS)
    assert found is not None
    assert decode_hit(found[3]).ip == client_ip(
        peer, _Parsed(_xff_request(chain)).header(b"x-forwarded-for"), PROXIES
    )


def _random_hop(rng: random.Random) -> str:
    v4 = ".".join(str(rng.choice([0, 1, 10, 127, 203, 255, rng.randrange(256)])) for _ in range(4))
    groups = [
        rng.choice(["0", "00", "2001", "db8", "DB8", "ffff", "1", "a", "0000", "12345"]) for _ in range(8)
    ]
    v6 = ":".join(groups)
    choices = [
        v4,
        "0" + v4,  # a leading zero: Python refuses it
        f"{v4}:{rng.randrange(70000)}",
        v6,
        re.sub(r"(^|:)(0+:){2,}", "::", v6, count=1),
        f"::ffff:{v4}",
        f"::{v4}",
        f"[{v6}]:443",
        f"[{v4}]",
        "::",
        "",
        " ",
        "garbage",
        "1.2.3",
        f"{v6}%eth0",
        f"fe80::1%{rng.randrange(9)}",
        "10.0.0." + str(rng.randrange(300)),
        "2001:db8::" + format(rng.randrange(1 << 16), "x"),
    ]
    hop = rng.choice(choices)
    return rng.choice(["", " ", "\t"]) + hop + rng.choice(["", " "])


def test_random_chains_are_read_as_python_reads_them_or_declined() -> None:
    rng = random.Random(11)
    path = _path(proxies=PROXIES)
    answered = 0
    for _ in range(20_000):
        chain = ",".join(_random_hop(rng) for _ in range(rng.randint(1, 4)))
        peer = rng.choice(["10.0.0.1", "::1", "192.0.2.1"])
        data = _xff_request(chain)
        found = path.answer(data, client_ip(peer, None, PROXIES), forwarded_for_counts(peer, PROXIES), NOW_MS)
        if found is None:
            continue
        answered += 1
        expected = client_ip(peer, _Parsed(data).header(b"x-forwarded-for"), PROXIES)
        assert decode_hit(found[3]).ip == expected, (chain, peer)
    assert answered > 10_000


@pytest.mark.parametrize(
    ("version", "headers", "keep_alive"),
    [
        (b"1.1", [], True),
        (b"1.1", [(b"Connection", b"keep-alive")], True),
        (b"1.1", [(b"Connection", b"close")], False),
        (b"1.1", [(b"connection", b"Keep-Alive, CLOSE")], False),
        (b"1.0", [], False),
        (b"1.0", [(b"Connection", b"keep-alive")], False),  # as the Python path: HTTP/1.0 closes
    ],
)
def test_keep_alive_follows_the_python_path(
    version: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
) -> None:
    found = _path().answer(_request(f"/o/{OPEN}.gif", *headers, version=version), "", False, NOW_MS)
    assert found is not None
    assert found[0] is keep_alive


def test_the_query_string_is_not_part_of_the_token_and_the_suffix_is_optional() -> None:
    path = _path()
    for target in (f"/o/{OPEN}.gif?utm=1", f"/o/{OPEN}", f"/o/{OPEN}?x"):
        assert path.answer(_request(target), "", False, NOW_MS) is not None


def test_hit_ids_are_time_ordered_and_unique() -> None:
    path = _path()
    data = _request(f"/o/{OPEN}.gif")
    ids = []
    for i in range(1000):
        found = path.answer(data, "", False, NOW_MS + i)
        assert found is not None
        ids.append(decode_hit(found[3]).hit_id)
        if i == 500:
            path.discard_random()  # what a forked child does
    assert all(re.fullmatch("[0-9a-f]{28}", hit_id) for hit_id in ids)
    assert [hit_id[:12] for hit_id in ids] == [f"{NOW_MS + i:012x}" for i in range(1000)]
    assert len(set(ids)) == 1000


def test_auto_and_off() -> None:
    assert pixel_path(KEYS, "off") is None
    assert pixel_path(KEYS, "auto") is not None
