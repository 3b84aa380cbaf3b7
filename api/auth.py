"""Bearer keys: each key belongs to one account, and everything the API answers is scoped to that account."""

from __future__ import annotations

from collections.abc import Mapping

from litestar.exceptions import NotAuthorizedException

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pixelpipe"'}


def account_of(authorization: str | None, api_keys: Mapping[str, str]) -> str:
    """The account of a bearer key, or `NotAuthorizedException` (401)."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("missing bearer key", headers=_CHALLENGE)
    account = api_keys.get(key.strip())
    if account is None:
        raise NotAuthorizedException("unknown key", headers=_CHALLENGE)
    return account
