"""The notice: what pixelpipe tells a sender about each counted hit, and the webhook subscriptions it goes to.

A notice is made for every stored hit that counts (a human open or click, or a machine open) once its row is
in ClickHouse; it travels on the ``enriched`` topic in Kafka mode (orjson, like the raw hit), feeds the live
stream (`GET /v1/live`) and becomes one webhook delivery per matching subscription. Its ``id`` is the hit's
id, so a notice replayed after a crash has the same id and receivers deduplicate on it.

A mail service's report on a sent message makes a notice too (``delivered``, ``bounce``, ``complaint``: a
*delivery notice*, `notices.delivery_making`), once the delivery loader stored it matched to its send. Its
``id`` is the event's ``delivery_id`` (stable across a provider's retries and our replays), ``at_ms`` when the
mail service says it happened; it carries the delivery fields (provider, bounce type, SMTP status, diagnostic)
and no hit fields: ``verdict`` and ``reason`` are empty (a report is not a judged hit), and its public JSON
(`notice_data`) shows neither them nor what only a hit has (``first``, ``sent_at``, client, device, OS,
country, ``via_proxy``).

A timed open's measurement makes a notice too (``read``, issue 18: a *read notice*, `notices.read_making`),
once the processor stored its read record (`schemas.reads.ReadRecord`): the open's message, ``read_of``
(the open's hit id), how long it stayed on screen and what that is called (`schemas.reads.read_category`).
Its ``id`` is ``<read_of>:read`` (one read per open, stable across replays), ``at_ms`` when the measurement
ended. Only a counted human open (an ``open`` notice) makes a read notice, so a receiver of opens always has
the open before its read (same message, same lane); a machine open's read is ``unknown`` and makes none.

``first`` marks the first human open of a message: the open with the earliest ``received_at`` (ties broken by
hit id) among those stored. It is decided with a ClickHouse lookup after the hit is stored, never from
memory, so it survives restarts and replays (`notices.making.MessageLookup`).

This module is pure: types, encoding and the public JSON shape. It never does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

import msgspec
import orjson

from schemas.errors import PixelpipeError
from schemas.reads import UNMEASURED
from schemas.secret import Secret
from schemas.wire import required_fields, strict_fields, typed_decoder

NOTICE_VERSION: Final = 1

NoticeType = Literal["open", "machine_open", "click", "delivered", "bounce", "complaint", "read"]
NOTICE_TYPES: Final[frozenset[str]] = frozenset(get_args(NoticeType))
# The notices of a mail service's delivery events; each is named after the event (`DeliveryEvent.event`).
DELIVERY_NOTICE_TYPES: Final[frozenset[str]] = frozenset({"delivered", "bounce", "complaint"})
# What a webhook subscribes to. `first_open` selects the opens with ``first`` set; they still arrive as
# type "open" (with ``data.first: true``), so a receiver subscribed to both sees each open exactly once.
WebhookEvent = Literal[
    "first_open", "open", "click", "machine_open", "delivered", "bounce", "complaint", "read"
]
WEBHOOK_EVENTS: Final[tuple[str, ...]] = get_args(WebhookEvent)


class MalformedNotice(PixelpipeError, ValueError):
    """Bytes on the enriched topic that are not a notice of a version we read."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One counted hit, or one delivery event of a sent message, as senders see it. Times are epoch
    milliseconds (UTC)."""

    id: str  # the hit id (a delivery notice: the delivery id): stable across replays, the deduplication key
    type: NoticeType
    account: str
    campaign_id: str
    message_id: str
    at_ms: int  # when the edge received the hit (a delivery notice: when the mail service says it happened)
    created_at_ms: int  # when the notice was made (its row was stored)
    verdict: str
    reason: str
    via_proxy: bool = False
    first: bool = False
    recipient: str = ""  # from the message's registration; "" when it was never registered
    sent_at_ms: int = 0
    link_index: int = -1
    url: str = ""
    client: str = ""
    device: str = ""
    os: str = ""
    country: str = ""
    # hex of the hit's recipient tag: lets an erasure or do-not-track find the notice; never shown to senders
    recipient_tag: str = ""
    # A delivery notice's (empty on a hit's; defaults, so notices written before them still decode):
    provider: str = ""  # who reported it: sendgrid, mailgun, ses, postmark, generic, report
    provider_message_id: str = ""  # the mail service's id of the sent message
    provider_type: str = ""  # the mail service's own name of the event or bounce type, as given
    bounce_type: str = ""  # hard or soft, on a bounce
    smtp_status: str = ""  # the enhanced status code (RFC 3463), e.g. "5.1.1"
    smtp_code: int = 0  # the basic reply code, e.g. 550; 0 when not given
    diagnostic: str = ""  # the mail server's diagnostic text
    # A read notice's (empty on the others'; ``verdict`` holds its open's verdict, "" until it is known):
    read_of: str = ""  # the open's hit id
    opened_at_ms: int = 0  # when the edge answered the open
    read_ms: int = 0  # how long the pixel was held (0 when nothing was measured: busy, proxy)
    read_end: str = ""  # how the measurement ended (`schemas.reads.ReadEnd`)
    read_category: str = ""  # read, skimmed, glanced or unknown; "" until its open's verdict is known
    v: int = NOTICE_VERSION  # last: `schemas.wire.typed_decoder` recognises a record by its tail

    @property
    def message_key(self) -> tuple[str, str]:
        return (self.account, self.message_id)

    @property
    def partition_key(self) -> bytes:
        """Notices of one message share a key (the raw hit's), so they stay in order on one partition."""
        return f"{self.account}\x1f{self.message_id}".encode()


def notice_type(kind: str, verdict: str) -> NoticeType | None:
    """The notice a stored hit makes, or None when it makes none (bots, invalid tokens)."""
    if verdict == "human":
        return "click" if kind == "click" else "open"
    if verdict == "machine" and kind == "open":
        return "machine_open"
    return None


def wanted_by(events: Sequence[str], notice: Notice) -> bool:
    """Whether a webhook subscribed to ``events`` receives this notice."""
    if notice.type in events:
        return True
    return notice.type == "open" and notice.first and "first_open" in events


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notice_data(notice: Notice) -> dict[str, Any]:
    """The public JSON shape (the ``data`` of a webhook body and of a live event)."""
    data = _about(notice)
    if notice.type in DELIVERY_NOTICE_TYPES:
        return _delivery_data(notice, data)
    if notice.type == "read":
        return _read_data(notice, data)
    data.update(
        first=notice.first,
        at=_iso(notice.at_ms),
        sent_at=_iso(notice.sent_at_ms) if notice.sent_at_ms else None,
        verdict=notice.verdict,
        reason=notice.reason,
        via_proxy=notice.via_proxy,
        client=notice.client or None,
        device=notice.device or None,
        os=notice.os or None,
        country=notice.country or None,
    )
    if notice.type == "click":
        data["link_index"] = notice.link_index
        data["url"] = notice.url
    return data


def _about(notice: Notice) -> dict[str, Any]:
    """What every notice's JSON starts with: which notice, of which message, to whom."""
    return {
        "id": notice.id,
        "type": notice.type,
        "account": notice.account,
        "campaign_id": notice.campaign_id,
        "message_id": notice.message_id,
        "recipient": notice.recipient or None,
    }


def _delivery_data(notice: Notice, data: dict[str, Any]) -> dict[str, Any]:
    # What a mail service said, and nothing of a hit's: a report has no client, verdict or first open.
    data.update(
        at=_iso(notice.at_ms),
        provider=notice.provider,
        provider_message_id=notice.provider_message_id or None,
        provider_type=notice.provider_type or None,
    )
    if notice.type == "bounce":
        data["bounce_type"] = notice.bounce_type or None
    data.update(
        smtp_status=notice.smtp_status or None,
        smtp_code=notice.smtp_code or None,
        diagnostic=notice.diagnostic or None,
    )
    return data


def _read_data(notice: Notice, data: dict[str, Any]) -> dict[str, Any]:
    # The measurement and its name, and nothing of a hit's: the open it measured is ``read_of``.
    data.update(
        at=_iso(notice.at_ms),
        read_of=notice.read_of,
        opened_at=_iso(notice.opened_at_ms),
        read_seconds=read_seconds(notice.read_ms, notice.read_end),
        end=notice.read_end,
        read_category=notice.read_category or "unknown",
    )
    return data


def read_seconds(read_ms: int, end: str) -> float | None:
    """The seconds a read notice shows (as the message timeline does): null when nothing was measured
    (`schemas.reads.UNMEASURED`: the GIF went whole)."""
    return None if end in UNMEASURED else read_ms / 1000


def created_at_iso(notice: Notice) -> str:
    return _iso(notice.created_at_ms)


def encode_notice(notice: Notice) -> bytes:
    return orjson.dumps(notice)


_REQUIRED: Final = required_fields(Notice)
_TYPES: Final[dict[str, type]] = {
    "id": str, "type": str, "account": str, "campaign_id": str, "message_id": str, "at_ms": int,
    "created_at_ms": int, "verdict": str, "reason": str, "via_proxy": bool, "first": bool, "recipient": str,
    "sent_at_ms": int, "link_index": int, "url": str, "client": str, "device": str, "os": str,
    "country": str, "recipient_tag": str, "provider": str, "provider_message_id": str, "provider_type": str,
    "bounce_type": str, "smtp_status": str, "smtp_code": int, "diagnostic": str, "read_of": str,
    "opened_at_ms": int, "read_ms": int, "read_end": str, "read_category": str, "v": int,
}  # fmt: skip


def decode_notice(raw: bytes) -> Notice:
    """Strict: anything that is not a notice of this version raises `MalformedNotice`. On every notice read
    from the enriched topic, so msgspec first (`schemas.wire.typed_decoder`)."""
    return _decode_typed(raw)


def _decode_checked(raw: bytes) -> Notice:
    fields = strict_fields(
        raw, version=NOTICE_VERSION, required=_REQUIRED, types=_TYPES, error=MalformedNotice, what="notice"
    )
    if fields["type"] not in NOTICE_TYPES:
        raise MalformedNotice(f"unknown notice type {fields['type']!r}")
    return Notice(**fields)


_decode_typed: Final = typed_decoder(Notice, NOTICE_VERSION, _decode_checked)


# -- batches: one record carries the notices of one partition from one pass of the hub ------------------
#
# A record per notice cost the producer and each consumer more than everything else the notice path does
# (aiokafka's per-record work is Python). A batch is ``{"v": 1, "notices": [notice, ...]}``, in stored
# order; a reader also takes a lone notice (what earlier versions wrote). One malformed notice in a batch is
# skipped with its reason, the others are read.


class _Batch(msgspec.Struct, frozen=True, gc=False):
    v: int
    notices: list[Notice]


_decode_batch: Final = msgspec.json.Decoder(_Batch).decode


def encode_notice_batch(notices: Sequence[Notice]) -> bytes:
    return orjson.dumps({"v": NOTICE_VERSION, "notices": notices})


def decode_notice_batch(raw: bytes) -> tuple[list[Notice], list[str]]:
    """The notices of a record and the reasons of those skipped; `MalformedNotice` when the record is
    neither a batch nor a notice."""
    if not raw.startswith(b'{"v":'):
        return [decode_notice(raw)], []
    try:
        batch = _decode_batch(raw)
        if batch.v == NOTICE_VERSION and all(n.v == NOTICE_VERSION for n in batch.notices):
            return batch.notices, []
    except (msgspec.DecodeError, AttributeError, TypeError):
        pass
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedNotice(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or "notices" not in obj:
        return [decode_notice(raw)], []  # a lone notice that happens to start with its version
    if obj.get("v") != NOTICE_VERSION or not isinstance(obj["notices"], list):
        raise MalformedNotice(f"unknown notice batch version {obj.get('v')!r}")
    notices, skipped = [], []
    for i, item in enumerate(obj["notices"]):
        try:
            notices.append(_decode_checked(orjson.dumps(item)))
        except MalformedNotice as exc:
            skipped.append(f"notices[{i}]: {exc}")
    return notices, skipped


@dataclass(frozen=True, slots=True)
class Webhook:
    """One registered endpoint of an account (the ``webhooks`` table)."""

    account: str
    webhook_id: str
    url: str
    events: tuple[str, ...]
    secret: Secret  # the signing secret, unsealed: never in a repr, a log line or JSON
    created_at: datetime | None = None


WEBHOOK_COLUMNS: Final = (
    "account", "webhook_id", "url", "events", "secret", "created_at", "updated_at", "deleted",
)  # fmt: skip
DELIVERY_COLUMNS: Final = (
    "account", "webhook_id", "delivery_id", "notice_id", "message_id", "type", "attempt", "status",
    "response_code", "error", "attempted_at", "next_attempt_at", "duration_ms",
)  # fmt: skip
