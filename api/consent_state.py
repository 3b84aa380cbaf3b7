"""Recipients' consent as registration reads it and as a change records it (issue 19): the one place that
turns a consent change into history and, where it must, into a suppression at the edge.

A consent change is history first: a ``consent_events`` row per tag of the recipient (`CONSENT_COLUMNS`:
when, the state, how, the source, the evidence), kept as proof until the recipient is erased. Where the
recipient refused (`schemas.consent.consent_blocks`: in every mode, as the preferences page does), the
refusal is also a suppression, reason ``consent_refused``, written and propagated exactly as do-not-track's
(`api.privacy.set_suppression`: ``suppression_tags``, this process's set, the privacy topic), so the edge and
the processors stop recording the recipient's individual hits within a second; a later grant (or ``unknown``)
lifts a suppression whose reason is ``consent_refused``, and only that one. Do-not-track and erasure keep
their own reasons and meaning: a refusal never lifts them, a grant never lifts them, and lifting do-not-track
leaves a refusal in force (`api.privacy.PrivacyController.track_again`).

Registration tells the two apart by the suppression's newest reason (`recipients_consent`): a recipient
suppressed for ``consent_refused`` is not on do-not-track but has refused (whatever the mode, and whatever the
store's history says yet), so they may still get the aggregate pixel.

Used by the consent routes (`api.consent`); the preferences page (helper c4-prefs, `api.preferences_routes`)
records its changes the same way, with the same reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.context import ApiContext
from api.privacy import PrivacyPropagation, set_suppression
from api.sql import consent as sql
from schemas.consent import CONSENT_COLUMNS, ConsentMode, ConsentState, consent_blocks

REFUSED_REASON = "consent_refused"
LIFTED_REASON = "consent"


@dataclass(frozen=True, slots=True)
class RecipientConsent:
    """What registration needs of one recipient: their consent state, and whether they are on do-not-track
    (suppressed for any reason but a consent refusal)."""

    state: ConsentState
    do_not_track: bool


def recipients_consent(
    ctx: ApiContext, account: str, recipients: Sequence[str], *, mode: ConsentMode
) -> dict[str, RecipientConsent]:
    """Per recipient (canonical), their consent and do-not-track: at most two reads for the whole batch, the
    consent states only when ``mode`` is not ``off`` (which needs only refusals, and a refusal is a
    suppression), the suppression reasons only for recipients this process's do-not-track set holds."""
    tags_of = {r: frozenset(t.hex() for t in ctx.keyring.recipient_tags(account, r)) for r in recipients}
    every = sorted(set().union(*tags_of.values())) if tags_of else []
    db = ctx.store.database
    states: dict[str, tuple[Any, ...]] = {}
    if mode is not ConsentMode.OFF and every:
        states = {row[0]: row for row in ctx.read(sql.consent_states(db, account, every))}
    suppressed = ctx.do_not_track
    held = {
        r
        for r in recipients
        if suppressed is not None and any(suppressed.suppressed_hex(t) for t in tags_of[r])
    }
    reasons: dict[str, tuple[Any, ...]] = {}
    if held:
        wanted = sorted(set().union(*(tags_of[r] for r in held)))
        reasons = {row[0]: row for row in ctx.read(sql.suppression_reasons(db, account, wanted))}
    answer = {}
    for recipient in recipients:
        tags = tags_of[recipient]
        state = sql.newest_state(states[t] for t in tags if t in states)
        reason = _reason(reasons[t] for t in tags if t in reasons) if recipient in held else None
        if reason == REFUSED_REASON:  # suppressed for their refusal: refused, not on do-not-track
            state = ConsentState.REFUSED
        answer[recipient] = RecipientConsent(state, reason is not None and reason != REFUSED_REASON)
    return answer


def _reason(rows: Iterable[tuple[Any, ...]]) -> str:
    """A held recipient's suppression reason: the newest of their `suppression_reasons` rows (none: the set
    knows more than the store yet: do-not-track)."""
    newest = max(rows, key=lambda row: int(row[3]), default=None)
    return "opt_out" if newest is None else str(newest[2])


@dataclass(frozen=True, slots=True)
class ConsentChange:
    state: ConsentState
    how: str
    source: str = ""
    evidence: str = ""


def known_tags(ctx: ApiContext, account: str, tags: frozenset[bytes]) -> frozenset[bytes]:
    """``tags`` and every tag stored with a consent change of the same recipient."""
    rows = ctx.read(sql.known_consent_tags(ctx.store.database, account, sorted(t.hex() for t in tags)))
    return tags.union(*(frozenset(bytes.fromhex(t) for t in row[0]) for row in rows))


def record_consent(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    account: str,
    tags: frozenset[bytes],
    change: ConsentChange,
    *,
    first: bytes | None = None,
    at: datetime | None = None,
) -> bool:
    """Store a consent change of the recipient of ``tags`` (their tags under every key when the address is
    known; the preferences page knows the one its token carries: the others are found in the history) and
    apply it at the edge where the account's mode says so. ``first``: the signing key's tag, when known.
    Whether the recipient is now suppressed for their refusal."""
    at = at or datetime.now(UTC)
    every = known_tags(ctx, account, tags)
    listed = sorted(t.hex() for t in every)
    rows = [
        [account, tag, listed, change.state.value, change.how, change.source, change.evidence, at]
        for tag in listed
    ]  # `CONSENT_COLUMNS`
    ctx.store.insert("consent_events", CONSENT_COLUMNS, rows)
    mode = ctx.settings(account).consent_mode
    # The newest change decides (an imported one may be older than what is stored).
    state = sql.newest_state(ctx.read(sql.consent_states(ctx.store.database, account, listed)))
    return apply_consent(ctx, propagation, account, every, consent_blocks(mode, state), first=first)


def apply_consent(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    account: str,
    tags: frozenset[bytes],
    blocked: bool,
    *,
    first: bytes | None = None,
) -> bool:
    """Make the edge follow a recipient's consent: suppress them (reason ``consent_refused``) when
    ``blocked`` and nothing suppresses them yet; lift a suppression whose reason is ``consent_refused`` when
    not. Do-not-track and erasure are left as they are. Whether they are suppressed for their refusal."""
    rows = ctx.read(sql.suppression_reasons(ctx.store.database, account, sorted(t.hex() for t in tags)))
    newest = max(rows, key=lambda row: int(row[3]), default=None)
    suppressed = newest is not None and not newest[1]
    reason = newest[2] if newest is not None else ""
    if blocked and not suppressed:
        set_suppression(ctx, propagation, account, tags, tracking=False, reason=REFUSED_REASON, first=first)
        return True
    if not blocked and suppressed and reason == REFUSED_REASON:
        set_suppression(ctx, propagation, account, tags, tracking=True, reason=LIFTED_REASON, first=first)
        return False
    return suppressed and reason == REFUSED_REASON
