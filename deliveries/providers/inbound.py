"""What every provider's reader takes and how it refuses. Pure.

A reader is ``read(inbound, credentials) -> list[DeliveryEvent]``: it checks the request is signed by the
account's mail service (else `Unsigned`, 401, when no signature came, or `Forged`, 403, when it does not
verify) and reads its events (else `Malformed`, 400, with the reason). A request is read whole or refused
whole: nothing of a refused request is published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from schemas.errors import PixelpipeError


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request to a provider's ingest URL, as the edge received it."""

    account: str
    body: bytes
    headers: Mapping[str, str]  # names lower-cased; a repeated header's values joined by ", "
    received_at_ms: int
    content_type: str = ""


class Refused(PixelpipeError, ValueError):
    """A request the ingest refuses, with the HTTP status to answer and a reason safe to show the sender."""

    status: ClassVar[int] = 400


class Unsigned(Refused):
    """No signature (or credentials) where the provider always sends one."""

    status = 401


class Forged(Refused):
    """A signature (or credentials) that does not verify with the account's keys."""

    status = 403


class Malformed(Refused):
    """Signed, but not the provider's format: the reason says what is wrong."""

    status = 400
