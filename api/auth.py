"""Bearer keys: each key belongs to one account, and everything the API answers is scoped to that account.

A key is looked up in constant time (`constant_time_account`): every configured key is compared, by digest,
so the time an answer takes says nothing of how close a guess came.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from litestar.exceptions import NotAuthorizedException

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pixelpipe"'}


def constant_time_account(key: str, api_keys: Mapping[str, str]) -> str | None:
    """The account of ``key``, or None. Compares SHA-256 digests of every configured key with
    `hmac.compare_digest`, without stopping at a match: neither the length nor a prefix of a key leaks."""
    given = hashlib.sha256(key.encode()).digest()
    found = None
    for candidate, account in api_keys.items():
        if hmac.compare_digest(given, hashlib.sha256(candidate.encode()).digest()):
            found = account
    return found


def account_of(authorization: str | None, api_keys: Mapping[str, str]) -> str:
    """The account of a bearer key, or `NotAuthorizedException` (401)."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("missing bearer key", headers=CHALLENGE)
    account = constant_time_account(key.strip(), api_keys)
    if account is None:
        raise NotAuthorizedException("unknown key", headers=CHALLENGE)
    return account
