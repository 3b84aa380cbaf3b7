"""The dashboard's sign-in session: a signed, expiring cookie that stands for an API key, and its CSRF token.

A session is stateless: the cookie carries the account, when it was issued and when it expires, a random
session id and a fingerprint of the API key it was signed in with, signed with HMAC-SHA256 under a key
derived (HKDF-SHA256, its own info string) from a `PIXELPIPE_SECRET` key. The cookie reads
``v1.<key id>.<base64url(payload)>.<base64url(tag)>``; the payload is JSON and not secret (no key is in it:
the fingerprint is an HMAC of the key under the session key, meaningless without it).

- Removing (or rotating) a key in ``PIXELPIPE_API_KEYS`` ends its sessions: a session is valid only while a
  configured key has its fingerprint, for its account.
- Rotating ``PIXELPIPE_SECRET=2:new,1:old`` signs new sessions under key 2 and keeps those under key 1; a
  session signed under a key no longer held is refused.
- The CSRF token is an HMAC of the session id: the server keeps nothing to check it.
- Signing out adds the session id to `SignedOut`, this process's set of revoked ids, each kept until its
  session would have expired anyway. Another process does not know it (the browser drops the cookie; a copy
  of it stays valid there until it expires).

Pure: times are passed in, the random id is drawn by `Sessions.issue` only. Never logs, and no repr shows a
key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.auth import constant_time_account
from schemas.errors import PixelpipeError
from schemas.tokens import Keyring

COOKIE: Final = "pixelpipe_session"
VERSION: Final = "v1"
_INFO: Final = b"pixelpipe dashboard session v1"
_SKEW_S: Final = 60  # a session issued this far in the future (another process's clock) is still taken
MAX_SIGNED_OUT: Final = 100_000


@dataclass(frozen=True, slots=True)
class Session:
    """What a valid cookie says."""

    account: str
    issued_at: int  # epoch seconds
    expires_at: int  # epoch seconds
    session_id: str  # 16 random bytes, base64url
    key_fingerprint: str  # `SessionKeys.fingerprint` of the API key it was signed in with
    key_id: int  # the `PIXELPIPE_SECRET` key it is signed under


class SessionRefused(PixelpipeError, ValueError):
    """A cookie that does not stand for a session (any more); the message says why, never with a secret."""


class _Payload(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    account: str
    issued_at: int
    expires_at: int
    session_id: str
    key_fingerprint: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """The session keys derived from each `PIXELPIPE_SECRET` key, and the fingerprints of the configured API
    keys under each. Its repr names key ids only."""

    __slots__ = ("_accounts", "_keys", "_signing_id")

    def __init__(self, keyring: Keyring, api_keys: Mapping[str, str]) -> None:
        self._keys: dict[int, bytes] = {}
        for key_id, secret in keyring.keys:
            if key_id not in self._keys:  # the first key of an id signs, as in `Keyring`
                hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
                self._keys[key_id] = hkdf.derive(secret)
        self._signing_id = keyring.signing_key[0]
        # Per key id: fingerprint -> account, of every configured API key.
        self._accounts = {
            key_id: {self._fingerprint(key, api_key): account for api_key, account in api_keys.items()}
            for key_id, key in self._keys.items()
        }

    def __repr__(self) -> str:
        return f"SessionKeys(key_ids={tuple(self._keys)})"

    @staticmethod
    def _fingerprint(key: bytes, api_key: str) -> str:
        return _b64(hmac.digest(key, b"api key\x1f" + api_key.encode(), hashlib.sha256)[:16])

    def fingerprint(self, api_key: str) -> str:
        """The API key's fingerprint under the signing key: tells keys apart, reveals nothing of them."""
        return self._fingerprint(self._keys[self._signing_id], api_key)

    def _tag(self, key_id: int, signed: str) -> bytes | None:
        key = self._keys.get(key_id)
        return None if key is None else hmac.digest(key, signed.encode(), hashlib.sha256)

    def issue(self, account: str, api_key: str, *, now: int, lifetime_s: int, session_id: str) -> str:
        """The cookie value of a new session of ``account``, signed in with ``api_key``."""
        payload = _Payload(account, now, now + lifetime_s, session_id, self.fingerprint(api_key))
        signed = f"{VERSION}.{self._signing_id}.{_b64(msgspec.json.encode(payload))}"
        tag = self._tag(self._signing_id, signed)
        assert tag is not None  # noqa: S101 - the signing key is one of the keys
        return f"{signed}.{_b64(tag)}"

    def read(self, cookie: str, *, now: int) -> Session:
        """The session ``cookie`` stands for, or `SessionRefused` saying why."""
        signed, _, tag_text = cookie.rpartition(".")
        version, _, rest = signed.partition(".")
        key_text, _, payload_text = rest.partition(".")
        if version != VERSION or not key_text.isdigit() or len(key_text) > 3 or not payload_text:
            raise SessionRefused("the session cookie is not one this server issued")
        key_id = int(key_text)
        expected = self._tag(key_id, signed)
        if expected is None:
            raise SessionRefused("the session was signed under a key PIXELPIPE_SECRET no longer holds")
        try:
            tag = _unb64(tag_text)
        except (binascii.Error, ValueError):
            tag = b""
        if not hmac.compare_digest(tag, expected):
            raise SessionRefused("the session cookie is not one this server issued")
        try:
            payload = msgspec.json.decode(_unb64(payload_text), type=_Payload)
        except (binascii.Error, ValueError, msgspec.DecodeError):  # signed by us: only an older format
            raise SessionRefused("the session cookie is not one this server issued") from None
        if payload.expires_at <= now:
            raise SessionRefused("the session has expired; sign in again")
        if payload.issued_at > now + _SKEW_S:
            raise SessionRefused("the session cookie is not one this server issued")
        if self._accounts[key_id].get(payload.key_fingerprint) != payload.account:
            raise SessionRefused("the API key this session was signed in with is no longer configured")
        return Session(
            payload.account,
            payload.issued_at,
            payload.expires_at,
            payload.session_id,
            payload.key_fingerprint,
            key_id,
        )

    def csrf_token(self, session: Session) -> str:
        """The session's CSRF token: derived from its id, so nothing is kept to check it."""
        tag = self._tag(session.key_id, f"csrf\x1f{session.session_id}")
        assert tag is not None  # noqa: S101 - `read` gave the session: its key is held
        return _b64(tag)

    def csrf_matches(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())


