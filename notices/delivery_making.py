"""Making delivery notices: one per stored delivery event that a sender hears about (`delivery_notices_of`,
pure) — ``delivered``, ``bounce`` and ``complaint`` of a message matched to its send.

The delivery loader stores the events and hands them on (`notices.hub.NoticeHub.publish_deliveries`); an
event arrives complete: matching filled its ``message_id``, ``campaign_id`` and ``recipient`` from the send.
What it does not carry is the recipient's keyed tag, which every notice needs so that an erasure or a
do-not-track finds it (`notices.erasure`): it is the tag a token of that recipient carries, under the
keyring's signing key (erasure and do-not-track hold the tags under every key).

Deferred, dropped and unsubscribe events, and events matched to no send, make no notice. Must never do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from schemas.delivery_events import DeliveryEvent
from schemas.notices import DELIVERY_NOTICE_TYPES, NOTICE_VERSION, Notice
from schemas.tokens import Keyring, recipient_tag
from schemas.wire import fast_constructor

_notice: Final = fast_constructor(Notice)


def delivery_notices_of(
    events: Sequence[DeliveryEvent], created_at_ms: int, keyring: Keyring | None = None
) -> list[Notice]:
    """The notices of stored delivery events, in stored order. ``keyring``: whose signing key tags the
    recipient (without one, or without a recipient, the notice carries no tag). Pure."""
    secret = keyring.signing_key[1] if keyring is not None else None
    tags: dict[tuple[str, str], str] = {}  # a batch often holds several events of one recipient
    notices = []
    for event in events:
        if not event.message_id or event.event not in DELIVERY_NOTICE_TYPES:
            continue
        tag = ""
        if secret is not None and event.recipient:
            key = (event.account, event.recipient)
            tag = tags.get(key) or tags.setdefault(key, recipient_tag(secret, *key).hex())
        notices.append(
            _notice(
                id=event.delivery_id,
                type=event.event,
                account=event.account,
                campaign_id=event.campaign_id,
                message_id=event.message_id,
                at_ms=event.occurred_at_ms,
                created_at_ms=created_at_ms,
                verdict="",  # a mail service's report is not a judged hit
                reason="",
                via_proxy=False,
                first=False,
                recipient=event.recipient,
                sent_at_ms=0,
                link_index=-1,
                url="",
                client="",
                device="",
                os="",
                country="",
                recipient_tag=tag,
                provider=event.provider,
                provider_message_id=event.provider_message_id,
                provider_type=event.provider_type,
                bounce_type=event.bounce_type,
                smtp_status=event.smtp_status,
                smtp_code=event.smtp_code,
                diagnostic=event.diagnostic,
                read_of="",
                opened_at_ms=0,
                read_ms=0,
                read_end="",
                read_category="",
                v=NOTICE_VERSION,
            )
        )
    return notices
