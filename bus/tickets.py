"""Waiting for the tickets that hold a commit back: a loop reading the bus (the processors, the delivery
loader) commits a batch's offsets only once the notices of what it stored are durable, and each batch's
ticket says when (`notices.hub.NoticeHub.durable`). `settle` is that wait, bounded and logged."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any


async def settle(
    tickets: Iterable[asyncio.Future[Any]],
    deadline_s: float | None,
    *,
    stopping: asyncio.Event,
    log_every_s: float,
    late: Callable[[float], None],
    slow: Callable[[float], None],
) -> None:
    """Wait until ``tickets`` complete, or ``deadline_s`` passes (then ``late(deadline_s)``; None: no
    deadline, but ``stopping`` ends the wait); ``slow(seconds waited)`` every ``log_every_s`` meanwhile.
    Never cancels a ticket."""
    waiting: set[asyncio.Future[Any]] = {t for t in tickets if not t.done()}
    if not waiting:
        return
    started = time.monotonic()
    stop = asyncio.ensure_future(stopping.wait()) if deadline_s is None else None
    try:
        while waiting:
            waited = time.monotonic() - started
            if deadline_s is not None and waited >= deadline_s:
                late(deadline_s)
                return
            timeout = log_every_s if deadline_s is None else min(deadline_s - waited, log_every_s)
            done, _ = await asyncio.wait(
                waiting | ({stop} if stop is not None else set()),
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stop is not None and stop in done:
                return
            waiting -= done
            if not done:
                slow(time.monotonic() - started)
    finally:
        if stop is not None:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop
