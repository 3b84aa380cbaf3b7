"""The HMAC signature scheme pixelpipe signs its webhooks with and checks the generic delivery format by
(Stripe's: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``). Pure; shared by `notices.signing`
(outgoing webhooks) and `deliveries.providers.generic` (events an MTA sends us)."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def refusal(secret: str, header: str, body: bytes, *, now: float, past_s: int, future_s: int) -> str:
    """Why ``header`` does not sign ``body`` (``""`` when it does): exactly one ``t``, a time no more than
    ``past_s`` before ``now`` nor ``future_s`` after it, and any ``v1`` that matches (one per secret while a
    secret rotates)."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v.strip() for k, _, v in parts if k.strip() == "t"]
    macs = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    # ASCII only: str.isdigit takes "²", which int() refuses, and compare_digest raises on other than ASCII;
    # 12 digits reach the year 33658, and int() refuses more than 4300.
    if not header.isascii() or len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not macs:
        return "the signature is not t=<unix seconds>,v1=<hex HMAC-SHA256>"
    timestamp = int(stamps[0])
    if timestamp < now - past_s:
        return f"the signature's time is more than {past_s} s old"
    if timestamp > now + future_s:
        return f"the signature's time is more than {future_s} s ahead"
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        return "the signature does not match the body"
    return ""
