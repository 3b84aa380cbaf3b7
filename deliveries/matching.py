"""Matching delivery events to the sends they are about: a pure core, and `find_sends`, the store lookups of
one batch (at most one query per way, with IN lists: ``sends`` has bloom indexes on ``message_id``,
``recipient`` and ``provider_message_id``).

The ways, in order; an event takes the first that finds its send:

1. ``message_id``: ours, carried in the provider's custom fields; it must be a send of the event's account;
2. ``provider_message_id``: the mail service's id of the message, recorded at registration
   (``POST /v1/messages``' ``provider_message_id``), the latest send of the account with it;
3. ``recipient``: the latest send to the event's recipient (normalised: `schemas.recipient`) within the
   event's ``campaign_id``.

A matched event gets the send's ``message_id`` and ``campaign_id``, and its recipient when the event has none.
An event no way matches keeps ``message_id`` empty and says why (`Matched.unmatched_reason`, the reason of
the first way it could try). Events may come in any order (an open before its ``delivered``): matching
looks at the sends only, never at other delivery events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from schemas.delivery_events import DeliveryEvent
from schemas.recipient import normalize_recipient

MatchedBy = Literal["message_id", "provider_message_id", "recipient", ""]

# Why an event matched nothing (stored in `deliveries.unmatched_reason`), and its metric label.
NO_SEND_WITH_MESSAGE_ID: Final = "no send with this message_id"
NO_SEND_WITH_PROVIDER_ID: Final = "no send with this provider message id"
NO_SEND_TO_RECIPIENT: Final = "no send to this recipient in this campaign"
NOTHING_TO_MATCH_BY: Final = "no message id, provider id or campaign+recipient to match by"
REASON_LABELS: Final = {
    NO_SEND_WITH_MESSAGE_ID: "message_id",
    NO_SEND_WITH_PROVIDER_ID: "provider_message_id",
    NO_SEND_TO_RECIPIENT: "recipient",
    NOTHING_TO_MATCH_BY: "nothing",
}


@dataclass(frozen=True, slots=True)
class Send:
    """What matching needs of a registered send."""

    campaign_id: str
    message_id: str
    recipient: str
    recipient_tag: str = ""  # hex, as registration stored it ('' for sends stored before 0012)


@dataclass(frozen=True, slots=True)
class Matched:
    """An event as it is stored: filled from its send (``matched_by`` says how), or unmatched with why."""

    event: DeliveryEvent
    matched_by: MatchedBy = ""
    unmatched_reason: str = ""
    recipient_tag: str = ""  # the matched send's (engagement is kept by it); '' when unmatched

    @property
    def matched(self) -> bool:
        return bool(self.matched_by)


MessageKey = tuple[str, str]  # (account, message_id) or (account, provider_message_id)
RecipientKey = tuple[str, str, str]  # (account, campaign_id, normalised recipient)


@dataclass(slots=True)
class Found:
    """The sends a batch's lookups found, by each way's key."""

    by_message_id: dict[MessageKey, Send] = field(default_factory=dict)
    by_provider_id: dict[MessageKey, Send] = field(default_factory=dict)
    by_recipient: dict[RecipientKey, Send] = field(default_factory=dict)


def _recipient_key(event: DeliveryEvent) -> RecipientKey | None:
    recipient = normalize_recipient(event.recipient)
    if not event.campaign_id or not recipient:
        return None
    return event.account, event.campaign_id, recipient


def message_keys(events: Iterable[DeliveryEvent]) -> set[MessageKey]:
    """Way 1's keys: the events that carry our message id."""
    return {(e.account, e.message_id) for e in events if e.message_id}


def provider_keys(events: Iterable[DeliveryEvent], found: Found) -> set[MessageKey]:
    """Way 2's keys: the events way 1 did not match that carry the provider's message id."""
    return {
        (e.account, e.provider_message_id)
        for e in events
        if e.provider_message_id and (e.account, e.message_id) not in found.by_message_id
    }


def recipient_keys(events: Iterable[DeliveryEvent], found: Found) -> set[RecipientKey]:
    """Way 3's keys: the events neither way 1 nor way 2 matched that carry a campaign and a recipient."""
    keys = set()
    for e in events:
        if (e.account, e.message_id) in found.by_message_id:
            continue
        if (e.account, e.provider_message_id) in found.by_provider_id:
            continue
        key = _recipient_key(e)
        if key is not None:
            keys.add(key)
    return keys


