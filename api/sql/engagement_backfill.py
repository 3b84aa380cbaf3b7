"""The SQL of engagement's backfill (issue 20): rows stored before 0012 get their recipient's tag, and the
engagement rollup gets their rows. Pure builders; `api.engagement_backfill` runs them at start.

SQL cannot compute the keyed tag (an HMAC), so Python computes it per distinct (account, recipient) of the
sends without one and loads the pairs into a ``Join`` table (``tags``: account, recipient -> tag); a second
``Join`` table (``messages``: account, message id -> tag) is filled from the sends through the first. Then:

1. ``events``, ``filtered_hits`` (not the invalid tokens', whose message id nobody signed) and ``deliveries``
   (the matched ones) get the tag of their message's send, by a mutation (``joinGet``; a mutation fires no
   materialized view, and rewrites the column, never a second copy of a row);
2. the engagement rollup gets the same rows 0012's views would have written had these rows been inserted
   after it: the same SELECTs, over the backfilled sends and the events and delivery events of their
   messages, in chunks of messages (``cityHash64(message_id) % chunks``) so no chunk holds a whole table's
   sets. Re-inserting what the views already wrote (a new open of an old message) is harmless: every column
   is a set union or a max;
3. ``sends`` last, so that a backfill cut short (a crash) finds sends without a tag at the next start and
   runs again whole (idempotent, for the same reasons).
"""

from __future__ import annotations

from typing import Final

# Rows of engagement a chunk's SELECT reads at most (about): the chunks are messages' hash classes.
CHUNK_ROWS: Final = 2_000_000


def pending(db: str) -> str:
    """1 when some send has no tag (stored before 0012, or a backfill cut short), else 0."""
    return f"SELECT count() FROM (SELECT 1 FROM {db}.sends WHERE recipient_tag = '' LIMIT 1)"


def untagged_recipients(db: str) -> str:
    """The distinct (account, recipient) of the sends without a tag, whose tags Python computes."""
    return f"SELECT DISTINCT toString(account), recipient FROM {db}.sends WHERE recipient_tag = ''"


def create_tags(db: str, name: str) -> str:
    return (
        f"CREATE TABLE {db}.{name} (account String, recipient String, tag String) "
        "ENGINE = Join(ANY, LEFT, account, recipient)"
    )


def create_messages(db: str, name: str, tags: str) -> list[str]:
    """The Join table of message -> tag, filled from the untagged sends through ``tags``."""
    return [
        f"CREATE TABLE {db}.{name} (account String, message_id String, tag String) "
        "ENGINE = Join(ANY, LEFT, account, message_id)",
        f"""INSERT INTO {db}.{name}
            SELECT a, message_id, t FROM (
                SELECT toString(account) AS a, message_id,
                       joinGet('{db}.{tags}', 'tag', a, argMax(recipient, registered_at)) AS t
                FROM {db}.sends WHERE recipient_tag = '' GROUP BY account, message_id)
            WHERE t != ''""",
    ]


def _tag_of_message(db: str, messages: str) -> str:
    return f"joinGet('{db}.{messages}', 'tag', toString(account), message_id)"


def tag_rows(db: str, messages: str) -> list[str]:
    """Step 1: the mutations that give events, filtered hits and delivery events their message's tag."""
    tag = _tag_of_message(db, messages)
    settings = "SETTINGS mutations_sync = 2"
    return [
        f"ALTER TABLE {db}.events UPDATE recipient_tag = {tag} WHERE recipient_tag = '' AND {tag} != '' "
        f"{settings}",
        f"ALTER TABLE {db}.filtered_hits UPDATE recipient_tag = {tag} "
        f"WHERE recipient_tag = '' AND verdict != 'invalid' AND {tag} != '' {settings}",
        f"ALTER TABLE {db}.deliveries UPDATE recipient_tag = {tag} "
        f"WHERE recipient_tag = '' AND message_id != '' AND {tag} != '' {settings}",
    ]


def count_rows(db: str, table: str, messages: str) -> str:
    """How many rows of ``table`` belong to the backfilled messages (to choose the chunks)."""
    return f"SELECT count() FROM {db}.{table} WHERE {_tag_of_message(db, messages)} != ''"


