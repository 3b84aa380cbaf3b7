"""Webhook signatures: how a delivery is signed (`sign`, Stripe's scheme) and how a receiver checks it
(`verify`), and the headers a delivery carries. Pure; the README's receiver snippet must agree with `verify`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "Pixelpipe-Signature"
DELIVERY_HEADER: Final = "Pixelpipe-Delivery-Id"
EVENT_HEADER: Final = "Pixelpipe-Event-Id"
ATTEMPT_HEADER: Final = "Pixelpipe-Attempt"
SIGNATURE_TOLERANCE_S: Final = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`` (Stripe's scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: any ``v1`` matches and ``t`` is within ``tolerance_s`` of now."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    macs = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not macs:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, mac) for mac in macs)
