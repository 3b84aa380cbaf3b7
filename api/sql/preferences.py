"""The SQL of the tracking preferences page (`api.preferences_routes`): who the page's recipient is (their
tags, never kept with the address), their consent state, their suppression, and the account's mode. Pure
builders and shapers, each scoped by ``{account:String}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from api.sql.common import Query
from schemas.consent import ConsentMode, ConsentState

_TAGS: Final = "account = {account:String} AND tag IN {tags:Array(String)}"
# Suppressions the sender set (do-not-track, erasure): a recipient's grant on the page never lifts them.
SENDER_REASONS: Final = frozenset({"opt_out", "erased"})


def send_recipient(db: str, account: str, message_id: str) -> Query:
    """The address a message was sent to (to compute the recipient's tags under every key; never stored by
    the page)."""
    return Query(
        f"SELECT recipient FROM {db}.sends WHERE account = {{account:String}} "
        "AND message_id = {message_id:String} LIMIT 1",
        {"account": account, "message_id": message_id},
    )


def known_tags(db: str, account: str, tags: Sequence[str]) -> Query:
    """The tag sets stored for the recipient of any of ``tags`` (hex): with their consent changes and on the
    suppression list (tags of keys since retired; all the page knows when the send is gone)."""
    return Query(
        f"SELECT recipient_tags FROM {db}.consent_events "
        "WHERE account = {account:String} AND hasAny(recipient_tags, {tags:Array(String)}) "
        f"UNION ALL SELECT recipient_tags FROM {db}.suppression_tags "
        "WHERE account = {account:String} AND hasAny(recipient_tags, {tags:Array(String)})",
        {"account": account, "tags": list(tags)},
    )


def consent_state(db: str, account: str, tags: Sequence[str]) -> Query:
    """The newest consent change of the recipient of ``tags``: (state,), or no row."""
    return Query(
        f"SELECT argMax(state, at) FROM {db}.consent_events WHERE {_TAGS} HAVING count() > 0",
        {"account": account, "tags": list(tags)},
    )


def suppression(db: str, account: str, tags: Sequence[str]) -> Query:
    """The newest suppression row of the recipient of ``tags``: (tracking, reason), or no row."""
    return Query(
        f"SELECT argMax(tracking, updated_at), argMax(reason, updated_at) FROM {db}.suppression_tags "
        f"WHERE {_TAGS} HAVING count() > 0",
        {"account": account, "tags": list(tags)},
    )


def consent_mode(db: str, account: str) -> Query:
    """The account's consent mode: (mode,), or no row (``off``)."""
    return Query(
        f"SELECT argMax(consent_mode, updated_at) FROM {db}.account_settings "
        "WHERE account = {account:String} HAVING count() > 0",
        {"account": account},
    )


def state_of(rows: Iterable[Sequence[Any]]) -> ConsentState:
    """`consent_state`'s answer: unknown without a row."""
    return next((ConsentState(row[0]) for row in rows), ConsentState.UNKNOWN)


def mode_of(rows: Iterable[Sequence[Any]]) -> ConsentMode:
    """`consent_mode`'s answer: ``off`` without a row."""
    return next((ConsentMode(row[0]) for row in rows if row[0]), ConsentMode.OFF)
