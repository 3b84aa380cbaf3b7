"""The statements that keep the rollups in step with the tables they summarise: the retention's TTL and the
erasure of a recipient's hashes. Run by the wiring at start (`pixelpipe.app`) and by an erasure
(`api.privacy`).
"""

from __future__ import annotations

from typing import Final


def rollup_retention(db: str, *, events_days: int, filtered_days: int) -> list[str]:
    """The TTL statements that keep the rollups and the engagement rollup (0012: a recipient's row goes once
    their newest send, hit or delivery event is older than the events' retention) in step with
    `Store.apply_retention`'s retention."""
    events, filtered = int(events_days), int(filtered_days)
    return [
        f"ALTER TABLE {db}.rollups MODIFY TTL last_at + INTERVAL {filtered} DAY DELETE "
        f"WHERE who IN ('bot', 'invalid'), last_at + INTERVAL {events} DAY "
        "SETTINGS materialize_ttl_after_modify = 0",
        f"ALTER TABLE {db}.engagement MODIFY TTL last_at + INTERVAL {events} DAY "
        "SETTINGS materialize_ttl_after_modify = 0",
    ]


def rollup_erasure(db: str) -> list[str]:
    """The statement that removes an erased recipient's hits and messages from the rollups. Parameters:
    ``account``; ``campaigns``, ``messages`` and ``hits`` (Array(String)): the hit ids read from events and
    filtered_hits *before* they are deleted. A mutation: rare, and slow only for the campaigns concerned; it
    returns once done, so the API confirms an erasure only when it is."""
    hits = "arrayMap(x -> cityHash64(x), {hits:Array(String)})"
    messages = "arrayMap(x -> cityHash64(x), {messages:Array(String)})"
    return [
        f"ALTER TABLE {db}.rollups UPDATE hits = arrayFilter(h -> NOT has({hits}, h), hits), "
        f"messages = arrayFilter(m -> NOT has({messages}, m), messages) "
        "WHERE account = {account:String} AND (campaign_id IN {campaigns:Array(String)} OR campaign_id = '') "
        "SETTINGS mutations_sync = 2"
    ]


# An erased recipient's engagement rows: by their tags (hex), never by the address: a mutation's text stays
# on disk (`mutation_N.txt`), so the tags kept under the address (a key retired from the keyring) are read
# first (`engagement_tags_of`) and added to the keyring's.
ENGAGEMENT_SCOPE: Final = "account = {account:String} AND recipient_tag IN {tags:Array(String)}"


def engagement_tags_of(db: str) -> str:
    """The tags of the engagement rows that keep this address (parameters ``account``, ``recipient``): a
    query, not stored."""
    return (
        f"SELECT DISTINCT recipient_tag FROM {db}.engagement "
        "WHERE account = {account:String} AND recipient = {recipient:String}"
    )


def engagement_erasure(db: str) -> list[str]:
    """The statements that delete an erased recipient's engagement rows (parameters ``account`` and ``tags``:
    the keyring's and `engagement_tags_of`'s), by a mutation waited for: the rows leave the parts before the
    answer (`api.erasure_residue`'s reason)."""
    return [f"ALTER TABLE {db}.engagement DELETE WHERE {ENGAGEMENT_SCOPE} SETTINGS mutations_sync = 2"]
