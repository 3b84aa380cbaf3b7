"""The edge's campaign pixel (issue 19, `schemas.aggregate_opens`): ``GET /o/{token}.gif`` of a
`schemas.tokens.TokenKind.AGGREGATE_OPEN` token.

The GIF is answered first, as for every pixel (`ingest.edge.Edge`); then the token is verified and an
`AggregateOpen` published, keyed by its campaign, through the publisher's encoded path (the spool and Kafka
machinery apply unchanged). It names nobody: the token holds no message and a zero recipient tag, so there is
no do-not-track to check, and the record carries the client's address and user agent only for the
processors' classification. The native fast path declines kind 4 (it answers kind 1 only), so the Python path
serves every campaign pixel, native on or off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Final

from ingest import metrics
from ingest.client_ip import Network, client_ip
from schemas.aggregate_opens import AggregateOpen, encode_aggregate
from schemas.tokens import InvalidToken, Keyring, TokenKind, verify

_MAX_UA_CHARS: Final = 1024  # as a hit's


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class AggregatePixels:
    """Verifies campaign pixels and publishes their aggregate opens (``publish``: the publisher's
    ``publish_encoded``)."""

    def __init__(
        self,
        keyring: Keyring,
        publish: Callable[[bytes | None, bytes], None],
        trusted_proxies: Sequence[Network],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.publish = publish
        self.trusted_proxies = tuple(trusted_proxies)
        self.clock = clock
        self._counted = metrics.HITS.labels("aggregate_open", "ok")

    def record(self, token: str, peer: str | None, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Publish the aggregate open of ``token`` (its GIF already answered); False when it is not a campaign
        pixel we signed (the caller records it as any pixel: an invalid hit, kept by its shape only)."""
        try:
            claim = verify(token, self.keyring, TokenKind.AGGREGATE_OPEN)
        except InvalidToken:
            return False
        received_at_ms = int(self.clock() * 1000)
        forwarded = _header(headers, b"x-forwarded-for") if self.trusted_proxies else None
        record = AggregateOpen(
            aggregate_of=f"{received_at_ms:012x}{os.urandom(8).hex()}",
            account=claim.account,
            campaign_id=claim.campaign_id,
            received_at_ms=received_at_ms,
            ip=client_ip(peer, forwarded, self.trusted_proxies),
            user_agent=(_header(headers, b"user-agent") or "")[:_MAX_UA_CHARS],
        )
        self._counted.inc()
        self.publish(record.partition_key, encode_aggregate(record))
        return True
