"""The SQL of engagement per recipient (0012's ``engagement`` rollup): one recipient's numbers, status and
score (`recipient_engagement`), and segments (`segment_page`, `segment_count`). Pure builders and shaping.

One SELECT list (`MEASURES`) serves both, so a recipient's score in a segment is the score of their own page.
Sets are unioned at query time (``groupUniqArrayArray``): a hit or event stored twice is the same hash twice.

**Status**, first that applies: ``complained`` (a complaint), ``bounced`` (a hard bounce), ``not_tracked``
(tracking refused: the newest ``consent_events`` row of a tag says ``refused``, or the recipient is
suppressed now, ``suppression_tags``: do-not-track, or a consent refusal's suppression; or never allowed:
sends but none tracked individually, ``sends.tracking``), ``engaged`` (a person opened or clicked a message:
a message whose only sign of a person is a click is opened too),
``unknown`` (no person's open or click, but Apple Mail Privacy Protection opened a message, which hides
whether the reader did; or no send recorded), ``unengaged``.

**Score** (1-5 stars, like Mailchimp's): null when not tracked; 1 when complained or bounced; 3 when unknown;
else ``1 + floor(4 * (0.75 * e + 0.25 * c) + 0.5)`` where ``e`` = messages a person opened or clicked /
messages tracked and ``c`` = messages clicked / messages tracked (each capped at 1; the denominator is at
least the engaged messages, so opens of sends stored before the upgrade cannot exceed 1).

**Implied opens** (issue 20, the definition of campaign stats': ``api/sql/open_rates.py``):
a message a person clicked whose pixel never loaded (no open of any kind, a person's or a machine's) was
opened with images blocked. Kept apart from the pixel's opens: ``opened`` counts the messages a person's
pixel open reached, ``implied_opens`` those only a click shows, so ``opened + implied_opens`` is the messages
a person opened. A clicked message with a machine open only is not implied (its pixel loaded); it counts in
``clicked`` and ``engaged``, never in ``machine_only``, whose messages no person opened or clicked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from api.sql.common import BadQuery, Query, iso

# The merged sets of one recipient (or of several tags of one address), from the rollup's rows.
_MERGED: Final = """max(recipient) AS address, groupUniqArrayArray(sent) AS s,
       groupUniqArrayArray(tracked) AS tr,
       groupUniqArrayArray(delivered) AS d, groupUniqArrayArray(human_opened) AS ho,
       groupUniqArrayArray(human_open_hits) AS hoh, groupUniqArrayArray(clicked) AS cl,
       groupUniqArrayArray(click_hits) AS clh, groupUniqArrayArray(machine_opened) AS mo,
       groupUniqArrayArray(mpp_opened) AS mpp, groupUniqArrayArray(hard_bounced) AS hb,
       groupUniqArrayArray(complained) AS co, max(last_sent) AS ls, max(last_open) AS lo,
       max(last_click) AS lc"""

# The numbers of a merged row (`refused` is a UInt8 expression over it), in `FIELDS` order.
MEASURES: Final = """length(s) AS sends, length(d) AS delivered_n, length(ho) AS opened,
       length(hoh) AS human_opens,
       length(arrayFilter(m -> NOT has(ho, m) AND NOT has(mo, m), cl)) AS implied_opens,
       length(cl) AS clicked_n, length(clh) AS clicks,
       length(arrayFilter(m -> NOT has(ho, m) AND NOT has(cl, m), mo)) AS machine_only,
       length(arrayFilter(m -> NOT has(ho, m) AND NOT has(cl, m), mpp)) AS mpp_only,
       length(hb) AS bounces, length(co) AS complaints, length(tr) AS tracked_n,
       length(arrayDistinct(arrayConcat(ho, cl))) AS engaged_n,
       ({refused}) OR (sends > 0 AND tracked_n = 0) AS not_tracked,
       multiIf(complaints > 0, 'complained', bounces > 0, 'bounced', not_tracked, 'not_tracked',
               engaged_n > 0, 'engaged', mpp_only > 0 OR sends = 0, 'unknown', 'unengaged') AS status,
       if(not_tracked, NULL, toNullable(toUInt8(multiIf(
           complaints > 0 OR bounces > 0, 1,
           status = 'unknown', 3,
           1 + floor(4 * (0.75 * least(1, engaged_n / greatest(tracked_n, engaged_n, 1))
                          + 0.25 * least(1, clicked_n / greatest(tracked_n, engaged_n, 1)))
                     + 0.5))))) AS score,
       lo, lc, ls"""

FIELDS: Final = (
    "sends", "delivered", "opened", "human_opens", "implied_opens", "clicked", "clicks", "machine_only",
    "mpp_only", "bounces", "complaints", "tracked", "engaged", "not_tracked", "status", "score", "last_open",
    "last_click", "last_sent",
)  # fmt: skip
_TIMES: Final = frozenset({"last_open", "last_click", "last_sent"})


def refused_tags(db: str) -> str:
    """The account's tags whose tracking is refused now: their newest consent change is a refusal (0009
    `consent_events`, issue 19: `api.consent_state.record_consent`), or they are suppressed (0005
    `suppression_tags`, the newest row of a tag says ``tracking`` false: do-not-track, a consent refusal's
    suppression ``consent_refused``, an erasure)."""
    return (
        f"SELECT tag FROM {db}.consent_events WHERE account = {{account:String}} "
        "GROUP BY tag HAVING argMax(state, at) = 'refused' "
        f"UNION ALL SELECT tag FROM {db}.suppression_tags WHERE account = {{account:String}} "
        "GROUP BY tag HAVING NOT argMax(tracking, updated_at)"
    )


def recipient_engagement(db: str, account: str, tags: Sequence[str]) -> Query:
    """One address's engagement, every keyring tag of it merged (a signing-key rotation gives new sends the
    new key's tag). One row; ``sends`` 0 and no address when the rollup has none of the tags."""
    refused = f"(SELECT count() > 0 FROM ({refused_tags(db)}) WHERE tag IN {{tags:Array(String)}})"
    return Query(
        f"""SELECT address, {MEASURES.format(refused=refused)}
            FROM (SELECT {_MERGED} FROM {db}.engagement
                  WHERE account = {{account:String}} AND recipient_tag IN {{tags:Array(String)}})""",
        {"account": account, "tags": list(tags)},
    )


