"""The edge's directory of mail-service accounts (`deliveries.port.MailServiceDirectory`): an in-memory map
from the ingest id of a URL to the account's `MailService`, its credentials unsealed once, when a change
arrives, never per request.

Fed by whoever knows the changes: in one process the store at start (`load_mail_services`) and the API at
once on each change; on Kafka the compacted mail-services topic (`deliveries.directory_feed`), read from its
beginning. Each change is the config's whole state (`schemas.mail_services.StoredMailService`); per account
and provider the newest ``updated_at`` wins, so a late or repeated record never undoes a newer one (a deleted
config stays known as deleted). The map is replaced whole on each change (copy, change, swap): `find`, on the
event loop, always sees one state or the next, never half of one, while changes come from the API's threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Final

from deliveries.port import MailService
from schemas.mail_services import MAIL_SERVICE_COLUMNS, StoredMailService, open_credentials
from schemas.store import Store
from schemas.tokens import Keyring
from schemas.webhook_secrets import SecretUnreadable

log = logging.getLogger(__name__)

_Key = tuple[str, str]  # account, provider
_LIVE: Final = "SELECT {columns} FROM {db}.mail_services FINAL WHERE NOT deleted"


class MailServices:
    """The mail-service accounts one edge knows (see the module docstring)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._by_ingest_id: dict[str, MailService] = {}
        self._latest: dict[_Key, StoredMailService] = {}  # deleted ones too: what a late record must not undo
        self._lock = threading.Lock()

    def find(self, ingest_id: str) -> MailService | None:
        return self._by_ingest_id.get(ingest_id)

    def __len__(self) -> int:
        return len(self._by_ingest_id)

    def apply(self, changes: Iterable[StoredMailService]) -> int:
        """Take these changes in, in order; how many changed the directory."""
        with self._lock:
            latest = dict(self._latest)
            applied = 0
            for change in changes:
                held = latest.get((change.account, change.provider))
                if held is None or change.updated_at_ms >= held.updated_at_ms:
                    latest[(change.account, change.provider)] = change
                    applied += 1
            if applied:
                self._by_ingest_id = self._services(latest.values())
                self._latest = latest
            return applied

    def apply_one(self, change: StoredMailService) -> None:
        """The API's hook in one process (`api.mail_services.MailServicePropagation.apply_here`)."""
        self.apply([change])

    def _services(self, configs: Iterable[StoredMailService]) -> dict[str, MailService]:
        services: dict[str, MailService] = {}
        for stored in configs:
            if stored.deleted:
                continue
            known = self._by_ingest_id.get(stored.ingest_id)
            if known is not None and self._latest.get((stored.account, stored.provider)) is stored:
                services[stored.ingest_id] = known  # unchanged: already unsealed
                continue
            try:
                credentials = open_credentials(self.keyring, stored)
            except SecretUnreadable as exc:  # its URL answers as unknown until the keys are given again
                what = f"{stored.account}'s {stored.provider} config"
                log.warning("mail services: %s does not open (%s)", what, exc)
                continue
            services[stored.ingest_id] = MailService(
                stored.account, stored.provider, stored.ingest_id, credentials, stored.options
            )
        return services


def load_mail_services(store: Store) -> list[StoredMailService]:
    """Every config not deleted, from the store (the directory's start in a process with a store)."""
    sql = _LIVE.format(columns=", ".join(MAIL_SERVICE_COLUMNS), db=store.database)
    return [StoredMailService.from_row(row) for row in store.query(sql)]