@dataclass(slots=True)
class SignedOut:
    """Session ids signed out in this process, each until its session would have expired. Bounded: past
    `MAX_SIGNED_OUT` ids (after dropping the expired) the oldest sign-out is forgotten."""

    limit: int = MAX_SIGNED_OUT
    _until: dict[str, int] = field(default_factory=dict, repr=False)  # session id -> expiry, sign-out order

    def add(self, session: Session, *, now: int) -> None:
        if len(self._until) >= self.limit:
            self._until = {sid: exp for sid, exp in self._until.items() if exp > now}
            while len(self._until) >= self.limit:
                del self._until[next(iter(self._until))]
        self._until[session.session_id] = session.expires_at

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._until

    def __len__(self) -> int:
        return len(self._until)


@dataclass(slots=True)
class Sessions:
    """This process's sessions: the keys, the lifetime of a new session, whether its cookie is `Secure`,
    and the signed-out ids. The shell over `SessionKeys`: draws session ids and reads the clock."""

    keys: SessionKeys
    api_keys: Mapping[str, str] = field(repr=False)
    lifetime_s: int
    secure: bool  # the public URL is https: the cookie is sent over https only
    signed_out: SignedOut = field(default_factory=SignedOut)
    clock: Callable[[], float] = time.time

    @classmethod
    def of(
        cls, keyring: Keyring, api_keys: Mapping[str, str], *, lifetime_s: int, public_url: str
    ) -> Sessions:
        return cls(
            SessionKeys(keyring, api_keys),
            api_keys,
            lifetime_s,
            secure=public_url.lower().startswith("https://"),
        )

    def now(self) -> int:
        return int(self.clock())

    def sign_in(self, api_key: str) -> tuple[Session, str] | None:
        """A new session and its cookie value for ``api_key``, or None when no account has that key."""
        account = constant_time_account(api_key, self.api_keys)
        if account is None:
            return None
        now = self.now()
        cookie = self.keys.issue(
            account, api_key, now=now, lifetime_s=self.lifetime_s, session_id=_b64(os.urandom(16))
        )
        return self.keys.read(cookie, now=now), cookie

    def session_of(self, cookie: str) -> Session:
        """The session of a cookie; `SessionRefused` when it is not valid (any more) here."""
        session = self.keys.read(cookie, now=self.now())
        if session.session_id in self.signed_out:
            raise SessionRefused("the session was signed out; sign in again")
        return session

    def alive(self, session: Session) -> bool:
        """Whether a session read earlier still holds (a long request, such as the live feed, asks)."""
        return session.expires_at > self.now() and session.session_id not in self.signed_out

    def sign_out(self, session: Session) -> None:
        self.signed_out.add(session, now=self.now())

    def cookie_header(self, value: str, max_age: int) -> str:
        """The ``Set-Cookie`` value: the session (``max_age`` > 0) or its removal (0)."""
        secure = "; Secure" if self.secure else ""
        return f"{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}"
