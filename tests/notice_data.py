"""The sample notice the notice tests build theirs from: a human open in acme's campaign ``spring``."""

from __future__ import annotations

from typing import Any

from schemas.notices import Notice


def open_notice(message: str, seq: int, **fields: Any) -> Notice:
    """The open of ``message`` that is its ``seq``-th hit (received at 1_700_000_000_000 + ``seq`` ms, its
    notice made 500 ms later); ``fields`` set any other field or replace these."""
    sample: dict[str, Any] = {
        "id": f"{message}-{seq}",
        "type": "open",
        "account": "acme",
        "campaign_id": "spring",
        "message_id": message,
        "at_ms": 1_700_000_000_000 + seq,
        "created_at_ms": 1_700_000_000_500 + seq,
        "verdict": "human",
        "reason": "ua:mail_client",
    }
    return Notice(**{**sample, **fields})
