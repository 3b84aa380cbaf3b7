"""The attempt log: one row per webhook delivery attempt, buffered and inserted into ``webhook_deliveries``.

Bounded (when the store is away the oldest rows go first: it is a log, the outbox holds the state). Must
never log an attempt of a message erased since (`AttemptLog.forget`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from notices.outbox import PendingDelivery
from schemas.notices import DELIVERY_COLUMNS
from schemas.store import Store, StoreError

log = logging.getLogger(__name__)


class AttemptLog:
    """Buffers one row per attempt for the ``webhook_deliveries`` table; `flush` inserts them. Bounded: when
    the store is away the oldest rows go first (it is a log; the outbox holds the state)."""

    def __init__(self, store: Store | None, max_rows: int = 50_000) -> None:
        self.store = store
        self.max_rows = max_rows
        self._rows: collections.deque[list[Any]] = collections.deque(maxlen=max_rows)
        # Erased messages (account, message id) -> until when: an attempt that was in flight during the
        # erasure is not logged after it (the API deletes the logged rows once the outbox forgot them).
        self._erased: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # `forget` comes from the API's thread
        # Held while a flush's rows are on their way to the store: `forget` waits for them, so the delete
        # that follows it (api.erasure_residue) finds them stored rather than missing rows still in flight.
        self._flushing = threading.Lock()

    def record(
        self,
        *,
        pending: PendingDelivery,
        attempt: int,
        status: str,
        response_code: int,
        error: str,
        at: float,
        next_attempt_at: float | None,
        duration_ms: int,
    ) -> None:
        if self.store is None:
            return
        d = pending.delivery
        row = [
            d.account, d.webhook_id, d.delivery_id, d.notice_id, d.message_id, d.type, attempt, status,
            response_code, error, datetime.fromtimestamp(at, UTC),
            None if next_attempt_at is None else datetime.fromtimestamp(next_attempt_at, UTC), duration_ms,
        ]  # fmt: skip
        with self._lock:
            if (d.account, d.message_id) not in self._erased:
                self._rows.append(row)

    async def flush(self) -> None:
        if self.store is None or not self._rows:
            return
        await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        assert self.store is not None  # noqa: S101 - flush checked
        with self._flushing:
            with self._lock:
                rows = list(self._rows)
                self._rows.clear()
            if not rows:
                return
            try:
                self.store.insert("webhook_deliveries", DELIVERY_COLUMNS, rows)
            except StoreError as exc:
                log.warning("webhooks: could not log %d attempts (%s); keeping them", len(rows), exc)
                with self._lock:  # not those of messages erased meanwhile
                    self._rows.extendleft(r for r in reversed(rows) if (r[0], r[4]) not in self._erased)

    def forget(self, account: str, message_ids: Iterable[str], keep_s: float = 3600.0) -> int:
        """Drop the unflushed rows of erased messages and log none of theirs for ``keep_s``; how many. Waits
        for a flush in progress (blocking: never from the event loop's thread)."""
        now = time.monotonic()
        with self._flushing, self._lock:
            self._erased = {key: until for key, until in self._erased.items() if until > now}
            self._erased.update(dict.fromkeys(((account, m) for m in message_ids), now + keep_s))
            kept = [r for r in self._rows if (r[0], r[4]) not in self._erased]
            dropped = len(self._rows) - len(kept)
            self._rows.clear()
            self._rows.extend(kept)
        return dropped
