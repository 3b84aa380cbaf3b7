"""The SQL of consent (issue 19, ``schemas/ddl/0009_consent.sql`` and 0010): an account's settings, the
consent states and history of recipients by their keyed tags (never the address), the suppression reasons a
registration tells do-not-track from a consent refusal by, and what an erasure deletes of consent. Pure
builders and shapers; every query is scoped by ``{account:String}``.

A consent change is stored once per tag of the recipient (each row listing every tag, as
``suppression_tags``), so a recipient's history is the distinct (state, how, source, evidence, at) of the
rows of any of their tags, and their state the newest of those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from api.sql.common import Query, iso
from schemas.consent import ConsentState

SETTINGS_COLUMNS: Final = ("account", "consent_mode", "tracking_base_url", "aggregate_opens", "updated_at")
_TAGS: Final = "account = {account:String} AND tag IN {tags:Array(String)}"


def account_settings(db: str, account: str) -> Query:
    """The account's newest settings row: (consent_mode, tracking_base_url, aggregate_opens), or none."""
    return Query(
        f"""SELECT argMax(consent_mode, updated_at), argMax(tracking_base_url, updated_at),
                   argMax(aggregate_opens, updated_at)
            FROM {db}.account_settings WHERE account = {{account:String}} GROUP BY account""",
        {"account": account},
    )


def consent_states(db: str, account: str, tags: Sequence[str]) -> Query:
    """Per tag (hex) of ``tags`` with a consent change: its newest state and when (epoch ms)."""
    return Query(
        f"""SELECT tag, argMax(state, at), toUnixTimestamp64Milli(max(at))
            FROM {db}.consent_events WHERE {_TAGS} GROUP BY tag""",
        {"account": account, "tags": list(tags)},
    )


def newest_state(rows: Iterable[Sequence[Any]]) -> ConsentState:
    """One recipient's state from the `consent_states` rows of their tags: the newest (unknown: none)."""
    newest = max(rows, key=lambda row: int(row[2]), default=None)
    return ConsentState.UNKNOWN if newest is None else ConsentState(newest[1])


def consent_history(db: str, account: str, tags: Sequence[str]) -> Query:
    """A recipient's consent changes (any of their ``tags``), oldest first, each once."""
    return Query(
        f"""SELECT DISTINCT toUnixTimestamp64Milli(at) AS ms, state, how, source, evidence
            FROM {db}.consent_events WHERE {_TAGS} ORDER BY ms, state, how, source, evidence""",
        {"account": account, "tags": list(tags)},
    )


def known_consent_tags(db: str, account: str, tags: Sequence[str]) -> Query:
    """The tag sets stored with a consent change of a recipient any of whose ``tags`` they share (tags of
    keys since retired, or a recipient known to a preferences page by one tag only)."""
    return Query(
        f"SELECT DISTINCT recipient_tags FROM {db}.consent_events "
        "WHERE account = {account:String} AND hasAny(recipient_tags, {tags:Array(String)})",
        {"account": account, "tags": list(tags)},
    )


def suppression_reasons(db: str, account: str, tags: Sequence[str]) -> Query:
    """Per tag of ``tags`` on the suppression list: its newest (tracking, reason, updated_at ms)."""
    return Query(
        f"""SELECT tag, argMax(tracking, updated_at), argMax(reason, updated_at),
                   toUnixTimestamp64Milli(max(updated_at))
            FROM {db}.suppression_tags WHERE {_TAGS} GROUP BY tag""",
        {"account": account, "tags": list(tags)},
    )


def refused_recipients(db: str, account: str) -> Query:
    """Every recipient of the account whose newest consent state is ``refused``: their tags (one row per
    recipient, as the newest change stored them). Read when the account's mode changes."""
    return Query(
        f"""SELECT DISTINCT tags FROM (
              SELECT argMax(recipient_tags, at) AS tags, argMax(state, at) AS state
              FROM {db}.consent_events WHERE account = {{account:String}} GROUP BY tag)
            WHERE state = 'refused'""",
        {"account": account},
    )


# What an erasure deletes of consent (parameters ``account``, ``tags``: the recipient's tags, hex).
ERASED_CONSENT: Final = "account = {account:String} AND hasAny(recipient_tags, {tags:Array(String)})"


def erased_consent_count(db: str) -> str:
    """How many consent changes an erasure deletes (distinct changes, not rows per tag)."""
    return (
        f"SELECT count() FROM (SELECT DISTINCT at, state, how, source, evidence FROM {db}.consent_events "
        f"WHERE {ERASED_CONSENT})"
    )


def shape_history(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """`consent_history` rows as answered: each change's ``at``, ``state``, ``how``, ``source``,
    ``evidence`` (null when not given)."""
    from datetime import UTC, datetime  # noqa: PLC0415 - only the shaper needs it

    return [
        {
            "at": iso(datetime.fromtimestamp(int(ms) / 1000, UTC)),
            "state": state,
            "how": how,
            "source": source or None,
            "evidence": evidence or None,
        }
        for ms, state, how, source, evidence in rows
    ]
