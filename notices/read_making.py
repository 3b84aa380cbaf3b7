"""Making read notices (issue 18): one per stored read record of a counted human open (`read_notices_of`), and
naming those whose open this processor did not judge once the store says what it was (`named`). Pure.

The processor hands its stored read records on as `processors.reads.StoredRead`, right after the hits of the
same flush, each with its open's final classification when the processor judged that open since it started
(the open came in the same batch or an earlier one of this run: `processors.reads.RecentOpens`). Then the
notice is complete here: its ``read_category`` is `schemas.reads.read_category` over the record and whether
the open is a person's (a ``human`` verdict), the same rule the API applies at query time
(`schemas.reads.category_sql`, the open's row in ``events`` joined). When the processor does not know the
open (judged before a restart, by another processor, or forgotten), the notice leaves here with ``verdict``
and ``read_category`` empty, and `notices.making.MessageLookup` asks ``events`` for the open's verdict and
calls `named`: so a notice says what the API says, whoever judged the open.

Which reads make a notice: those of an open that made an ``open`` notice (a counted ``human`` open: a
person's, or an image proxy's on the reader's behalf, whose read is then ``unknown`` by its end, ``proxy``). A
machine open's read is ``unknown`` whatever was measured (the numbers count it so) and tells a sender nothing,
so it makes no notice: a live stream without machine opens, or a webhook subscribed to ``open`` and ``read``,
never gets a read whose open it was not told of. A read of a bot's or a replay flood's open, of an invalid
token's, or of an open that is not in ``events`` at all (dead-lettered) makes none either, as its open made
none. The read always comes after its open: stored after it, handed on after it, on the message's lane. Must
never do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from processors.reads import StoredRead
from schemas.notices import NOTICE_VERSION, Notice
from schemas.reads import read_category
from schemas.verdicts import Verdict
from schemas.wire import fast_constructor, fast_replace

_notice: Final = fast_constructor(Notice)
_named: Final = fast_replace(Notice, "verdict", "read_category")


def read_notice_id(read_of: str) -> str:
    """A read notice's id: one read per open, so the open's hit id names it, stable across replays."""
    return f"{read_of}:read"


def read_notices_of(reads: Sequence[StoredRead], created_at_ms: int) -> list[Notice]:
    """The notices of stored read records, in stored order; a read whose open is known and is no counted
    human open makes none. A notice whose open is not known here has ``verdict`` and ``read_category`` ""
    (`named` fills them)."""
    notices = []
    for stored in reads:
        record = stored.record
        verdict, category = "", ""
        if stored.open is not None:
            if stored.open.verdict is not Verdict.HUMAN:
                continue
            verdict = stored.open.verdict.value
            category = read_category(record.read_ms, record.end, person=True)
        notices.append(
            _notice(
                id=read_notice_id(record.read_of),
                type="read",
                account=record.account,
                campaign_id=record.campaign_id,
                message_id=record.message_id,
                at_ms=record.ended_at_ms,
                created_at_ms=created_at_ms,
                verdict=verdict,
                reason="",
                via_proxy=False,
                first=False,
                recipient="",
                sent_at_ms=0,
                link_index=-1,
                url="",
                client="",
                device="",
                os="",
                country="",
                recipient_tag=record.recipient_tag,
                provider="",
                provider_message_id="",
                provider_type="",
                bounce_type="",
                smtp_status="",
                smtp_code=0,
                diagnostic="",
                read_of=record.read_of,
                opened_at_ms=record.opened_at_ms,
                read_ms=record.read_ms,
                read_end=record.end.value,
                read_category=category,
                v=NOTICE_VERSION,
            )
        )
    return notices


def unnamed(notice: Notice) -> bool:
    """Whether ``notice`` is a read notice whose open's verdict is not known yet."""
    return notice.type == "read" and not notice.verdict


def named(notice: Notice, open_verdict: str | None) -> Notice | None:
    """A read notice named by its open's verdict in ``events`` (None: the open is no human open there, so
    its read makes no notice); any other notice as it is."""
    if not unnamed(notice):
        return notice
    if open_verdict != Verdict.HUMAN.value:
        return None
    category = read_category(notice.read_ms, notice.read_end, person=True)
    return _named(notice, verdict=open_verdict, read_category=category)


def named_all(notices: Sequence[Notice], open_verdicts: Mapping[str, str]) -> list[Notice]:
    """`named` over ``notices``, the opens' verdicts by hit id; the read notices whose open is no human
    open there left out."""
    out = []
    for n in notices:
        done = named(n, open_verdicts.get(n.read_of)) if unnamed(n) else n
        if done is not None:
            out.append(done)
    return out
