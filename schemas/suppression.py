"""Do-not-track: the recipients of an account whose hits are answered but never recorded.

A token carries a keyed tag of its recipient (`schemas.tokens.recipient_tag`), so the edge and the
processors check a hit against this set without a lookup. The set holds, for each suppressed recipient, its
tag under every key of the keyring (a token signed before a rotation still matches). It is filled by plain
address (the API in the same process) or by tags (a refresh from the store, which keeps only tags:
``suppression_tags``; the privacy topic, `schemas.privacy_change`): a recipient is the set of their tags, and
a change by tags replaces or removes every recipient it shares a tag with. In-memory and thread-safe; who
fills it is the wiring's business.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from schemas.tokens import Keyring


class DoNotTrack:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._tags: frozenset[bytes] = frozenset()
        self._recipient_of: dict[bytes, frozenset[bytes]] = {}  # each tag -> every tag of its recipient
        self._lock = threading.Lock()
        self.version = 0  # bumped by every change: a reload that read the store before one must not undo it
        self._counted = (0, 0)  # (version, recipients)

    def __contains__(self, tag: bytes) -> bool:
        return tag in self._tags  # a frozenset swapped whole: reads need no lock

    def __len__(self) -> int:
        """Suppressed recipients (counted once per change: /readyz asks often)."""
        version, count = self._counted
        if version != self.version:
            with self._lock:
                self._counted = version, count = self.version, len(set(self._recipient_of.values()))
        return count

    def suppressed_hex(self, tag_hex: str) -> bool:
        try:
            return bytes.fromhex(tag_hex) in self._tags
        except ValueError:
            return False

    def replace(self, recipients: Iterable[Iterable[bytes]], *, if_version: int | None = None) -> bool:
        """Make the set exactly these recipients, each given by their tags (what the store keeps:
        `api.privacy.load_suppressed`); with ``if_version``, only if nothing changed since `version` was that
        (else the recipients may be older than the set). Whether it was replaced."""
        recipient_of: dict[bytes, frozenset[bytes]] = {}
        for tags in recipients:
            frozen = frozenset(tags)
            recipient_of.update(dict.fromkeys(frozen, frozen))
        with self._lock:
            if if_version is not None and if_version != self.version:
                return False
            self._recipient_of = recipient_of
            self._tags = frozenset(recipient_of)
            self.version += 1
            return True

    def suppressed(self, account: str, recipient: str) -> bool:
        """Whether this address (any spelling of it: `schemas.recipient`) is suppressed, by its tag under any
        key of the keyring."""
        tags = self._tags
        return any(tag in tags for tag in self.keyring.recipient_tags(account, recipient))

    def add(self, account: str, recipient: str) -> None:
        self.add_tags(self.keyring.recipient_tags(account, recipient))

    def remove(self, account: str, recipient: str) -> None:
        self.remove_tags(self.keyring.recipient_tags(account, recipient))

    def add_tags(self, tags: Iterable[bytes]) -> None:
        self.apply([(frozenset(tags), True)])

    def remove_tags(self, tags: Iterable[bytes]) -> None:
        self.apply([(frozenset(tags), False)])

    def apply(self, changes: Iterable[tuple[frozenset[bytes], bool]]) -> None:
        """``(tags of one recipient, suppressed)``, in order; the set is swapped once per call (a batch)."""
        with self._lock:
            recipient_of = dict(self._recipient_of)
            for tags, suppressed in changes:
                for tag in tags:
                    for old in recipient_of.get(tag, ()):
                        recipient_of.pop(old, None)
                if suppressed and tags:
                    recipient_of.update(dict.fromkeys(tags, tags))
            self._recipient_of = recipient_of
            self._tags = frozenset(recipient_of)
            self.version += 1
