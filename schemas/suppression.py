"""Do-not-track: the recipients of an account whose hits are answered but never recorded.

A token carries a keyed tag of its recipient (`schemas.tokens.recipient_tag`), so the edge and the
processors check a hit against this set without a lookup. The set holds, for each suppressed recipient, its
tag under every key of the keyring (a token signed before a rotation still matches). In-memory and
thread-safe; who fills it (the API in the same process, a refresh from the store) is the wiring's business.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from schemas.tokens import Keyring, normalize_recipient


class DoNotTrack:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._tags: frozenset[bytes] = frozenset()
        self._by_recipient: dict[tuple[str, str], frozenset[bytes]] = {}
        self._lock = threading.Lock()

    def __contains__(self, tag: bytes) -> bool:
        return tag in self._tags  # a frozenset swapped whole: reads need no lock

    def __len__(self) -> int:
        return len(self._by_recipient)

    def suppressed_hex(self, tag_hex: str) -> bool:
        try:
            return bytes.fromhex(tag_hex) in self._tags
        except ValueError:
            return False

    def replace(self, recipients: Iterable[tuple[str, str]]) -> None:
        """Make the set exactly these (account, recipient) pairs."""
        by_recipient = {(a, normalize_recipient(r)): self.keyring.recipient_tags(a, r) for a, r in recipients}
        with self._lock:
            self._by_recipient = by_recipient
            self._tags = frozenset().union(*by_recipient.values())

    def add(self, account: str, recipient: str) -> None:
        with self._lock:
            key = (account, normalize_recipient(recipient))
            self._by_recipient[key] = self.keyring.recipient_tags(account, recipient)
            self._tags = frozenset().union(*self._by_recipient.values())

    def remove(self, account: str, recipient: str) -> None:
        with self._lock:
            self._by_recipient.pop((account, normalize_recipient(recipient)), None)
            self._tags = frozenset().union(*self._by_recipient.values())
