"""Recipients' privacy: do-not-track and erasure.

Do-not-track: the edge still serves the GIF and redirects, but nothing is recorded for that recipient (the
edge drops the hit in the same process; processors drop any hit already on the bus). Erasure deletes the
recipient's sends, counted events and filtered hits (ClickHouse lightweight DELETE) and suppresses the
address, so a later open of an old email is not recorded again. Both are per account.

Every change reaches every process: the suppression row in the store (processes with a store reload it), this
process's do-not-track set at once, and, with Kafka, a record on the compacted privacy topic
(`schemas.privacy_change`: tags, never the address) that edges, processors and webhook dispatchers follow. The
handler answers once the broker has the record; if it does not take it in time the answer is 503 (the change
is stored; repeating the request publishes it again). An erasure also purges the notification state that
names the recipient (webhook outbox, message cache): here directly when this process runs them, elsewhere
through the topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, delete, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from api.analytics_queries import rollup_erasure
from api.erasure_residue import erase_link_labels, erase_webhook_attempts
from api.routes import ApiContext, account_dependency
from schemas.privacy_change import PrivacyChange, PrivacyNotPublished, privacy_change
from schemas.store import Store
from schemas.tokens import normalize_recipient

SUPPRESSION_COLUMNS = ("account", "recipient", "tracking", "reason", "updated_at")


def load_suppressed(store: Store) -> list[tuple[str, str]]:
    """Every (account, recipient) that must not be tracked, as the newest row of each says."""
    return [
        (account, recipient)
        for account, recipient in store.query(
            f"SELECT account, recipient FROM {store.database}.suppressions FINAL WHERE NOT tracking"
        )
    ]


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
    now = datetime.now(UTC)
    row = [account, normalize_recipient(recipient), tracking, reason, now]
    ctx.store.insert("suppressions", SUPPRESSION_COLUMNS, [row])
    if ctx.do_not_track is not None:
        if tracking:
            ctx.do_not_track.remove(account, recipient)
        else:
            ctx.do_not_track.add(account, recipient)
    change = privacy_change(
        ctx.keyring, account, recipient, tracking=tracking, erased=reason == "erased",
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


class PrivacyController(Controller):
    path = "/v1/recipients"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["privacy"]  # noqa: RUF012

    @put("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def do_not_track(
        self,
        recipient: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Stop recording this recipient's opens and clicks (pixels and links keep working)."""
        _set_tracking(ctx, privacy, account, recipient, tracking=False, reason="opt_out")
        return {"recipient": normalize_recipient(recipient), "tracking": False}

    @delete("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def track_again(
        self,
        recipient: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Record this recipient's opens and clicks again."""
        _set_tracking(ctx, privacy, account, recipient, tracking=True, reason="opt_in")
        return {"recipient": normalize_recipient(recipient), "tracking": True}

    @delete("/{recipient:str}", status_code=HTTP_200_OK, sync_to_thread=True)
    def erase(
        self,
        recipient: FromPath[str],
        account: NamedDependency[str],
        ctx: NamedDependency[ApiContext],
        privacy: NamedDependency[PrivacyPropagation],
    ) -> dict[str, Any]:
        """Erase a recipient: their sends, opens, clicks and filtered hits, and the webhook deliveries and
        cached facts that name them; further hits are not recorded."""
        db = ctx.store.database
        who = {"account": account, "recipient": recipient}
        messages = [
            row[0]
            for row in ctx.store.query(
                f"SELECT DISTINCT message_id FROM {db}.sends "
                "WHERE account = {account:String} AND recipient = {recipient:String}",
                who,
            )
        ]
        if not messages:
            raise NotFoundException(f"no recipient {recipient!r}")
        # Suppress first (here, in the store and on the topic): a hit arriving during the deletes is then not
        # recorded either, and the notices still on their way are held back.
        change = _set_tracking(ctx, privacy, account, recipient, tracking=False, reason="erased")
        scope = {"account": account, "messages": messages}
        # The rollups hold hashes of hit and message ids: take the erased ones out (before the rows go).
        where = "account = {account:String} AND message_id IN {messages:Array(String)}"
        hits = [
            r[0]
            for r in ctx.store.query(
                f"SELECT hit_id FROM {db}.events WHERE {where} UNION ALL "
                f"SELECT hit_id FROM {db}.filtered_hits WHERE {where}",
                scope,
            )
        ]
        campaigns = [
            r[0]
            for r in ctx.store.query(
                f"SELECT DISTINCT campaign_id FROM {db}.sends WHERE {where}",
                scope,
            )
        ]
        for statement in rollup_erasure(db):
            ctx.store.command(statement, {**scope, "campaigns": campaigns, "hits": hits})
        link_labels = erase_link_labels(ctx.store, account, recipient, campaigns)  # api.erasure_residue
        counts = {}
        for table in ("events", "filtered_hits"):
            where = "account = {account:String} AND message_id IN {messages:Array(String)}"
            counts[table] = ctx.store.query(f"SELECT count() FROM {db}.{table} WHERE {where}", scope)[0][0]
            ctx.store.command(f"DELETE FROM {db}.{table} WHERE {where}", scope)
        ctx.store.command(
            f"DELETE FROM {db}.sends WHERE account = {{account:String}} AND recipient = {{recipient:String}}",
            who,
        )
        erased: dict[str, Any] = {
            "messages": len(messages),
            "events": counts["events"],
            "filtered_hits": counts["filtered_hits"],
        }
        if privacy.erase_notifications is not None:  # this process's outbox and cache; others via the topic
            erased.update(privacy.erase_notifications(account, change.recipient_tags, messages))
        erased.update(
            link_labels=link_labels, webhook_attempts=erase_webhook_attempts(ctx.store, account, messages)
        )
        answer: dict[str, Any] = {"recipient": recipient, "erased": erased, "tracking": False}
        if privacy.publish is not None:
            answer["propagated_via"] = privacy.topic
        return answer
