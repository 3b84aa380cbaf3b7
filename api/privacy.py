"""Recipients' privacy: do-not-track and erasure.

Do-not-track: the edge still serves the GIF and redirects, but nothing is recorded for that recipient (the
edge drops the hit in the same process; processors drop any hit already on the bus). Erasure deletes the
recipient's sends, counted events and filtered hits (ClickHouse lightweight DELETE) and suppresses the
address, so a later open of an old email is not recorded again. Both are per account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, delete, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from api.analytics_queries import rollup_erasure
from api.routes import ApiContext, account_dependency
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


def _set_tracking(ctx: ApiContext, account: str, recipient: str, *, tracking: bool, reason: str) -> None:
    row = [account, normalize_recipient(recipient), tracking, reason, datetime.now(UTC)]
    ctx.store.insert("suppressions", SUPPRESSION_COLUMNS, [row])
    if ctx.do_not_track is not None:
        if tracking:
            ctx.do_not_track.remove(account, recipient)
        else:
            ctx.do_not_track.add(account, recipient)


class PrivacyController(Controller):
    path = "/v1/recipients"
    dependencies = {"account": account_dependency}  # noqa: RUF012 - Litestar reads it
    tags = ["privacy"]  # noqa: RUF012

    @put("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def do_not_track(
        self, recipient: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Stop recording this recipient's opens and clicks (pixels and links keep working)."""
        _set_tracking(ctx, account, recipient, tracking=False, reason="opt_out")
        return {"recipient": normalize_recipient(recipient), "tracking": False}

    @delete("/{recipient:str}/do-not-track", status_code=HTTP_200_OK, sync_to_thread=True)
    def track_again(
        self, recipient: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Record this recipient's opens and clicks again."""
        _set_tracking(ctx, account, recipient, tracking=True, reason="opt_in")
        return {"recipient": normalize_recipient(recipient), "tracking": True}

    @delete("/{recipient:str}", status_code=HTTP_200_OK, sync_to_thread=True)
    def erase(
        self, recipient: FromPath[str], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
    ) -> dict[str, Any]:
        """Erase a recipient: their sends, opens, clicks and filtered hits; further hits are not recorded."""
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
        # Suppress first: a hit arriving during the deletes is then not recorded either.
        _set_tracking(ctx, account, recipient, tracking=False, reason="erased")
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
        counts = {}
        for table in ("events", "filtered_hits"):
            where = "account = {account:String} AND message_id IN {messages:Array(String)}"
            counts[table] = ctx.store.query(f"SELECT count() FROM {db}.{table} WHERE {where}", scope)[0][0]
            ctx.store.command(f"DELETE FROM {db}.{table} WHERE {where}", scope)
        ctx.store.command(
            f"DELETE FROM {db}.sends WHERE account = {{account:String}} AND recipient = {{recipient:String}}",
            who,
        )
        return {
            "recipient": recipient,
            "erased": {
                "messages": len(messages),
                "events": counts["events"],
                "filtered_hits": counts["filtered_hits"],
            },
            "tracking": False,
        }
