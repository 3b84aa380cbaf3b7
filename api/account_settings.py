"""An account's settings (issue 19): its consent mode, its tracking base URL (a branded domain) and whether
sends not allowed individual tracking get the aggregate pixel; their rules, and this process's copy.

Stored in ``account_settings`` (0009, ``aggregate_opens`` 0010), newest row per account. A registration
reads them for every message, so each API process keeps them (`AccountSettingsCache`): read from the store
at most once per `SETTINGS_TTL_S` per account, and dropped at once in the process that changed them. So a
change made through one API process is seen by that process at once and by every other within
`SETTINGS_TTL_S` (a registration in that window may still follow the old settings).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from api.sql import consent as sql
from api.sql.common import Query
from schemas.consent import ConsentMode
from schemas.errors import PixelpipeError

SETTINGS_TTL_S: Final = 1.0
MAX_BASE_URL_CHARS: Final = 512
AGGREGATE_OPENS_DEFAULT: Final = True  # the exempt aggregate open rate, unless the sender turns it off


class BadSetting(PixelpipeError, ValueError):
    """A setting that cannot be accepted; the message names it (answered as 400)."""


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """``tracking_base_url`` None: the process's public URL (``PIXELPIPE_PUBLIC_URL``)."""

    consent_mode: ConsentMode = ConsentMode.OFF
    tracking_base_url: str | None = None
    aggregate_opens: bool = AGGREGATE_OPENS_DEFAULT

    def answer(self) -> dict[str, Any]:
        return {
            "consent_mode": self.consent_mode.value,
            "tracking_base_url": self.tracking_base_url,
            "aggregate_opens": self.aggregate_opens,
        }


DEFAULT: Final = AccountSettings()


def check_base_url(url: str, *, field: str = "tracking_base_url") -> str:
    """A tracking base URL as stored: an absolute http(s) URL with a host, optionally a path (a proxy may
    route one), no user name or password, query or fragment; without its trailing slash. `BadSetting`
    naming ``field`` otherwise."""
    if len(url) > MAX_BASE_URL_CHARS:
        raise BadSetting(f"{field}: longer than {MAX_BASE_URL_CHARS} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise BadSetting(f"{field}: not a URL") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadSetting(
            f"{field}: must be an absolute http(s) URL with a host, such as https://t.example.com"
        )
    if "@" in parts.netloc:
        raise BadSetting(f"{field}: must not carry a user name or password")
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise BadSetting(f"{field}: must not carry a query or a fragment")
    if any(c.isspace() or ord(c) < 0x20 for c in url.strip()):
        raise BadSetting(f"{field}: must not hold spaces or control characters")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path}".rstrip("/")


def settings_of(row: tuple[Any, ...] | None) -> AccountSettings:
    """The settings of an `api.sql.consent.account_settings` row (None: never set, the defaults)."""
    if row is None:
        return DEFAULT
    mode, base_url, aggregate = row
    try:
        consent_mode = ConsentMode(mode)
    except ValueError:
        consent_mode = ConsentMode.OFF
    return AccountSettings(consent_mode, base_url or None, bool(aggregate))


Read = Callable[[Query], list[tuple[Any, ...]]]


class AccountSettingsCache:
    """Per (database, account), the settings read and when: reused for `SETTINGS_TTL_S`. Thread-safe
    (handlers run in worker threads); bounded by the accounts of the deployment's API keys."""

    def __init__(self, ttl_s: float = SETTINGS_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[tuple[str, str], tuple[float, AccountSettings]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AccountSettingsCache({len(self._kept)} kept)"

    def get(self, run: Read, db: str, account: str) -> AccountSettings:
        now = self._clock()
        with self._lock:
            kept = self._kept.get((db, account))
        if kept is not None and now - kept[0] < self.ttl_s:
            return kept[1]
        rows = run(sql.account_settings(db, account))
        settings = settings_of(rows[0] if rows else None)
        with self._lock:
            self._kept[db, account] = (now, settings)
        return settings

    def forget(self, db: str, account: str) -> None:
        """Drop the account's settings (this process changed them)."""
        with self._lock:
            self._kept.pop((db, account), None)
