"""The body of a segment (issue 20): `SegmentIn`, the conditions of ``POST /v1/segments/query`` and of a
segment export (``POST /v1/exports``, kind ``segment``), and `segment_of`, the one rule that turns it into
`api.sql.engagement.Segment`. Shared by `api.engagement` and `api.exports`, which never import each other.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from api.sql import engagement as sql
from api.sql.common import BadQuery
from api.sql.pages import MAX_PAGE

CampaignId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ClickedIn(msgspec.Struct, forbid_unknown_fields=True):
    """A person clicked a link of the campaign: the one at `link_index` (its position in the registration's
    links, from 0) or with this `url`, not both; neither: any link."""

    campaign: CampaignId
    link_index: Annotated[int, msgspec.Meta(ge=0, le=32767)] | None = None
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    """A campaign, by id."""

    campaign: CampaignId


def _described(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


class SegmentIn(msgspec.Struct, forbid_unknown_fields=True):
    """Conditions, all of which a recipient meets (AND); none: every recipient."""

    inactive_days: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=36500)] | None, _described("no person's open or click in N days")
    ] = None
    min_score: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=5)] | None, _described("a score of at least S")
    ] = None
    clicked: Annotated[
        ClickedIn | None, _described("a person clicked this link of the campaign (or any)")
    ] = None
    opened: Annotated[
        CampaignIn | None,
        _described("a person opened a message of the campaign: a pixel open, or an implied one (a click on a "
                   "message whose pixel never loaded)"),
    ] = None  # fmt: skip
    opened_not_clicked: Annotated[
        CampaignIn | None, _described("a person opened a message of the campaign and clicked none")
    ] = None
    machine_only: Annotated[bool, _described("opened, but only ever by machines")] = False
    bounced: Annotated[bool, _described("a message hard-bounced")] = False
    complained: Annotated[bool, _described("they complained (marked a message as spam)")] = False
    refused_tracking: Annotated[
        bool, _described("tracking refused (consent, do-not-track) or never allowed (`not_tracked`)")
    ] = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE, description="recipients per page at most")] = 100
    cursor: Annotated[
        Annotated[str, msgspec.Meta(max_length=512)] | None, _described("the previous page's `next_cursor`")
    ] = None
    count: Annotated[
        bool, _described("add `count`, the segment's size (reads the account's whole table)")
    ] = False


def segment_of(data: SegmentIn) -> sql.Segment:
    """The segment a request asks for; `BadQuery` for a contradiction."""
    clicked = None
    if data.clicked is not None:
        if data.clicked.link_index is not None and data.clicked.url is not None:
            raise BadQuery("clicked: give link_index or url, not both")
        clicked = sql.CampaignLink(data.clicked.campaign, data.clicked.link_index, data.clicked.url)
    return sql.Segment(
        inactive_days=data.inactive_days,
        min_score=data.min_score,
        clicked=clicked,
        opened=None if data.opened is None else data.opened.campaign,
        opened_not_clicked=None if data.opened_not_clicked is None else data.opened_not_clicked.campaign,
        machine_only=data.machine_only,
        bounced=data.bounced,
        complained=data.complained,
        refused_tracking=data.refused_tracking,
    )
