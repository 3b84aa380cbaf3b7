"""Webhook signatures: how a delivery is signed (`sign`, Stripe's scheme, kept in `schemas.webhook_signature`
which the generic delivery format shares) and how a receiver checks it (`verify`), and the headers a delivery
carries. Pure; the README's receiver snippet must agree with `verify`.
"""

from __future__ import annotations

from typing import Final

from schemas.webhook_signature import refusal, sign

__all__ = ["ATTEMPT_HEADER", "DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER: Final = "Pixelpipe-Signature"
DELIVERY_HEADER: Final = "Pixelpipe-Delivery-Id"
EVENT_HEADER: Final = "Pixelpipe-Event-Id"
ATTEMPT_HEADER: Final = "Pixelpipe-Attempt"
SIGNATURE_TOLERANCE_S: Final = 300


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: any ``v1`` matches and ``t`` is within ``tolerance_s`` of now."""
    return not refusal(secret, header, body, now=now, past_s=tolerance_s, future_s=tolerance_s)
