"""The live feed's port: what `GET /v1/live` streams, and the one thing the API asks of the feed.

Owns `LiveItem` (one event or comment of a stream) and `LiveNotices` (the port: an account's notices after a
``Last-Event-ID``, then as they come). The feed behind it — a ring per account, event ids, resumes — is
`notices.live.LiveFeed`; the wiring (`pixelpipe.app`) hands it to the API, so that `api/` never imports the
notice stage. Holds no state and does no I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One thing to write on a live stream: an event (``id``, ``event``, ``data``) or a comment."""

    id: str | None = None
    event: str | None = None
    data: bytes | None = None
    comment: str | None = None
    retry_ms: int | None = None


# runtime_checkable: Litestar checks a dependency against its annotation with isinstance.
@runtime_checkable
class LiveNotices(Protocol):
    """What `api.live` streams from."""

    def stream(
        self, account: str, *, last_event_id: str | None, types: frozenset[str]
    ) -> AsyncIterator[LiveItem]:
        """The account's notices of ``types`` after ``last_event_id`` (or from now), then as they come; a
        ``gap`` event first when the resume cannot be proven complete."""
        ...