def match(event: DeliveryEvent, found: Found) -> Matched:
    """The event filled from the first way that finds its send, or unmatched with why. Pure."""
    recipient = normalize_recipient(event.recipient)
    send: Send | None = None
    by: MatchedBy = ""
    if event.message_id:
        send, by = found.by_message_id.get((event.account, event.message_id)), "message_id"
    if send is None and event.provider_message_id:
        send, by = found.by_provider_id.get((event.account, event.provider_message_id)), "provider_message_id"
    if send is None and (key := _recipient_key(event)) is not None:
        send, by = found.by_recipient.get(key), "recipient"
    if send is None:
        stored = dataclasses.replace(event, message_id="", recipient=recipient)
        return Matched(stored, "", unmatched_reason(event))
    filled = dataclasses.replace(
        event, message_id=send.message_id, campaign_id=send.campaign_id, recipient=recipient or send.recipient
    )
    return Matched(filled, by, recipient_tag=send.recipient_tag)


def unmatched_reason(event: DeliveryEvent) -> str:
    """Why an event no way matched did not match: the first way it could have taken."""
    if event.message_id:
        return NO_SEND_WITH_MESSAGE_ID
    if event.provider_message_id:
        return NO_SEND_WITH_PROVIDER_ID
    if _recipient_key(event) is not None:
        return NO_SEND_TO_RECIPIENT
    return NOTHING_TO_MATCH_BY


# -- the lookups (one query per way per batch)

RunQuery = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]  # e.g. `Store.query`

# The latest send wins where several share a key (a provider id reused, a recipient mailed twice).
_LATEST: Final = "(sent_at, registered_at)"


def find_sends(query: RunQuery, database: str, events: Sequence[DeliveryEvent]) -> Found:
    """The sends the batch's events match, way after way: each way looks up only the events the ways before
    it left unmatched. Blocking: the loader runs it in a worker thread."""
    found = Found()
    sends = f"{database}.sends"
    if keys := message_keys(events):
        sql = f"""SELECT account, message_id, argMax(campaign_id, {_LATEST}), argMax(recipient, {_LATEST}),
                         argMax(recipient_tag, {_LATEST})
                  FROM {sends}
                  WHERE account IN {{accounts:Array(String)}} AND message_id IN {{ids:Array(String)}}
                  GROUP BY account, message_id"""  # noqa: S608 - database is a validated name; values are bound
        rows = query(sql, {"accounts": sorted({k[0] for k in keys}), "ids": sorted({k[1] for k in keys})})
        found.by_message_id = {(a, m): Send(c, m, r, t) for a, m, c, r, t in rows if (a, m) in keys}
    if keys := provider_keys(events, found):
        sql = f"""SELECT account, provider_message_id, argMax(campaign_id, {_LATEST}),
                         argMax(message_id, {_LATEST}), argMax(recipient, {_LATEST}),
                         argMax(recipient_tag, {_LATEST})
                  FROM {sends} WHERE account IN {{accounts:Array(String)}}
                      AND provider_message_id IN {{ids:Array(String)}}
                  GROUP BY account, provider_message_id"""  # noqa: S608
        rows = query(sql, {"accounts": sorted({k[0] for k in keys}), "ids": sorted({k[1] for k in keys})})
        found.by_provider_id = {(a, p): Send(c, m, r, t) for a, p, c, m, r, t in rows if (a, p) in keys}
    if keys3 := recipient_keys(events, found):
        sql = f"""SELECT account, campaign_id, recipient, argMax(message_id, {_LATEST}),
                         argMax(recipient_tag, {_LATEST})
                  FROM {sends} WHERE account IN {{accounts:Array(String)}}
                      AND campaign_id IN {{campaigns:Array(String)}}
                      AND recipient IN {{recipients:Array(String)}}
                  GROUP BY account, campaign_id, recipient"""  # noqa: S608
        parameters = {
            "accounts": sorted({k[0] for k in keys3}),
            "campaigns": sorted({k[1] for k in keys3}),
            "recipients": sorted({k[2] for k in keys3}),
        }
        found.by_recipient = {
            (a, c, r): Send(c, m, r, t) for a, c, r, m, t in query(sql, parameters) if (a, c, r) in keys3
        }
    return found


def match_all(query: RunQuery, database: str, events: Sequence[DeliveryEvent]) -> list[Matched]:
    """`find_sends`, then `match` each event."""
    found = find_sends(query, database, events)
    return [match(e, found) for e in events]
