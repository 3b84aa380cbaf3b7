"""`GET /v1/live`: the account's opens and clicks as they are counted, the read time of its timed opens as
each measurement ends, and its messages' delivery events (delivered, bounce, complaint) as they are stored,
as Server-Sent Events.

Owns the HTTP shape of the stream; the notices, their ids and the resume logic are the feed's, reached
through the port `schemas.live.LiveNotices` (`notices.live.LiveFeed`: a ring buffer per account in this
process, handed in by `pixelpipe.app`). Each event is
``id: EPOCH-SEQ``, ``event: open|click|machine_open|read|delivered|bounce|complaint``, ``data: {...}`` (the
notice's public JSON; ``data.id`` is the hit's, the read's or the delivery event's id, stable across
processes, for deduplication); a ``: keepalive`` comment every
15 s; a ``gap`` event when a resume cannot be proven complete. Never streams another account's notices,
and never holds anything up: a stream only reads the ring. A stream opened with the dashboard's session
cookie ends once that session has expired or was signed out (at its next event or keepalive).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.context import account_dependency
from api.cookie_auth import session_alive
from schemas.live import LiveItem, LiveNotices
from schemas.notices import DELIVERY_NOTICE_TYPES


@dataclass
class LiveEvent:
    """One event of the stream, as the OpenAPI document describes it (comments are not events)."""

    event: (
        Literal["open", "click", "machine_open", "read", "delivered", "bounce", "complaint", "gap"] | None
    ) = None
    data: str | None = None  # JSON: the notice (`data.id`: the hit or delivery id), or `{"reason"}` of a gap
    id: str | None = None  # EPOCH-SEQ: send it back as `Last-Event-ID`
    retry: int | None = None  # ms: how long to wait before reconnecting


def _message(item: LiveItem) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=item.data, event=item.event, id=item.id, retry=item.retry_ms, comment=item.comment
    )


async def _events(
    items: AsyncIterator[LiveItem], alive: Callable[[], bool] | None
) -> AsyncIterator[ServerSentEventMessage]:
    async for item in items:
        if alive is not None and not alive():  # the dashboard's session ended: so does its stream
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()  # now, not when collected: the feed counts its streams
            return
        yield _message(item)


class LiveController(Controller):
    path = "/v1"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["live"]  # noqa: RUF012

    @get(
        "/live",
        # Documented here, not as the handler's media type: that one would also be the type of its errors.
        responses={
            200: ResponseSpec(
                data_container=LiveEvent,
                media_type="text/event-stream",
                description="Server-Sent Events: `open`, `click`, `machine_open`, `delivered`, `bounce`, "
                "`complaint` and `gap` events, "
                "`: keepalive` comments every 15 s; each event's `id` is `EPOCH-SEQ`.",
                generate_examples=False,
            )
        },
    )
    async def live(
        self,
        *,
        request: Request[Any, Any, Any],
        account: NamedDependency[str],
        live: NamedDependency[LiveNotices],
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                required=False,
                description="The `id` of the last event received: resume after it. An id this feed did not "
                "give (another process's, an earlier run's, or not an id at all) gets a `gap` event first, "
                "then every notice the feed still holds.",
            ),
        ] = None,
        include_machine: FromQuery[bool] = False,
        include_delivery: FromQuery[bool] = True,
        include_read: FromQuery[bool] = True,
    ) -> ServerSentEvent:
        """Server-Sent Events: `open` and `click` (and `machine_open` with `include_machine=true`) notices of
        the account as they are counted, `read` notices as the read time of a timed human open is
        measured (after its open; unless `include_read=false`), and `delivered`, `bounce` and `complaint`
        notices of its messages as their mail service reports them (unless `include_delivery=false`).
        Reconnect with `Last-Event-ID` to receive what was missed."""
        types = {"open", "click", "machine_open"} if include_machine else {"open", "click"}
        if include_delivery:
            types |= DELIVERY_NOTICE_TYPES
        if include_read:
            types.add("read")
        items = live.stream(account, last_event_id=last_event_id, types=frozenset(types))
        return ServerSentEvent(
            _events(items, session_alive(request)),
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
