"""The SQL of recipients' privacy (`api.privacy`): the suppression list by keyed tags, and what an erasure
reads and deletes. Pure builders; every erasure statement selects by message id (or delivery id), never by
the address (a mutation's text stays on disk), except the lookups that find the recipient's messages and
delivery events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from api.sql.common import Query

# The rows of one account's erased messages (parameters ``account``, ``messages``).
ERASED_SCOPE: Final = "account = {account:String} AND message_id IN {messages:Array(String)}"
# The recipient's delivery events: of their messages, or about their address but matched to none (parameter
# ``deliveries`` too: their ids, read by `recipient_deliveries`, so no statement names the address).
DELIVERIES_SCOPE: Final = (
    "account = {account:String} AND (message_id IN {messages:Array(String)} "
    "OR delivery_id IN {deliveries:Array(String)})"
)


def suppressed_tags(db: str) -> Query:
    """Every suppressed recipient's tags: the newest row of each tag says whether it is tracked."""
    return Query(f"SELECT DISTINCT recipient_tags FROM {db}.suppression_tags FINAL WHERE NOT tracking", {})


def recipient_suppressed(db: str, account: str, tags: Sequence[str]) -> Query:
    """One row ``(suppressed,)``: whether a recipient with these tags (hex, under the keyring's keys) is on
    do-not-track, by the rule the edge and processors apply (`suppressed_tags`: every tag listed by a tag
    whose newest row is not tracking)."""
    return Query(
        f"SELECT count() > 0 FROM {db}.suppression_tags FINAL WHERE account = {{account:String}} "
        "AND NOT tracking AND hasAny(recipient_tags, {tags:Array(String)})",
        {"account": account, "tags": list(tags)},
    )


def plain_suppressions(db: str) -> Query:
    """0004's suppressions by address, to be turned into tags (`api.privacy.migrate_plain_suppressions`)."""
    return Query(
        f"SELECT account, recipient, reason, updated_at FROM {db}.suppressions FINAL WHERE NOT tracking", {}
    )


def known_tags(db: str, account: str, tags: Sequence[str]) -> Query:
    """The tag sets already stored for a recipient any of whose ``tags`` (hex) they share: they may carry tags
    of keys since retired."""
    return Query(
        f"SELECT recipient_tags FROM {db}.suppression_tags FINAL "
        "WHERE account = {account:String} AND hasAny(recipient_tags, {tags:Array(String)})",
        {"account": account, "tags": list(tags)},
    )


def recipient_messages(db: str, account: str, recipient: str) -> Query:
    """The messages sent to ``recipient`` (canonical), with the recipient as stored: sends are stored in the
    canonical form, ones registered before that rule by the spelling given (found case-insensitively; the
    caller keeps only those the rule says are this recipient)."""
    return Query(
        f"SELECT DISTINCT message_id, recipient FROM {db}.sends "
        "WHERE account = {account:String} AND (recipient = {recipient:String} "
        "OR lowerUTF8(trimBoth(recipient)) = {recipient:String})",
        {"account": account, "recipient": recipient},
    )


def recipient_deliveries(db: str) -> str:
    """The ids and campaigns of the delivery events about ``recipient`` (canonical; the provider's spelling
    is compared trimmed and in lower case) or about their ``messages``: parameters ``account``,
    ``recipient``, ``messages``. A read (its text is not kept)."""
    return (
        f"SELECT delivery_id, campaign_id FROM {db}.deliveries WHERE account = {{account:String}} "
        "AND (message_id IN {messages:Array(String)} OR recipient = {recipient:String} "
        "OR lowerUTF8(trimBoth(recipient)) = {recipient:String})"
    )


def erased_hits(db: str) -> str:
    """The hit ids of the erased messages, counted and filtered, and the open hit ids of their read records
    (read time, ``0013_reads_rollup.sql``), for the rollups' hashes."""
    return (
        f"SELECT hit_id FROM {db}.events WHERE {ERASED_SCOPE} "
        f"UNION ALL SELECT hit_id FROM {db}.filtered_hits WHERE {ERASED_SCOPE} "
        f"UNION ALL SELECT read_of FROM {db}.reads WHERE {ERASED_SCOPE}"
    )


def erased_campaigns(db: str) -> str:
    """The campaigns of the erased messages."""
    return f"SELECT DISTINCT campaign_id FROM {db}.sends WHERE {ERASED_SCOPE}"


def erased_count(db: str, table: str, scope: str = ERASED_SCOPE) -> str:
    """How many rows of ``table`` the erasure takes."""
    return f"SELECT count() FROM {db}.{table} WHERE {scope}"


def erasure(db: str, table: str, scope: str = ERASED_SCOPE) -> tuple[str, str]:
    """Hide the erased messages' rows of ``table`` now (a lightweight DELETE: a mask over the rows), then
    rewrite them out of its parts in the background (the mutation returns at once, so the API is not held
    while ClickHouse rewrites big parts). Not ``ALTER ... DELETE WHERE``: it takes masked rows for gone and
    leaves their parts as they are. The first takes the erased scope's parameters, the second none."""
    return (
        f"DELETE FROM {db}.{table} WHERE {scope}",
        f"ALTER TABLE {db}.{table} APPLY DELETED MASK SETTINGS mutations_sync = 0",
    )
