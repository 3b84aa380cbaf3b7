"""What the tests of the notice hub and of the commit order share: a sink that can be held or made to fail as
an unreachable enriched topic does, and a hub running for the length of a block."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from schemas.notices import Notice


class GatedSink:
    """A notice sink that waits while ``gate`` is clear and fails while ``failing``; what it takes goes on to
    ``then`` (where given) and is recorded in ``took``. ``entered``: how many sends reached it (the hub's task
    is at this sink); ``failures``: how many it failed."""

    def __init__(self, then: Callable[[Sequence[Notice]], Awaitable[None]] | None = None) -> None:
        self.then = then
        self.entered = 0
        self.failing = False
        self.failures = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.took: list[list[str]] = []

    async def __call__(self, notices: Sequence[Notice]) -> None:
        self.entered += 1
        await self.gate.wait()
        if self.failing:
            self.failures += 1
            raise ConnectionError("KafkaConnectionError: enriched topic unreachable")
        if self.then is not None:
            await self.then(notices)
        self.took.append([n.id for n in notices])


class _Hub(Protocol):
    async def start(self) -> None: ...

    async def stop(self, deadline_s: float = ...) -> None: ...


@asynccontextmanager
async def running(hub: _Hub, stop_deadline_s: float | None = None) -> AsyncIterator[None]:
    """``hub`` started; stopped on the way out (within ``stop_deadline_s`` where given, else its default)."""
    await hub.start()
    try:
        yield
    finally:
        if stop_deadline_s is None:
            await hub.stop()
        else:
            await hub.stop(deadline_s=stop_deadline_s)
