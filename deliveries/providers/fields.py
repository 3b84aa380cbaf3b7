"""Reading a provider's JSON into a `DeliveryEvent`, field by field, refusing with the path of what is wrong
(``events[3].sg_event_id is missing``). Pure; what the provider readers share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

from deliveries.bounces import smtp_status_of
from deliveries.providers.inbound import Inbound, Malformed
from schemas.delivery_events import (
    BounceType,
    DeliveryEvent,
    DeliveryKind,
    Provider,
    delivery_id,
)

# The DDL's DateTime64(3) ends in 2299 (`schemas.delivery_events`): a later time is not a real event's.
_LAST_MS: Final = 10_413_791_999_000
# Our ids, in the provider's custom fields (SendGrid custom args, Mailgun user variables, Postmark Metadata).
MESSAGE_ID_FIELD: Final = "pixelpipe_message_id"
CAMPAIGN_ID_FIELD: Final = "pixelpipe_campaign_id"


def json_body(body: bytes) -> Any:
    """The body as JSON, or `Malformed` saying where it stops being JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"the body is not JSON: {exc}") from None


class Fields:
    """One JSON object of a body and its path in it, read a field at a time."""

    __slots__ = ("_raw", "where")

    def __init__(self, value: object, where: str = "") -> None:
        if not isinstance(value, dict):
            raise Malformed(f"{where or 'the body'} is not an object")
        self._raw: Mapping[str, Any] = value
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str) -> Any:
        """A field as the JSON gave it (``None`` when absent)."""
        return self._raw.get(key)

    def text(self, key: str, *, required: bool = False) -> str:
        """A string field (an integer is taken as its digits: ids and codes come either way); ``""`` when
        absent, or `Malformed` when ``required``."""
        value = self._raw.get(key)
        if value is None or value == "":
            if required:
                raise Malformed(f"{self.path(key)} is missing")
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise Malformed(f"{self.path(key)} is not a string")

    def object(self, key: str) -> Fields:
        """A nested object; an empty one when absent."""
        value = self._raw.get(key)
        return Fields({} if value is None else value, self.path(key))

    def flag(self, key: str) -> bool:
        value = self._raw.get(key, False)
        if not isinstance(value, bool):
            raise Malformed(f"{self.path(key)} is not true or false")
        return value

    def code(self, key: str) -> int:
        """An SMTP reply code (a number or its digits), 0 when absent."""
        value = self._raw.get(key)
        if value is None or value == "":
            return 0
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)  # isdigit alone takes "²" and "٣", which int() refuses
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 999:
            raise Malformed(f"{self.path(key)} is not an SMTP reply code")
        return value

    def epoch_ms(self, key: str) -> int:
        """A required time in epoch seconds (an integer or a fraction) as epoch milliseconds."""
        value = self._raw.get(key)
        if value is None:
            raise Malformed(f"{self.path(key)} is missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Malformed(f"{self.path(key)} is not a time in epoch seconds")
        if not 0 <= value <= _LAST_MS / 1000:  # before multiplying: 1e308 * 1000 is inf, round() refuses it
            raise Malformed(f"{self.path(key)} is out of range")
        return self._in_range(key, round(value * 1000))

    def iso_ms(self, key: str) -> int:
        """A required ISO-8601 time with its zone (``Z`` or an offset) as epoch milliseconds."""
        value = self.text(key, required=True)
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise Malformed(f"{self.path(key)} is not an ISO-8601 time") from None
        if at.tzinfo is None:
            raise Malformed(f"{self.path(key)} has no time zone (add Z or an offset)")
        return self._in_range(key, round(at.timestamp() * 1000))

    def time_ms(self, key: str) -> int:
        """A required time given either way: epoch seconds or ISO-8601."""
        return self.iso_ms(key) if isinstance(self._raw.get(key), str) else self.epoch_ms(key)

    def _in_range(self, key: str, ms: int) -> int:
        if not 0 <= ms <= _LAST_MS:
            raise Malformed(f"{self.path(key)} is out of range")
        return ms


def ours(custom: Fields) -> tuple[str, str]:
    """Our message and campaign ids from the provider's custom fields (either may be absent)."""
    return custom.text(MESSAGE_ID_FIELD), custom.text(CAMPAIGN_ID_FIELD)


def delivery(
    inbound: Inbound,
    provider: Provider,
    provider_event_id: str,
    event: DeliveryKind,
    occurred_at_ms: int,
    *,
    ids: tuple[str, str] = ("", ""),
    provider_message_id: str = "",
    recipient: str = "",
    bounce_type: BounceType = "",
    smtp_status: str = "",
    smtp_code: int = 0,
    diagnostic: str = "",
    provider_type: str = "",
) -> DeliveryEvent:
    """The event with its stable id (`delivery_id`) and the time the edge took it in; ``smtp_status`` is kept
    as the RFC 3463 code it holds (``""`` when it holds none)."""
    return DeliveryEvent(
        delivery_id=delivery_id(inbound.account, provider, provider_event_id),
        account=inbound.account,
        provider=provider,
        provider_event_id=provider_event_id,
        event=event,
        occurred_at_ms=occurred_at_ms,
        received_at_ms=inbound.received_at_ms,
        message_id=ids[0],
        campaign_id=ids[1],
        provider_message_id=provider_message_id,
        recipient=recipient,
        bounce_type=bounce_type if event == "bounce" else "",
        smtp_status=smtp_status_of(smtp_status),  # the code alone, as providers give more ("5.2.2 (full)")
        smtp_code=smtp_code,
        diagnostic=diagnostic,
        provider_type=provider_type,
    )