def rollup_sends(db: str, tags: str, chunks: int, chunk: int) -> str:
    """Step 2, sends: 0012's ``engagement_from_sends`` over the untagged sends, their tag from ``tags``."""
    return f"""INSERT INTO {db}.engagement
            (account, recipient_tag, recipient, sent, tracked, last_sent, last_at)
        SELECT a AS account, t AS recipient_tag, max(r) AS recipient, groupUniqArray(m) AS sent,
               groupUniqArrayIf(m, tr = 'individual') AS tracked, max(s) AS last_sent, max(s) AS last_at
        FROM
        (
            SELECT account AS a, joinGet('{db}.{tags}', 'tag', toString(account), recipient) AS t,
                   recipient AS r, cityHash64(message_id) AS m, toString(tracking) AS tr,
                   toDateTime(sent_at, 'UTC') AS s
            FROM {db}.sends
            WHERE recipient_tag = '' AND cityHash64(message_id) % {chunks} = {chunk}
        )
        WHERE t != ''
        GROUP BY a, t"""


def rollup_events(db: str, messages: str, chunks: int, chunk: int) -> str:
    """Step 2, events: 0012's ``engagement_from_events`` over the backfilled messages' events."""
    return f"""INSERT INTO {db}.engagement
            (account, recipient_tag, human_opened, human_open_hits, clicked, click_hits, machine_opened,
             mpp_opened, last_open, last_click, last_at)
        SELECT a AS account, t AS recipient_tag,
               groupUniqArrayIf(m, k = 'open' AND v = 'human') AS human_opened,
               groupUniqArrayIf(h, k = 'open' AND v = 'human') AS human_open_hits,
               groupUniqArrayIf(m, k = 'click' AND v = 'human') AS clicked,
               groupUniqArrayIf(h, k = 'click' AND v = 'human') AS click_hits,
               groupUniqArrayIf(m, k = 'open' AND v = 'machine') AS machine_opened,
               groupUniqArrayIf(m, k = 'open' AND why IN ('apple_mpp', 'apple_mpp_asn')) AS mpp_opened,
               maxIf(received, k = 'open' AND v = 'human') AS last_open,
               maxIf(received, k = 'click' AND v = 'human') AS last_click,
               max(received) AS last_at
        FROM
        (
            SELECT account AS a, recipient_tag AS t, toString(kind) AS k, toString(verdict) AS v,
                   toString(reason) AS why, cityHash64(message_id) AS m, cityHash64(hit_id) AS h,
                   toDateTime(received_at, 'UTC') AS received
            FROM {db}.events
            WHERE recipient_tag != '' AND cityHash64(message_id) % {chunks} = {chunk}
              AND {_tag_of_message(db, messages)} != ''
        )
        GROUP BY a, t"""


def rollup_deliveries(db: str, messages: str, chunks: int, chunk: int) -> str:
    """Step 2, delivery events: 0012's ``engagement_from_deliveries`` over the backfilled messages'."""
    return f"""INSERT INTO {db}.engagement
            (account, recipient_tag, delivered, hard_bounced, complained, last_at)
        SELECT a AS account, t AS recipient_tag,
               groupUniqArrayIf(m, e = 'delivered') AS delivered,
               groupUniqArrayIf(m, e = 'bounce' AND b = 'hard') AS hard_bounced,
               groupUniqArrayIf(m, e = 'complaint') AS complained,
               max(occurred) AS last_at
        FROM
        (
            SELECT account AS a, recipient_tag AS t, toString(event) AS e, toString(bounce_type) AS b,
                   cityHash64(message_id) AS m, toDateTime(occurred_at, 'UTC') AS occurred
            FROM {db}.deliveries
            WHERE recipient_tag != '' AND message_id != '' AND cityHash64(message_id) % {chunks} = {chunk}
              AND {_tag_of_message(db, messages)} != ''
        )
        GROUP BY a, t"""


def tag_sends(db: str, tags: str) -> str:
    """Step 3: the sends' own tags, last."""
    tag = f"joinGet('{db}.{tags}', 'tag', toString(account), recipient)"
    return (
        f"ALTER TABLE {db}.sends UPDATE recipient_tag = {tag} WHERE recipient_tag = '' AND {tag} != '' "
        "SETTINGS mutations_sync = 2"
    )


def drop(db: str, name: str) -> str:
    return f"DROP TABLE IF EXISTS {db}.{name} SYNC"