def recorded(row: Sequence[Any]) -> bool:
    """Whether a `recipient_engagement` row found anything of the recipient: their address (from a send), or
    a send, a person's open or a delivery (rows of hits and delivery events carry no address)."""
    numbers = shape(row[1:])
    return bool(row[0] or numbers["sends"] or numbers["opened"] or numbers["delivered"])


def shape(row: Sequence[Any]) -> dict[str, Any]:
    """The answer's numbers of one row of `MEASURES` (without the leading columns)."""
    out: dict[str, Any] = {}
    for name, value in zip(FIELDS, row, strict=True):
        if name in _TIMES:
            out[name] = iso(value)
        elif name == "not_tracked":
            out[name] = bool(value)
        else:
            out[name] = value
    return out


# -- segments


@dataclass(frozen=True, slots=True)
class CampaignLink:
    """A campaign and, for `clicked`, one of its links by index or URL (neither: any link)."""

    campaign: str
    link_index: int | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """Conditions, AND-combined. Those resting on tracking (all but bounced, complained, refused_tracking)
    leave out every recipient not tracked (consent refused or never allowed)."""

    inactive_days: int | None = None
    min_score: int | None = None
    clicked: CampaignLink | None = None
    opened: str | None = None
    opened_not_clicked: str | None = None
    machine_only: bool = False
    bounced: bool = False
    complained: bool = False
    refused_tracking: bool = False

    @property
    def rests_on_tracking(self) -> bool:
        return (
            self.inactive_days is not None
            or self.min_score is not None
            or self.clicked is not None
            or self.opened is not None
            or self.opened_not_clicked is not None
            or self.machine_only
        )


