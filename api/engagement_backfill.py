"""Engagement for what was stored before 0012 (issue 20), at start: sends, events, filtered hits and
delivery events without a recipient tag get their recipient's tag under the keyring's signing key, and the
engagement rollup gets their rows (`api.sql.engagement_backfill`'s steps), as
`api.privacy.migrate_plain_suppressions` turned 0004's addresses into tags.

Idempotent: it runs while some send has no tag (the sends are tagged last), and running it again adds the
same hashes to the rollup's sets (a set union) and the same times to its maxima. The tag is computed over
the recipient as registration computes it (`schemas.recipient.normalize_recipient`: 0005 already stored
every send's recipient in that form).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from api.erasure_residue import erase_engagement
from api.sql import engagement_backfill as sql
from schemas.recipient import normalize_recipient
from schemas.store import Store
from schemas.tokens import Keyring, recipient_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backfilled:
    """What a backfill found: recipients tagged, and the rows of their messages' events and delivery
    events it read into the rollup."""

    recipients: int = 0
    event_rows: int = 0
    delivery_rows: int = 0


def _chunks(rows: int) -> int:
    return max(1, -(-rows // sql.CHUNK_ROWS))


def backfill_engagement(store: Store, keyring: Keyring) -> Backfilled:
    """Tag the rows stored before 0012 and add them to the engagement rollup; nothing when every send has a
    tag already."""
    db = store.database
    if not store.query(sql.pending(db))[0][0]:
        return Backfilled()
    key = keyring.signing_key[1]
    pairs = [
        [account, stored, recipient_tag(key, account, normalize_recipient(stored)).hex()]
        for account, stored in store.query(sql.untagged_recipients(db))
    ]
    suffix = uuid.uuid4().hex[:12]  # two processes starting at once each use their own tables
    tags, messages = f"engagement_backfill_tags_{suffix}", f"engagement_backfill_messages_{suffix}"
    try:
        store.command(sql.create_tags(db, tags))
        if pairs:
            store.insert(tags, ("account", "recipient", "tag"), pairs)
        for statement in sql.create_messages(db, messages, tags):
            store.command(statement)
        for statement in sql.tag_rows(db, messages):
            store.command(statement)
        sends = store.query(f"SELECT count() FROM {db}.sends WHERE recipient_tag = ''")[0][0]
        events = store.query(sql.count_rows(db, "events", messages))[0][0]
        deliveries = store.query(sql.count_rows(db, "deliveries", messages))[0][0]
        for chunk in range(n := _chunks(sends)):
            store.command(sql.rollup_sends(db, tags, n, chunk))
        for chunk in range(n := _chunks(events)):
            store.command(sql.rollup_events(db, messages, n, chunk))
        for chunk in range(n := _chunks(deliveries)):
            store.command(sql.rollup_deliveries(db, messages, n, chunk))
        store.command(sql.tag_sends(db, tags))
    finally:
        store.command(sql.drop(db, tags))
        store.command(sql.drop(db, messages))
    log.info(
        "engagement: %d recipients stored before schema 12 tagged, %d events and %d delivery events of "
        "their messages added",
        len(pairs),
        events,
        deliveries,
    )
    return Backfilled(len(pairs), int(events), int(deliveries))


class EngagementBackfill:
    """`backfill_engagement` in a thread of its own, so that a process starts at once (the edge answers, the
    API serves) while a large store is tagged (minutes at 10 M events: BENCHMARKS section 10).

    Erasure meanwhile: the backfill may have read an erased recipient's rows before they were hidden and
    write their engagement rows after the erasure deleted them. So every erasure while it runs (this
    process's, and the privacy feed's from other processes) is recorded (`erased`), and their engagement rows
    are deleted again once the backfill has written its last row.
    """

    def __init__(self, store: Store, keyring: Keyring) -> None:
        self.store = store
        self.keyring = keyring
        self.result: Backfilled | None = None  # once it ended
        self._lock = threading.Lock()
        self._running = False
        self._erased: list[tuple[str, list[str], str | None]] = []

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        with self._lock:
            self._running = True
        threading.Thread(target=self.run, name="engagement-backfill", daemon=True).start()

    def run(self) -> None:
        """The backfill, then the engagement erasure of whoever was erased meanwhile (a failure is logged: a
        backfill cut short runs again whole at the next start)."""
        with self._lock:
            self._running = True
        try:
            self.result = backfill_engagement(self.store, self.keyring)
        except Exception:
            log.exception(
                "engagement: the backfill of rows stored before schema 12 failed; it runs again at start"
            )
        finally:
            with self._lock:
                self._running = False
                erased, self._erased = self._erased, []
            by_account: dict[str, tuple[set[str], set[str]]] = {}
            for account, tags, recipient in erased:  # one mutation per account (the feed replays many)
                tags_of, addresses = by_account.setdefault(account, (set(), set()))
                tags_of.update(tags)
                if recipient is not None:
                    addresses.add(recipient)
            for account, (tags_of, addresses) in sorted(by_account.items()):
                try:
                    erase_engagement(self.store, account, sorted(tags_of), sorted(addresses))
                except Exception:
                    log.exception("engagement: could not erase again what the backfill may have written")

    def erased(self, account: str, tags: Sequence[str], recipient: str | None = None) -> None:
        """An erasure (before its deletes): its engagement rows are deleted again when the backfill ends.
        ``recipient``: the address (None when another process answered: by tags only)."""
        with self._lock:
            if self._running:
                self._erased.append((account, list(tags), recipient))
