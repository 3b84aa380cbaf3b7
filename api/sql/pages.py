"""Keyset pagination of the campaign and message lists: page sizes and opaque cursors. Pure."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

from api.sql.common import BadQuery

MAX_PAGE: Final = 1000


def encode_cursor(at_ms: int, key: str) -> str:
    """An opaque cursor for keyset pagination: the (time, id) of the last row of a page."""
    return (
        base64.urlsafe_b64encode(json.dumps([at_ms, key], separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_ms, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadQuery("malformed cursor") from exc
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or not isinstance(key, str):
        raise BadQuery("malformed cursor")
    return at_ms, key


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BadQuery(f"limit must be between 1 and {MAX_PAGE}")
    return limit
