"""``GET /v1/recipients/{recipient}``: a recipient's messages, their recent opens, and the best time to send
to them. Reads ``sends`` and ``events`` (`api.sql.recipients`), scoped to the caller's account.

The recipient's privacy (do-not-track, erasure) is `api.privacy`'s, on the same paths. Litestar 2.25 cannot
share a path between two controllers (both add an OPTIONS handler), so this is a plain handler, registered
after `api.privacy.PrivacyController` (which owns ``DELETE /v1/recipients/{recipient}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter

from api.context import ApiContext, RecipientPath, account_dependency
from api.sql import best_time as bt
from api.sql import consent, deliveries, messages, pages, privacy
from api.sql import recipients as sql
from schemas.recipient import normalize_recipient

_ACCOUNT: Final = {"account": account_dependency}


@get("/v1/recipients/{recipient:str}", dependencies=_ACCOUNT, tags=["analytics"], sync_to_thread=True)
def recipient_view(
    *,
    recipient: RecipientPath,
    account: NamedDependency[str],
    ctx: NamedDependency[ApiContext],
    limit: Annotated[
        int, QueryParameter(ge=1, le=pages.MAX_PAGE, description="Most recent messages listed.")
    ] = 100,
    history: Annotated[
        int, QueryParameter(ge=0, le=pages.MAX_PAGE, description="Most recent opens listed.")
    ] = 20,
) -> dict[str, Any]:
    """A recipient's messages (opens, clicks, first open), their recent opens, and the best time to send
    to them: the modal hour and weekday of their human opens in their own time zone (GeoIP), or, below 5
    such opens, of the audience of the campaigns they were sent, then of the account (`basis` says); and
    what their mail service reported: the latest delivery event, whether any message hard-bounced or drew a
    complaint, and how many of their messages had each event; and `tracking`: "off" while they are on
    do-not-track (their opens and clicks are not recorded), else "on"."""
    db = ctx.store.database
    recipient = normalize_recipient(recipient)  # stored in this form (schemas.recipient)
    message_rows = ctx.read(sql.recipient_messages(db, account, recipient, limit=limit))
    if not message_rows:
        raise NotFoundException(f"no recipient {recipient!r}")
    shown = [(row[1], row[0]) for row in message_rows[:limit]]
    counts = ctx.read(messages.messages_counts(db, account, shown))  # never empty: a message at least
    open_rows = ctx.read(sql.recipient_opens(db, account, recipient))
    best = bt.recipient_best_time([(row[0], row[1]) for row in open_rows])
    if best.sample_size < bt.MIN_SAMPLE:
        campaigns = [row[0] for row in ctx.read(sql.recipient_campaigns(db, account, recipient))]
        audience = bt.audience_best_time(ctx.read(bt.audience_slots(db, account, campaigns)), "campaigns")
        if audience.sample_size < bt.MIN_SAMPLE:
            account_wide = ctx.read(bt.audience_slots(db, account, None))
            audience = bt.first_sufficient(bt.audience_best_time(account_wide, "account"))
        best = audience
    answer = sql.shape_recipient(
        recipient,
        message_rows=message_rows,
        limit=limit,
        open_rows=open_rows,
        count_rows=counts,
        history=history,
        best=best,
    )
    delivery = ctx.read(deliveries.recipient_deliveries(db, account, recipient))
    # Their consent to tracking and its whole history (issue 19): the proof, with the rest of their data.
    tags = sorted(t.hex() for t in ctx.keyring.recipient_tags(account, recipient))
    changes = consent.shape_history(ctx.read(consent.consent_history(db, account, tags)))
    state = changes[-1]["state"] if changes else "unknown"
    suppressed = bool(ctx.read(privacy.recipient_suppressed(db, account, tags))[0][0])
    return {
        **answer,
        **deliveries.shape_recipient_deliveries(delivery),
        "consent": {"state": state, "history": changes},
        "tracking": "off" if suppressed else "on",
    }
