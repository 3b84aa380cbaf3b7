"""The SQL of the tracking preferences page (`api.preferences_routes`): who the page's recipient is (their
tags, never kept with the address). Pure builders, each scoped by ``{account:String}``; the consent states and
suppression reasons are read with `api.sql.consent`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from api.sql.common import Query

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