# A page's tags: its window of the rollup (`segment_window`), also the campaign conditions' (their sets of
# tags stay the window's, not the campaign's: a third of the time of a large campaign's page).
_WINDOW: Final = "recipient_tag > {after:String} AND recipient_tag <= {upto:String}"


def _human(db: str, kind: str, campaign: str, extra: str = "", *, window: str = "") -> str:
    """The tags of the persons' hits of one kind in a campaign (parameter ``campaign``, a name of the
    segment's parameters): a range of the campaign's keys in ``events`` (``window``: and of these tags)."""
    return (
        f"SELECT DISTINCT recipient_tag FROM {db}.events WHERE account = {{account:String}} "
        f"AND campaign_id = {{{campaign}:String}} AND kind = '{kind}' AND verdict = 'human' {extra}"
        + (f" AND {window}" if window else "")
    )


def _opened(db: str, campaign: str, *, window: str = "") -> str:
    """The tags of the recipients a person opened a message of the campaign to: a person's pixel open, or an
    implied open (a person's click on a message with no open of any kind), per message of the campaign's
    range of ``events`` (a message's rows share its recipient's tag; '' on rows stored before 0012)."""
    return (
        f"SELECT max(recipient_tag) FROM {db}.events WHERE account = {{account:String}} "
        f"AND campaign_id = {{{campaign}:String}} {f'AND {window} ' if window else ''}GROUP BY message_id "
        "HAVING countIf(kind = 'open' AND verdict = 'human') > 0 "
        "OR (countIf(kind = 'click' AND verdict = 'human') > 0 AND countIf(kind = 'open') = 0)"
    )


def _opened_not_clicked(db: str, campaign: str, *, window: str = "") -> str:
    """The tags of the recipients a person opened a message of the campaign to, and who clicked none: the
    persons' opens and clicks of the campaign's range of ``events``, read once."""
    return (
        f"SELECT recipient_tag FROM {db}.events WHERE account = {{account:String}} "
        f"AND campaign_id = {{{campaign}:String}} AND kind IN ('open', 'click') AND verdict = 'human' "
        + (f"AND {window} " if window else "")
        + "GROUP BY recipient_tag HAVING countIf(kind = 'click') = 0"
    )


def _conditions(db: str, seg: Segment, *, window: str = "") -> tuple[list[str], list[str], dict[str, Any]]:
    """(conditions on the rollup's tags, before the merge; conditions on the measures; parameters). Each
    campaign condition has its own parameter, so they may name different campaigns. ``window``: a page's
    range of tags, which the campaign conditions' sets keep to."""
    inner: list[str] = []
    outer: list[str] = []
    params: dict[str, Any] = {}
    if seg.clicked is not None:
        link = ""
        if seg.clicked.link_index is not None:
            link = "AND link_index = {link_index:Int16}"
            params["link_index"] = seg.clicked.link_index
        elif seg.clicked.url is not None:
            link = "AND url = {url:String}"
            params["url"] = seg.clicked.url
        inner.append(f"recipient_tag IN ({_human(db, 'click', 'clicked_campaign', link, window=window)})")
        params["clicked_campaign"] = seg.clicked.campaign
    if seg.opened is not None:
        inner.append(f"recipient_tag IN ({_opened(db, 'opened_campaign', window=window)})")
        params["opened_campaign"] = seg.opened
    if seg.opened_not_clicked is not None:
        params["onc_campaign"] = seg.opened_not_clicked
        inner.append(f"recipient_tag IN ({_opened_not_clicked(db, 'onc_campaign', window=window)})")
    if seg.inactive_days is not None:
        # In seconds as Int64: `now() - toIntervalDay(N)` wraps DateTime for N over ~20,500 days (a date in
        # the future: everyone "inactive"). Never active (epoch 0) is inactive for any N.
        outer.append(
            "(toUnixTimestamp(greatest(lo, lc)) = 0 OR toInt64(toUnixTimestamp(greatest(lo, lc))) "
            "< toInt64(toUnixTimestamp(now())) - 86400 * toInt64({inactive_days:UInt32}))"
        )
        params["inactive_days"] = seg.inactive_days
    if seg.min_score is not None:
        outer.append("score >= {min_score:UInt8}")
        params["min_score"] = seg.min_score
    if seg.machine_only:
        outer.append("machine_only > 0 AND engaged_n = 0")
    if seg.bounced:
        outer.append("bounces > 0")
    if seg.complained:
        outer.append("complaints > 0")
    if seg.refused_tracking:
        outer.append("not_tracked")
    if seg.rests_on_tracking:
        outer.append("NOT not_tracked")
    return inner, outer, params


