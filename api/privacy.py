"""Recipients' privacy: do-not-track and erasure.

One recipient is every spelling of one address (`schemas.recipient`: trimmed, lower case); every handler here
applies that rule to the address it is given, and refuses with 400 what cannot be an address.

Do-not-track: the edge still serves the GIF and redirects, but nothing is recorded for that recipient (the
edge drops the hit in the same process; processors drop any hit already on the bus). Erasure deletes the
recipient's sends, counted events, filtered hits and delivery events (of their messages, and those about
their address that matched no message) and suppresses the recipient, so a later open of an old
email is not recorded again. Both are per account.

Erasure in two steps, both by message id, never by the address (a mutation's text stays on disk in its
``mutation_*.txt``): a lightweight DELETE hides the rows before the answer; then an ``ALTER TABLE ... APPLY
DELETED MASK`` mutation, which ClickHouse runs in the background, rewrites the parts that held them, and the
parts it replaces leave the disk after ``old_parts_lifetime`` (0005_suppression_tags.sql). The answer's
``on_disk_by`` is the bound on both (`ERASED_FROM_DISK_WITHIN_S`); the API is not blocked meanwhile.

The suppression list keeps no address: ``suppression_tags`` holds the recipient's keyed tags under every key
the keyring had when the change was made (`migrate_plain_suppressions` turns 0004's plain rows into tags at
start and drops that table). A key added later has no tag of an earlier suppressed recipient, which is
harmless while a key of that time remains in the keyring: registration still recognises the address by the
older tag (`schemas.suppression.DoNotTrack.suppressed`), and no token under the new key is issued for it.

Every change reaches every process: the suppression rows in the store (processes with a store reload them),
this process's do-not-track set at once, and, with Kafka, a record on the compacted privacy topic
(`schemas.privacy_change`: tags, never the address) that edges, processors and webhook dispatchers follow. The
handler answers once the broker has the record; if it does not take it in time the answer is 503 (the change
is stored; repeating the request publishes it again). An erasure also purges the notification state that
names the recipient (webhook outbox, message cache, live feed): here directly when this process runs them,
elsewhere through the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from litestar import Controller, delete, put
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException, ServiceUnavailableException
from litestar.status_codes import HTTP_200_OK

from api.context import ApiContext, RecipientPath, account_dependency
from api.erasure_residue import erase_engagement, erase_link_labels, erase_webhook_attempts
from api.sql import consent as consent_sql
from api.sql import privacy as sql
from api.sql.rollup_upkeep import rollup_erasure
from schemas.consent import consent_blocks
from schemas.privacy_change import PrivacyChange, PrivacyNotPublished
from schemas.recipient import BadRecipient, checked_recipient, normalize_recipient
from schemas.store import Store
from schemas.tokens import Keyring, recipient_tag

log = logging.getLogger(__name__)

SUPPRESSION_COLUMNS = ("account", "tag", "recipient_tags", "tracking", "reason", "updated_at")
# The tables whose rows name a recipient or their messages, and which rows go; erasure rewrites their parts.
ERASED_TABLES: Final = (
    ("events", sql.ERASED_SCOPE),
    ("filtered_hits", sql.ERASED_SCOPE),
    ("deliveries", sql.DELIVERIES_SCOPE),
    ("reads", sql.ERASED_SCOPE),  # read time (issue 18): the held pixels of their timed opens
    ("reminders", sql.ERASED_SCOPE),  # issue 20: a pending reminder must not fire, a decided one goes too
    ("sends", sql.ERASED_SCOPE),
)
# A mutation starts within seconds on an idle engine; then old_parts_lifetime (60 s) and the cleanup thread's
# longest sleep (30 s), set by 0005_suppression_tags.sql; the rest is room for a busy machine.
ERASED_FROM_DISK_WITHIN_S: Final = 300


def load_suppressed(store: Store) -> list[frozenset[bytes]]:
    """Every suppressed recipient, as their tags: the newest row of each tag says whether it is tracked."""
    q = sql.suppressed_tags(store.database)
    rows = store.query(q.sql, q.parameters)
    return [frozenset(bytes.fromhex(tag) for tag in tags) for (tags,) in rows]


def migrate_plain_suppressions(store: Store, keyring: Keyring) -> int:
    """Turn 0004's suppressions by address into tags under every key of ``keyring``, then drop that table and
    its files (``SYNC``: not kept for the Atomic engine's undrop delay). Idempotent; how many recipients."""
    db = store.database
    if not store.query(f"EXISTS TABLE {db}.suppressions")[0][0]:
        return 0
    q = sql.plain_suppressions(db)
    plain = store.query(q.sql, q.parameters)
    rows = [
        row
        for account, recipient, reason, updated_at in plain
        for row in _suppression_rows(
            account, keyring.recipient_tags(account, recipient), False, reason, updated_at
        )
    ]
    if rows:
        store.insert("suppression_tags", SUPPRESSION_COLUMNS, rows)
    store.command(f"DROP TABLE IF EXISTS {db}.suppressions SYNC")
    if plain:
        log.info("suppressions: %d recipients now kept by keyed tags, their addresses dropped", len(plain))
    return len(plain)


def _suppression_rows(
    account: str, tags: frozenset[bytes], tracking: bool, reason: str, at: datetime
) -> list[list[Any]]:
    every = sorted(tag.hex() for tag in tags)
    return [[account, tag, every, tracking, reason, at] for tag in every]


def _canonical(recipient: str) -> str:
    try:
        return checked_recipient(recipient)
    except BadRecipient as exc:
        raise ClientException(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class PrivacyPropagation:
    """How a change leaves this process (the wiring fills it in).

    ``publish``: blocks until the broker has the record, raises `PrivacyNotPublished` otherwise (None: no
    Kafka).
    ``erase_notifications(account, recipient tags, message ids)``: purges this process's notification state,
    returns what it purged (None: no notice path here).
    """

    publish: Callable[[PrivacyChange], None] | None = None
    erase_notifications: Callable[[str, Sequence[str], Sequence[str]], dict[str, Any]] | None = None
    topic: str = ""


def _set_tracking(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    account: str,
    recipient: str,
    *,
    tracking: bool,
    reason: str,
) -> PrivacyChange:
    return set_suppression(
        ctx, propagation, account, ctx.keyring.recipient_tags(account, recipient), tracking=tracking,
        reason=reason, first=recipient_tag(ctx.keyring.signing_key[1], account, recipient),
    )  # fmt: skip


def set_suppression(
    ctx: ApiContext,
    propagation: PrivacyPropagation,
    account: str,
    tags: frozenset[bytes],
    *,
    tracking: bool,
    reason: str,
    first: bytes | None = None,
) -> PrivacyChange:
    """Record whether the recipient of ``tags`` is tracked, and why (``reason``: ``opt_out``/``opt_in``
    (do-not-track), ``erased``, ``consent_refused``/``consent`` (`api.consent_state`)): in the store, this
    process's set, and on the privacy topic. The record names ``tags``, ``first`` first (the signing key's
    tag, known when the address is: the topic's compaction key)."""
    now = datetime.now(UTC)
    # The recipient as stored may carry tags of keys since retired: the change is for all of them.
    known = ctx.read(sql.known_tags(ctx.store.database, account, [tag.hex() for tag in tags]))
    every = tags.union(*(frozenset(bytes.fromhex(t) for t in row[0]) for row in known))
    ctx.store.insert(
        "suppression_tags", SUPPRESSION_COLUMNS, _suppression_rows(account, every, tracking, reason, now)
    )
    if ctx.do_not_track is not None:
        if tracking:
            ctx.do_not_track.remove_tags(every)
        else:
            ctx.do_not_track.add_tags(every)
    lead = [first] if first is not None else []
    ordered = (*lead, *sorted(tags - set(lead)))
    change = PrivacyChange(
        account, tuple(tag.hex() for tag in ordered), tracking=tracking, erased=reason == "erased",
        at_ms=int(now.timestamp() * 1000),
    )  # fmt: skip
    if propagation.publish is not None:
        try:
            propagation.publish(change)
        except PrivacyNotPublished as exc:
            raise ServiceUnavailableException(
                f"the change is stored but not yet passed on to every process ({exc}); repeat the request"
            ) from exc
    return change


def _consent_scope(ctx: ApiContext, account: str, recipient: str) -> dict[str, Any]:
    """The parameters of `api.sql.consent.ERASED_CONSENT` for a recipient: their tags under every key, and
    those stored with their consent changes (keys since retired). Tags, never the address: the mutation's
    text stays on disk."""
    tags = {tag.hex() for tag in ctx.keyring.recipient_tags(account, recipient)}
    stored = ctx.read(consent_sql.known_consent_tags(ctx.store.database, account, sorted(tags)))
    return {"account": account, "tags": sorted(tags.union(*(row[0] for row in stored)))}


class PrivacyController(Controller):
    path = "/v1/recipients"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["privacy"]  # noqa: RUF012

    @put("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def do_not_track(
        self,
        recipient: RecipientPath,
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Stop recording this recipient's opens and clicks (pixels and links keep working)."""
        canonical = _canonical(recipient)
        _set_tracking(ctx, privacy, account, canonical, tracking=False, reason="opt_out")
        return {"recipient": canonical, "tracking": False}

    @delete("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def track_again(
        self,
        recipient: RecipientPath,
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Record this recipient's opens and clicks again (unless they refused tracking where the account
        manages consent: they stay untracked, `tracking_reason` "consent_refused")."""
        canonical = _canonical(recipient)
        tags = ctx.keyring.recipient_tags(account, canonical)
        states = ctx.read(consent_sql.consent_states(ctx.store.database, account, [t.hex() for t in tags]))
        if consent_blocks(ctx.settings(account).consent_mode, consent_sql.newest_state(states)):
            # Do-not-track is lifted; the refusal still holds (`api.consent_state`): its own reason.
            _set_tracking(ctx, privacy, account, canonical, tracking=False, reason="consent_refused")
            return {"recipient": canonical, "tracking": False, "tracking_reason": "consent_refused"}
        _set_tracking(ctx, privacy, account, canonical, tracking=True, reason="opt_in")
        return {"recipient": canonical, "tracking": True}

    @delete("/{recipient:str}", status_code=HTTP_200_OK, sync_to_thread=True)
    def erase(
        self,
        recipient: RecipientPath,
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Erase a recipient: their sends, opens, clicks, filtered hits, read times and delivery events
        (bounces, complaints...), and the webhook deliveries and cached facts that name them; further hits
        are not recorded."""
        db = ctx.store.database
        canonical = _canonical(recipient)
        messages = sorted(
            {
                message_id
                for message_id, stored in ctx.read(sql.recipient_messages(db, account, canonical))
                if normalize_recipient(stored) == canonical  # sends registered before the rule
            }
        )
        # Their consent history (issue 19: proof kept until the recipient is erased), by any of their tags.
        consent = _consent_scope(ctx, account, canonical)
        consent_changes = ctx.store.query(consent_sql.erased_consent_count(db), consent)[0][0]
        if not messages and not consent_changes:
            raise NotFoundException(f"no recipient {canonical!r}")
        # Suppress first (here, in the store and on the topic): a hit arriving during the deletes is then not
        # recorded either, and the notices still on their way are held back.
        change = _set_tracking(ctx, privacy, account, canonical, tracking=False, reason="erased")
        if ctx.engagement_backfill is not None:  # it may write their engagement rows after the deletes below
            ctx.engagement_backfill.erased(account, change.recipient_tags, canonical)
        scope: dict[str, Any] = {"account": account, "messages": messages}
        found = ctx.store.query(sql.recipient_deliveries(db), {**scope, "recipient": canonical})
        scope["deliveries"] = sorted({delivery_id for delivery_id, _ in found})
        # The rollups hold hashes of hit, delivery and message ids: take the erased ones out (before the
        # rows go).
        hits = [r[0] for r in ctx.store.query(sql.erased_hits(db), scope)] + scope["deliveries"]
        campaigns = sorted(
            {r[0] for r in ctx.store.query(sql.erased_campaigns(db), scope)} | {c for _, c in found if c}
        )
        for statement in rollup_erasure(db):
            ctx.store.command(statement, {**scope, "campaigns": campaigns, "hits": hits})
        link_labels = erase_link_labels(ctx.store, account, canonical, campaigns)  # api.erasure_residue
        counts = {
            table: ctx.store.query(sql.erased_count(db, table, erased_scope), scope)[0][0]
            for table, erased_scope in ERASED_TABLES
            if table != "sends"
        }
        on_disk_by = datetime.now(UTC) + timedelta(seconds=ERASED_FROM_DISK_WITHIN_S)
        for table, erased_scope in ERASED_TABLES:  # hidden now, rewritten out of the parts in the background
            hide, rewrite = sql.erasure(db, table, erased_scope)
            ctx.store.command(hide, scope)
            ctx.store.command(rewrite)
        # The recipient's engagement rows, by their tags and address: after their sources are hidden, so a row
        # a view wrote meanwhile (a process that had not applied the suppression yet) goes too.
        erase_engagement(ctx.store, account, change.recipient_tags, [canonical])  # api.erasure_residue
        hide, rewrite = sql.erasure(db, "consent_events", consent_sql.ERASED_CONSENT)
        ctx.store.command(hide, consent)
        ctx.store.command(rewrite)
        erased: dict[str, Any] = {"messages": len(messages), **counts}
        for table in ("deliveries", "reads", "reminders"):  # none: answered as before they existed
            if not erased[table]:
                del erased[table]
        if consent_changes:  # and one without consent changes as before them
            erased["consent_changes"] = consent_changes
        if privacy.erase_notifications is not None:  # this process's outbox and cache; others via the topic
            erased.update(privacy.erase_notifications(account, change.recipient_tags, messages))
        erased.update(
            link_labels=link_labels, webhook_attempts=erase_webhook_attempts(ctx.store, account, messages)
        )
        if ctx.exports is not None and (files := ctx.exports.erase_account(account)):
            erased["exports"] = files  # every export file of the account: any may hold the recipient
        answer: dict[str, Any] = {
            "recipient": canonical,
            "erased": erased,
            "tracking": False,
            "on_disk_by": on_disk_by.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        if privacy.publish is not None:
            answer["propagated_via"] = privacy.topic
        return answer
