"""The webhook outbox: deliveries on disk (SQLite, WAL, in the data dir) until they are delivered or given up,
and finished ones for a while, so that a replayed notice is not delivered again.

Owns the outbox's schema and its migrations (``PRAGMA user_version``), and erasure from it (`Outbox.forget`,
with ``secure_delete`` and a WAL checkpoint, so deleted rows leave the file). Must never be called from two
threads: the dispatcher runs it on one thread of its own.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from notices.deliveries import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    seq: int
    delivery: Delivery
    attempts: int
    next_attempt_at: float


_OUTBOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT NOT NULL UNIQUE,
    webhook_id      TEXT NOT NULL,
    lane            TEXT NOT NULL,
    notice_id       TEXT NOT NULL,
    account         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    created_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries (lane, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (finished_at) WHERE state != 'pending';
"""
# Applied in order to an outbox whose ``PRAGMA user_version`` is below their number (1-based); an outbox from
# before a migration stays readable, its old rows get the new column's default.
_OUTBOX_MIGRATIONS: Final = (
    # 1: the recipient's tag, so that an erasure finds their deliveries (`Outbox.forget`).
    (
        "ALTER TABLE deliveries ADD COLUMN recipient_tag TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS deliveries_recipient ON deliveries (account, recipient_tag)",
    ),
)


class Outbox:
    """Webhook deliveries on disk (SQLite, WAL): pending ones until they are delivered or given up, finished
    ones for ``keep_finished_s`` so that a replayed notice is not delivered again. Blocking and not
    thread-safe: the dispatcher calls it from one thread of its own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A deleted row's bytes are zeroed, not left in a free page: erasure (`forget`) must leave the file.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_OUTBOX_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for number, statements in enumerate(_OUTBOX_MIGRATIONS, start=1):
            with self._transaction():  # a migration and its version number: both or neither
                if int(self._db.execute("PRAGMA user_version").fetchone()[0]) >= number:
                    continue
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")

    def add(self, deliveries: Sequence[Delivery], now: float) -> set[str]:
        """Insert; a delivery already known (pending or recently finished) is ignored. The lanes that got
        one. Synced to disk before it returns: the caller may commit its source after this."""
        self._db.execute("PRAGMA synchronous=FULL")
        before = self._db.total_changes
        lanes: set[str] = set()
        with self._transaction():
            for d in deliveries:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (delivery_id, webhook_id, lane, notice_id, account, "
                    "message_id, type, body, next_attempt_at, created_at, recipient_tag) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (d.delivery_id, d.webhook_id, d.lane, d.notice_id, d.account, d.message_id, d.type,
                     d.body, now, now, d.recipient_tag),
                )  # fmt: skip
                if cursor.rowcount:
                    lanes.add(d.lane)
        # Updates of attempts may be lost at a power cut (the delivery is then sent again): no fsync each.
        self._db.execute("PRAGMA synchronous=NORMAL")
        log.debug("outbox: %d of %d deliveries new", self._db.total_changes - before, len(deliveries))
        return lanes

    def head(self, lane: str) -> PendingDelivery | None:
        row = self._db.execute(
            "SELECT seq, delivery_id, webhook_id, lane, notice_id, account, message_id, type, body, "
            "recipient_tag, attempts, next_attempt_at FROM deliveries WHERE lane = ? AND state = 'pending' "
            "ORDER BY seq LIMIT 1",
            (lane,),
        ).fetchone()
        if row is None:
            return None
        return PendingDelivery(row[0], Delivery(*row[1:10]), row[10], row[11])

    def heads(self) -> list[tuple[str, float]]:
        """Every lane with something pending, and when its first delivery is due."""
        rows = self._db.execute(
            "SELECT d.lane, d.next_attempt_at FROM deliveries d JOIN "
            "(SELECT lane, min(seq) AS first FROM deliveries WHERE state = 'pending' GROUP BY lane) h "
            "ON d.seq = h.first"
        ).fetchall()
        return [(str(lane), float(at)) for lane, at in rows]

    def retry_at(self, seq: int, attempts: int, next_attempt_at: float) -> None:
        self._db.execute(
            "UPDATE deliveries SET attempts = ?, next_attempt_at = ? WHERE seq = ?",
            (attempts, next_attempt_at, seq),
        )

    def finish(self, seq: int, state: str, attempts: int, now: float) -> None:
        self._db.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, finished_at = ? WHERE seq = ?",
            (state, attempts, now, seq),
        )

    def purge(self, finished_before: float) -> int:
        cursor = self._db.execute(
            "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?", (finished_before,)
        )
        return cursor.rowcount

    def forget(
        self, account: str, recipient_tags: Iterable[str], message_ids: Iterable[str] = ()
    ) -> dict[str, int]:
        """Delete an erased recipient's deliveries, pending and finished, found by recipient tag or by
        message id (rows from before tags were kept have only the latter). Counts by state."""
        tags, messages = sorted(set(recipient_tags)), sorted(set(message_ids))
        counts: collections.Counter[str] = collections.Counter()
        with self._transaction():
            for column, values in (("recipient_tag", tags), ("message_id", messages)):
                for start in range(0, len(values), 500):
                    chunk = values[start : start + 500]
                    where = f"account = ? AND {column} IN ({','.join('?' * len(chunk))})"
                    rows = self._db.execute(
                        f"SELECT state, count(*) FROM deliveries WHERE {where} GROUP BY state",  # noqa: S608 - no values in it
                        (account, *chunk),
                    ).fetchall()
                    counts.update({str(state): int(n) for state, n in rows})
                    self._db.execute(f"DELETE FROM deliveries WHERE {where}", (account, *chunk))  # noqa: S608
        if counts:  # the WAL still holds the rows as they were written: into the file, and the WAL emptied
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return dict(counts)

    def messages_of(self, account: str, recipient_tags: Iterable[str]) -> list[str]:
        """The message ids of these recipients' deliveries (an erasure by tag: which attempts not to log)."""
        tags = sorted(set(recipient_tags))
        found: set[str] = set()
        for start in range(0, len(tags), 500):
            chunk = tags[start : start + 500]
            rows = self._db.execute(
                "SELECT DISTINCT message_id FROM deliveries "  # noqa: S608 - no values in it
                f"WHERE account = ? AND recipient_tag IN ({','.join('?' * len(chunk))})",
                (account, *chunk),
            ).fetchall()
            found.update(str(m) for (m,) in rows)
        return sorted(found)

    def pending(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0])

    def states(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