# How many rollup rows of the account one page reads at most, in tag order from the cursor: a page costs this
# much whatever the segment, and may hold fewer than ``limit`` recipients (even none) with a next cursor.
PAGE_WINDOW: Final = 10_000


def _segment_sql(db: str, seg: Segment, *, paged: bool) -> tuple[str, dict[str, Any]]:
    inner, outer, params = _conditions(db, seg, window=_WINDOW if paged else "")
    if paged:
        inner.append(_WINDOW)
    where = " AND ".join(["account = {account:String}", *inner])
    refused = f"tag IN ({refused_tags(db)})"
    having = " AND ".join(outer) or "1"
    sql = f"""SELECT tag, address, {MEASURES.format(refused=refused)}
              FROM (SELECT recipient_tag AS tag, {_MERGED} FROM {db}.engagement WHERE {where}
                    GROUP BY recipient_tag ORDER BY recipient_tag)
              WHERE {having}"""
    return sql, params


def segment_window(db: str, account: str, *, after: str) -> Query:
    """The last tag of the next `PAGE_WINDOW` rollup rows after the cursor's tag, and how many rows that is:
    the range one page reads (the table's key order: a range of granules)."""
    return Query(
        f"""SELECT max(t), count() FROM (SELECT recipient_tag AS t FROM {db}.engagement
            WHERE account = {{account:String}} AND recipient_tag > {{after:String}}
            ORDER BY recipient_tag LIMIT {PAGE_WINDOW})""",
        {"account": account, "after": after},
    )


def segment_page(db: str, account: str, seg: Segment, *, after: str, upto: str, limit: int) -> Query:
    """The segment's recipients with tags in (``after``, ``upto``] (`segment_window`), in tag order (``limit``
    + 1 rows, to tell if there is more). Campaign conditions narrow the tags first, from the campaign's range
    of ``events``."""
    sql, params = _segment_sql(db, seg, paged=True)
    return Query(
        f"{sql} ORDER BY tag LIMIT {{limit:UInt32}}",
        {**params, "account": account, "after": after, "upto": upto, "limit": limit + 1},
    )


def next_cursor(
    page_tags: Sequence[str], *, more_rows: bool, window_rows: int, upto: str, limit: int
) -> str | None:
    """Where the next page starts: after the page's last recipient when it is full and more matched; else
    after the window when the window was full (the account has rows beyond it); else nowhere (the end)."""
    if more_rows:
        return encode_cursor(page_tags[limit - 1])
    if window_rows >= PAGE_WINDOW:
        return encode_cursor(upto)
    return None


def segment_count(db: str, account: str, seg: Segment) -> Query:
    """How many recipients the segment has (reads every row of the account's rollup)."""
    sql, params = _segment_sql(db, seg, paged=False)
    return Query(f"SELECT count() FROM ({sql})", {**params, "account": account})


def encode_cursor(tag: str) -> str:
    """The cursor after a page: the last tag, opaque."""
    return base64.urlsafe_b64encode(f"e1:{tag}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str:
    """The tag a cursor stands after ('' for the first page); `BadQuery` for one this API did not give."""
    if not cursor:
        return ""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadQuery("cursor: not a cursor this API gave") from exc
    if not text.startswith("e1:"):
        raise BadQuery("cursor: not a cursor this API gave")
    return text[3:]
