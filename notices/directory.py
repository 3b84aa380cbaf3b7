"""The directory of webhooks: every live webhook, loaded from the ``webhooks`` table (`store_webhooks`, its
secret unsealed) and reloaded at most every ``refresh_s`` (`WebhookDirectory`).

Must never log a secret, nor match notices against an empty list it failed to load (it raises instead).
The rows are written by the API (`api/webhooks.py`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence

from schemas.notices import Webhook
from schemas.secret import Secret
from schemas.store import Store, StoreError
from schemas.tokens import Keyring
from schemas.webhook_secrets import SecretUnreadable, unseal

log = logging.getLogger(__name__)


def store_webhooks(store: Store, keyring: Keyring) -> Callable[[], list[Webhook]]:
    """A loader of every live webhook from the ``webhooks`` table (blocking), with its secret unsealed
    (`schemas.webhook_secrets`; a row from before sealing holds it plain). A secret that does not open leaves
    the webhook with an empty one, which `WebhookDispatcher` refuses to sign with; it is logged once."""
    unreadable: set[str] = set()

    def open_secret(account: str, webhook_id: str, stored: str) -> Secret:
        try:
            return Secret(unseal(keyring, stored, account=account, webhook_id=webhook_id))
        except SecretUnreadable as exc:
            if webhook_id not in unreadable:
                unreadable.add(webhook_id)
                log.error(  # noqa: TRY400 - the reason is the message; a traceback would add nothing
                    "webhooks: the secret of %s (account %s) cannot be read: %s", webhook_id, account, exc
                )
            return Secret("")

    def load() -> list[Webhook]:
        rows = store.query(
            f"""SELECT account, webhook_id, url, events, secret, created_at
                FROM {store.database}.webhooks FINAL WHERE NOT deleted"""  # noqa: S608 - a validated name
        )
        return [Webhook(a, w, u, tuple(e), open_secret(a, w, s), c) for a, w, u, e, s, c in rows]

    return load


class WebhookDirectory:
    """Every live webhook, reloaded at most every ``refresh_s`` (a new or deleted webhook takes effect within
    that). A failed reload keeps the last list; with no list yet, `fresh` raises `StoreError`, so that
    notices are not matched against nothing (the caller retries them)."""

    def __init__(
        self,
        load: Callable[[], Sequence[Webhook]],
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.clock = clock
        self._by_account: dict[str, list[Webhook]] = {}
        self._by_id: dict[str, Webhook] = {}
        self._loaded_at: float | None = None
        self._stale = False  # a change this process made: reload before the next match
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        """A webhook was created or deleted in this process (the API role beside the dispatcher): the next
        `fresh` reloads, so a notice made after the change meets it (from any thread)."""
        self._stale = True

    def _current(self) -> bool:
        return (
            not self._stale
            and self._loaded_at is not None
            and self.clock() - self._loaded_at < self.refresh_s
        )

    async def fresh(self) -> None:
        if self._current():
            return
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._current():
                return
            self._stale = False  # a change during the load marks it stale again
            try:
                webhooks = await asyncio.to_thread(self._load)
            except StoreError as exc:
                if self._loaded_at is None:
                    raise
                log.warning("webhooks: could not reload the directory (%s); keeping the last one", exc)
                self._loaded_at = self.clock()
                return
            by_account: dict[str, list[Webhook]] = collections.defaultdict(list)
            for w in webhooks:
                by_account[w.account].append(w)
            self._by_account = dict(by_account)
            self._by_id = {w.webhook_id: w for w in webhooks}
            self._loaded_at = self.clock()

    def of_account(self, account: str) -> list[Webhook]:
        return self._by_account.get(account, [])

    def get(self, webhook_id: str) -> Webhook | None:
        return self._by_id.get(webhook_id)
