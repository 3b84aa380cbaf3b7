"""Engagement per recipient and segments (issue 20): ``GET /v1/recipients/{recipient}/engagement`` and
``POST /v1/segments/query``, scoped to the caller's account. The numbers, status and score are
`api.sql.engagement`'s (one SELECT list for both).

A recipient in the store is their keyed tag (`schemas.tokens.recipient_tag`); a lookup by address merges the
tags under every key of the keyring, a segment lists by tag (after a signing-key rotation an address may
appear once per key until the old key's sends leave the retention).
"""

from __future__ import annotations

from typing import Any, Final

from litestar import get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from api.context import ApiContext, RecipientPath, account_dependency
from api.openapi import bad_request
from api.segment_bodies import SegmentIn, segment_of
from api.sql import engagement as sql
from api.sql.common import BadQuery
from schemas.recipient import normalize_recipient

_ACCOUNT: Final = {"account": account_dependency}

ENGAGEMENT_FIELDS: Final = """`sends` (messages sent), `delivered` (messages with a `delivered` event),
`opened` (messages a person's pixel open reached), `human_opens` (those opens), `implied_opens` (messages a
person clicked whose pixel never loaded: opened with images blocked; apart from `opened`), `clicked`
(messages a person clicked), `clicks` (those clicks), `machine_only` (messages opened only by machines, no
person's open or click), `mpp_only` (of those, by Apple's prefetch), `bounces` (hard-bounced messages),
`complaints`, `tracked` (sends tracked individually), `engaged` (messages a person opened or clicked),
`not_tracked` (tracking refused, do-not-track, or never allowed), `status` (`engaged`, `unengaged`,
`unknown`, `bounced`, `complained`, `not_tracked`), `score` (1-5, null when not tracked; README: Engagement
and segments), `last_open`, `last_click`, `last_sent` (ISO 8601 or null)"""


@get(
    "/v1/recipients/{recipient:str}/engagement",
    dependencies=_ACCOUNT,
    tags=["analytics"],
    sync_to_thread=True,
    description=f"A recipient's engagement (issue 20), every keyring tag of the address merged: `recipient`, "
    f"{ENGAGEMENT_FIELDS}. 404 when nothing of theirs is recorded.",
)
def recipient_engagement(
    *, recipient: RecipientPath, account: NamedDependency[str], ctx: NamedDependency[ApiContext]
) -> dict[str, Any]:
    """A recipient's engagement: messages sent, delivered, opened and clicked
    by a person (with the opens' and clicks' hits; `implied_opens`: messages a person clicked whose pixel
    never loaded, apart from the pixel's `opened`), opened only by machines, bounced, complained; the last
    open, click and send; `status` (engaged, unengaged, unknown, bounced, complained, not_tracked) and
    `score` (1-5, null where tracking was refused or never allowed; README: Engagement)."""
    canonical = normalize_recipient(recipient)
    tags = sorted(tag.hex() for tag in ctx.keyring.recipient_tags(account, canonical))
    (row,) = ctx.read(sql.recipient_engagement(ctx.store.database, account, tags))
    if not sql.recorded(row):
        raise NotFoundException(f"no engagement recorded for recipient {canonical!r}")
    return {"recipient": canonical, **sql.shape(row[1:])}


SegmentRules = bad_request(
    "a `cursor` this API did not give; `clicked` with both `link_index` and `url`; a field out of its bounds"
)


@post(
    "/v1/segments/query",
    dependencies=_ACCOUNT,
    tags=["analytics"],
    sync_to_thread=True,
    status_code=HTTP_200_OK,
    raises=[SegmentRules],
    description="Recipients by engagement (issue 20), every condition of the body holding: "
    '`{"recipients": [{"recipient", "recipient_tag", ' + ENGAGEMENT_FIELDS + '}], "next_cursor": '
    'string or null, "count"?: n}`, ordered by recipient tag. A page reads at most 10,000 recipients of '
    "the account from the cursor on: it may hold fewer than `limit`, even none, while `next_cursor` is not "
    "null; follow it to the end. Consent: a recipient not tracked appears only in segments resting on no "
    "tracking condition (`bounced`, `complained`, `refused_tracking`).",
)
def segment_query(
    *, data: JSONBody[SegmentIn], account: NamedDependency[str], ctx: NamedDependency[ApiContext]
) -> dict[str, Any]:
    """The recipients meeting every condition, with their engagement, in a stable order (by recipient tag),
    a page at a time (`limit`, then `cursor` = the previous page's `next_cursor`; a page reads at most
    10,000 recipients of the account, so it may hold fewer than `limit`, even none, while `next_cursor` is
    not null: follow it to the end); `count: true` adds how many there are. Consent: a recipient whose
    tracking was refused or never allowed appears only in segments that rest on no tracking condition
    (bounced, complained, refused_tracking)."""
    db = ctx.store.database
    try:
        segment = segment_of(data)
        after = sql.decode_cursor(data.cursor)
        ((upto, window_rows),) = ctx.read(sql.segment_window(db, account, after=after))
        rows = []
        if window_rows:
            rows = ctx.read(sql.segment_page(db, account, segment, after=after, upto=upto, limit=data.limit))
    except BadQuery as exc:
        raise ClientException(str(exc)) from exc
    page = rows[: data.limit]
    answer: dict[str, Any] = {
        "recipients": [
            {"recipient": address, "recipient_tag": tag, **sql.shape(rest)} for tag, address, *rest in page
        ],
        "next_cursor": sql.next_cursor(
            [r[0] for r in page],
            more_rows=len(rows) > data.limit,
            window_rows=window_rows,
            upto=upto,
            limit=data.limit,
        ),
    }
    if data.count:
        answer["count"] = ctx.read(sql.segment_count(db, account, segment))[0][0]
    return answer
