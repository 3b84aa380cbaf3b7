"""What the reminder tests share: a deployment whose reminder scheduler runs on a clock the test moves, a
crash of a scheduler at either point of a pass (before its notices leave, after they left and before they
are marked sent), the live feed's reminder events read over SSE, and the ``reminders`` rows as stored."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from notices.hub import NoticeSink
from notices.making import MessageLookup
from notices.reminders import ReminderScheduler, ReminderTiming
from pixelpipe.app import Components
from schemas.notices import Notice
from schemas.store import Store

ACME = {"Authorization": "Bearer acme-key-123"}
REMINDER_EVENTS = frozenset({"not_opened", "unknown"})


class Shifted:
    """Wall-clock time plus a shift the test sets: the scheduler's clock, moved instead of waiting."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


def moved_clock(components: Components) -> Shifted:
    """Put a movable clock into the deployment's reminder scheduler (before it starts)."""
    assert components.notifications is not None
    scheduler = components.notifications.reminders
    assert scheduler is not None
    clock = Shifted()
    scheduler.clock = clock
    return clock


def register(
    client: httpx.Client, message_id: str, after: str | None = "5m", **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "campaign_id": "spring",
        "recipient": f"{message_id}@example.com",
        "message_id": message_id,
        "links": ["https://shop.example.com/sale"],
        **fields,
    }
    if after is not None:
        body["remind_if_unopened_after"] = after
    return client.post("/v1/messages", json=body, headers=ACME)


def states(store: Store) -> dict[str, str]:
    """Each message's reminder state as the scheduler reads it (``FINAL``: the newest state)."""
    rows = store.query(f"SELECT message_id, state FROM {store.database}.reminders FINAL")
    return {str(m): str(s) for m, s in rows}


def reminder_rows(store: Store, message_id: str) -> int:
    return int(
        store.query(
            f"SELECT count() FROM {store.database}.reminders WHERE message_id = {{m:String}}",
            {"m": message_id},
        )[0][0]
    )


async def live_reminders(base: str, *, listen_s: float = 2.0) -> list[tuple[str, dict[str, Any]]]:
    """Every reminder event the live feed of ``base`` holds (a resume from an id it never gave replays its
    ring), and any that follow within ``listen_s``."""
    seen: list[tuple[str, dict[str, Any]]] = []
    headers = {**ACME, "Last-Event-ID": "0-0"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        aconnect_sse(client, "GET", "/v1/live", headers=headers) as source,
    ):

        async def read() -> None:
            async for sse in source.aiter_sse():
                if sse.event in REMINDER_EVENTS:
                    seen.append((sse.event, dict(orjson.loads(sse.data))))  # noqa: PERF401 - as they come

        with contextlib.suppress(TimeoutError):  # the ring is replayed at once; then nothing more comes
            await asyncio.wait_for(read(), listen_s)
    return seen


class Crashed(Exception):
    """What a test's crash raises: the pass ends there, as if the process had died."""


async def refuse(notices: Sequence[Notice]) -> None:
    raise Crashed("the process died before its notices left")


class MarkingFails:
    """A store whose ``sent`` marks never arrive (the process died after its notices left)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], **kw: Any) -> None:
        if table == "reminders" and any(row[columns.index("state")] == "sent" for row in rows):
            raise Crashed("the process died before its notices were marked sent")
        self._store.insert(table, columns, rows, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def crash_pass(
    store: Store | MarkingFails,
    sinks: Sequence[NoticeSink],
    clock: Callable[[], float],
    *,
    batch: int = 500,
) -> None:
    """One pass of a scheduler that dies where ``store`` or ``sinks`` make it (`Crashed`)."""
    real = store._store if isinstance(store, MarkingFails) else store
    scheduler = ReminderScheduler(
        store,  # type: ignore[arg-type]
        sinks=lambda: sinks,
        lookup=MessageLookup(real),
        clock=clock,
        timing=ReminderTiming(poll_s=1, grace_s=0, batch=batch),
    )
    scheduler._stopping = True  # a sink's failure ends the pass at once instead of being retried
    try:
        await scheduler.run_once()
    except Crashed:
        return
    raise AssertionError("the pass was meant to crash")
