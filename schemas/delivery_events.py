"""The delivery event: what a sender's mail service (SendGrid, Mailgun, Amazon SES, Postmark, any MTA through
our generic format, or an uploaded bounce or complaint report) said about a sent email, as the edge publishes
it on the ``deliveries`` topic and the delivery loader stores it. Pure: types, identity, encoding.

The edge has verified the provider's signature and read the provider's format; what travels is one shape for
every provider. Matching to a registered send (by our ``message_id`` from the provider's custom fields, else
the provider's message id, else the recipient within a campaign) happens in the loader, which has the store.

Identity: ``delivery_id`` is derived from the account, the provider and the provider's own id of the event,
so a provider's retry of the same event (they retry until they get a 2xx) is the same row twice, counted once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

import msgspec
import orjson

from schemas.errors import PixelpipeError

DELIVERY_VERSION: Final = 1

DeliveryKind = Literal["delivered", "deferred", "bounce", "dropped", "complaint", "unsubscribe"]
DELIVERY_KINDS: Final[tuple[str, ...]] = get_args(DeliveryKind)
BounceType = Literal["", "hard", "soft"]  # "" for every event but a bounce
BOUNCE_TYPES: Final[tuple[str, ...]] = get_args(BounceType)
# Who reported it: a provider's webhook, our generic signed JSON, or an uploaded RFC 3464 / RFC 5965 report.
Provider = Literal["sendgrid", "mailgun", "ses", "postmark", "generic", "report"]
PROVIDERS: Final[tuple[str, ...]] = get_args(Provider)

# The DDL's DateTime64(3) ends in 2299: a time outside would fail its batch's insert on every retry.
_MAX_MS: Final = 10_413_791_999_000
Millis = Annotated[int, msgspec.Meta(ge=0, le=_MAX_MS)]
Code = Annotated[int, msgspec.Meta(ge=0, le=999)]


class MalformedDelivery(PixelpipeError, ValueError):
    """Bytes on the deliveries topic that are not delivery events of a version we read."""


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One event of one sent email, as its mail service reported it. Times are epoch milliseconds (UTC)."""

    delivery_id: str  # `delivery_id(account, provider, provider_event_id)`: the same for a provider's retry
    account: str
    provider: Provider
    provider_event_id: str  # the provider's id of this event (SendGrid sg_event_id, SNS MessageId, ...)
    event: DeliveryKind
    occurred_at_ms: Millis  # when the mail service says it happened
    received_at_ms: Millis  # when the edge took it in
    message_id: str = ""  # ours, when the provider carried it in its custom fields
    campaign_id: str = ""  # ours, likewise (matching by recipient needs it)
    provider_message_id: str = ""  # the provider's id of the sent message
    recipient: str = ""  # the address the event is about, as the provider gave it
    bounce_type: BounceType = ""  # hard or soft, for a bounce (`deliveries.bounces.classify`)
    smtp_status: str = ""  # the enhanced status code (RFC 3463), e.g. "5.1.1"
    smtp_code: Code = 0  # the basic reply code, e.g. 550
    diagnostic: str = ""  # the mail server's diagnostic text, kept so a classification can be checked later
    provider_type: str = ""  # the provider's own name of the event or bounce type, as given
    v: int = DELIVERY_VERSION

    @property
    def partition_key(self) -> bytes:
        """The events of one message share a key (and so a partition, in order): ours when the provider
        carried it, else the provider's message id, else the recipient."""
        about = self.message_id or self.provider_message_id or self.recipient
        return f"{self.account}\x1f{about}".encode()


def delivery_id(account: str, provider: str, provider_event_id: str) -> str:
    """The stable id of one event: 32 hex digits of SHA-256 over the account, provider and provider's id."""
    digest = hashlib.sha256(f"{account}\x1f{provider}\x1f{provider_event_id}".encode()).hexdigest()
    return digest[:32]


class _Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    v: int
    events: list[DeliveryEvent]


_decode_batch: Final = msgspec.json.Decoder(_Batch).decode


def encode_deliveries(events: Sequence[DeliveryEvent]) -> bytes:
    """One bus record: ``{"v": 1, "events": [...]}`` (events of one partition key, in the order received)."""
    return orjson.dumps({"v": DELIVERY_VERSION, "events": events})


def decode_deliveries(raw: bytes) -> list[DeliveryEvent]:
    """The events of a record, all or none: `MalformedDelivery` with the reason when it is not one (the loader
    sends such a record to the dead letters)."""
    try:
        batch = _decode_batch(raw)
    except msgspec.ValidationError as exc:
        raise MalformedDelivery(f"not delivery events: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MalformedDelivery(f"not JSON: {exc}") from exc
    if batch.v != DELIVERY_VERSION or any(e.v != DELIVERY_VERSION for e in batch.events):
        raise MalformedDelivery(f"unknown delivery record version {batch.v!r}")
    for event in batch.events:
        if not event.delivery_id or not event.account:
            raise MalformedDelivery("a delivery event without its id or account")
        if event.bounce_type and event.event != "bounce":
            raise MalformedDelivery(f"bounce_type {event.bounce_type!r} on a {event.event!r} event")
    return batch.events
