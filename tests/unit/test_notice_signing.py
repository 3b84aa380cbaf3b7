"""Webhook signatures: Stripe's scheme, a fixed vector, and the README's receiver snippet agreeing with it."""

from __future__ import annotations

import hashlib
import hmac
import time

from notices.signing import sign, verify
from tests.notice_samples import SECRET


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"h1","type":"open"}'
    # A fixed vector, computed outside Python:
    #   printf '%s' '1700000000.{"id":"h1","type":"open"}' |
    #     openssl dgst -sha256 -hmac 'whsec_unit-test-secret'
    expected = "e155f4568ef55522b44a7ec34a356747828992ff98af529a3f96359b44d5222a"
    assert sign(SECRET, 1_700_000_000, body) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_only_an_untampered_recent_body_under_its_secret() -> None:
    body = b'{"id":"h1","type":"open"}'
    header = sign(SECRET, 1_700_000_000, body)
    now = 1_700_000_100.0
    assert verify(SECRET, header, body, now=now)
    assert not verify(SECRET, header, body + b" ", now=now)
    assert not verify("whsec_another", header, body, now=now)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)  # a replay, too late
    assert not verify(SECRET, header.replace("t=1700000000", "t=1700000001"), body, now=now)
    for garbled in ("", "t=,v1=", "v1=abc", "t=1700000000", "t=x,v1=00", f"{header},t=1700000000"):
        assert not verify(SECRET, garbled, body, now=now)
    # a rotation sends two v1 values; either matching is enough
    rotated = header + ",v1=" + "0" * 64
    assert verify(SECRET, rotated, body, now=now)


def readme_verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The verification snippet of the README, verbatim: it must agree with what the dispatcher signs."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in fields if k == "t"]
    signatures = [v for k, v in fields if k == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        return False
    t = int(timestamps[0])
    if abs(time.time() - t) > tolerance_s:
        return False  # too old: a replayed request
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def test_the_readme_snippet_verifies_what_the_dispatcher_signs() -> None:
    body = b'{"id":"h1","type":"open","created_at":"2025-01-01T00:00:00.000Z","data":{}}'
    header = sign(SECRET, int(time.time()), body)
    assert readme_verify(SECRET, header, body)
    assert not readme_verify(SECRET, header, body.replace(b"h1", b"h2"))
    assert not readme_verify("whsec_other", header, body)
    assert not readme_verify(SECRET, sign(SECRET, int(time.time()) - 301, body), body)
