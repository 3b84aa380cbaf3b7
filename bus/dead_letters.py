"""Where records go that a loop reading the bus cannot store (the processors' raw hits, the delivery
loader's events): the `DeadLetters` port, its in-process adapter `LogDeadLetters` (the Kafka one is
`processors.kafka_source.DeadLetterPublisher`), and `dead_letter`, the one way a loop hands a record over:
retried while the dead letters are away, so that nothing is committed past a record that is not safe yet."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Final, Protocol

from bus.port import BusRecord
from schemas.backoff import Backoff, retrying

log = logging.getLogger(__name__)

DEAD_LETTER_BACKOFF: Final = Backoff(first_s=0.1, max_s=5.0)  # a dead letter while its topic is away


class DeadLetters(Protocol):
    """Where records that cannot be stored go, with the reason; `send` returns once they are safe."""

    async def start(self) -> None: ...

    async def send(self, record: BusRecord, reason: str) -> None: ...

    async def stop(self) -> None: ...


class LogDeadLetters:
    """The embedded bus has no dead-letter topic: log (the callers count)."""

    async def start(self) -> None:
        return None

    async def send(self, record: BusRecord, reason: str) -> None:
        log.error("dead letter %s: %s", record.source, reason)

    async def stop(self) -> None:
        return None


async def dead_letter(
    dead_letters: DeadLetters, record: BusRecord, reason: str, *, give_up: Callable[[], bool]
) -> None:
    """Hand a record to the dead letters; retried while their topic is away (the caller commits nothing
    meanwhile), given up once ``give_up()`` (stopping: left uncommitted, read again after the restart)."""
    await retrying(
        functools.partial(dead_letters.send, record, reason),
        what=f"dead-lettering {record.source}",
        backoff=DEAD_LETTER_BACKOFF,
        log=log,
        give_up=give_up,
    )
