"""Amazon SES's delivery events as they come through SNS: the SES notification (``notificationType``: Bounce,
Complaint, Delivery) or event-publishing record (``eventType``: Send, Delivery, Bounce, Complaint, Reject,
DeliveryDelay, Rendering Failure, Open, Click, Subscription) inside a signed SNS Notification's Message,
read into `DeliveryEvent`s; and what the ingest does with the other SNS messages (confirm a subscription,
or nothing). Pure: the caller fetched the SNS certificate (`deliveries.providers.sns` says from where).

One SNS message may be about several recipients; each recipient is one event, identified by the SNS
MessageId and the recipient (SNS keeps the MessageId when it retries, so a retry is the same events again).
Our ids come from the message tags ``pixelpipe_message_id``/``pixelpipe_campaign_id`` (event publishing),
else from the original headers ``X-Pixelpipe-Message-Id``/``X-Pixelpipe-Campaign-Id`` when SES was told to
include them; the provider's id is ``mail.messageId``. Opens and clicks are skipped: pixelpipe counts its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

import orjson

from deliveries.bounces import ProviderSays, classify, smtp_code_of, smtp_status_of
from deliveries.providers import sns
from deliveries.providers.fields import CAMPAIGN_ID_FIELD, MESSAGE_ID_FIELD, Fields, delivery
from deliveries.providers.inbound import Forged, Inbound, Malformed
from schemas.delivery_events import DeliveryEvent, DeliveryKind

# SES event types that say nothing a delivery event holds: the send itself, opens and clicks (pixelpipe
# counts its own, from its pixel and links), and a template that failed to render (no mail left).
_SKIPPED: Final = frozenset({"Send", "Open", "Click", "Rendering Failure"})
_BOUNCE_TYPES: Final[dict[str, ProviderSays]] = {"Permanent": "hard", "Transient": "soft", "Undetermined": ""}
# A bounce or complaint of these sub-types is SES not sending at all, the address being on its global
# (``Suppressed``) or the account's suppression list: dropped, as Mailgun's ``suppress-*`` failures are, so a
# suppressed send counts as neither a bounce nor a complaint (nothing reached the address).
_SUPPRESSED: Final = frozenset({"Suppressed", "OnAccountSuppressionList"})
_MESSAGE_HEADER: Final = "x-pixelpipe-message-id"
_CAMPAIGN_HEADER: Final = "x-pixelpipe-campaign-id"


@dataclass(frozen=True, slots=True)
class SesRead:
    """What the ingest does with one signed SNS message: publish its events; or request ``confirm_url`` (a
    SubscriptionConfirmation, its URL checked by `sns.subscribe_url_allowed`); or nothing, ``skipped`` saying
    why (an UnsubscribeConfirmation, an event type pixelpipe does not store)."""

    events: tuple[DeliveryEvent, ...] = ()
    confirm_url: str = ""
    skipped: str = ""


def read(
    inbound: Inbound, certificate_pem: bytes, *, topic_arns: Collection[str] = (), now_ms: int | None = None
) -> SesRead:
    """Check a request SNS posted (signature with the certificate fetched from its SigningCertURL, topic among
    ``topic_arns`` when any are given) and say what to do with it. `Unsigned`, `Forged` or `Malformed`
    otherwise."""
    message = sns.envelope(inbound)
    sns.verify(message, certificate_pem, now_ms=now_ms)
    sns.check_topic(message, topic_arns)
    if message.type == "UnsubscribeConfirmation":
        return SesRead(skipped="an unsubscribe confirmation: nothing to store")
    if message.type == "SubscriptionConfirmation":
        if not sns.subscribe_url_allowed(message):
            raise Forged("the SubscribeURL is not SNS's confirmation of this topic in its own region")
        return SesRead(confirm_url=message.subscribe_url)
    try:
        notification = orjson.loads(message.message)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"the SNS Message is not JSON: {exc}") from exc
    if not isinstance(notification, dict):
        raise Malformed("the SNS Message is not an SES notification (a JSON object)")
    return events_of(Fields(notification, "Message"), inbound=inbound, envelope=message)


def events_of(record: Fields, *, inbound: Inbound, envelope: sns.SnsEnvelope) -> SesRead:
    """The delivery events of one SES notification or event-publishing record (either shape)."""
    kind = record.text("eventType") or record.text("notificationType")
    if not kind:
        raise Malformed("an SES record without notificationType or eventType")
    if kind in _SKIPPED:
        return SesRead(skipped=f"an SES {kind} event: not a delivery event")
    if kind == "AmazonSnsSubscriptionSucceeded":
        return SesRead(skipped="SES's test notification that the topic is set up")
    if kind not in _READERS:  # SES may add types: taken and skipped, or SNS would retry what never passes
        return SesRead(skipped=f"an SES event type pixelpipe does not read: {kind[:40]!r}")
    detail, reader = _READERS[kind]
    mail, about = _object(record, "mail"), _object(record, detail)
    common = _Common(
        inbound=inbound,
        sns_message_id=envelope.message_id,
        occurred_at_ms=about.iso_ms("timestamp") if about.raw("timestamp") else envelope.timestamp_ms,
        provider_message_id=mail.text("messageId"),
        ids=(
            _ours(mail, MESSAGE_ID_FIELD, _MESSAGE_HEADER),
            _ours(mail, CAMPAIGN_ID_FIELD, _CAMPAIGN_HEADER),
        ),
    )
    events = reader(common, about, mail)
    if isinstance(events, str):
        return SesRead(skipped=events)
    return SesRead(events=tuple(events))


_Events = list[DeliveryEvent] | str  # the events of a record, or why it has none


@dataclass(frozen=True, slots=True)
class _Common:
    """What every event of one SES record shares."""

    inbound: Inbound
    sns_message_id: str
    occurred_at_ms: int
    provider_message_id: str
    ids: tuple[str, str]

    def event(self, event: DeliveryKind, recipient: str, provider_type: str, **smtp: Any) -> DeliveryEvent:
        return delivery(
            self.inbound,
            "ses",
            f"{self.sns_message_id}:{recipient}",
            event,
            self.occurred_at_ms,
            ids=self.ids,
            provider_message_id=self.provider_message_id,
            recipient=recipient,
            provider_type=provider_type,
            **smtp,
        )


def _object(parent: Fields, key: str) -> Fields:
    if not isinstance(parent.raw(key), dict):
        raise Malformed(f"{parent.path(key)} is missing (an SES record carries it)")
    return parent.object(key)


def _recipients(parent: Fields, key: str) -> list[Fields]:
    """A list of recipient objects (``[{"emailAddress": ...}, ...]``), each with its address."""
    found = parent.raw(key)
    if not isinstance(found, list):
        raise Malformed(f"{parent.path(key)} is not a list of recipients")
    recipients = [Fields(one, f"{parent.path(key)}[{index}]") for index, one in enumerate(found)]
    for one in recipients:
        one.text("emailAddress", required=True)
    return recipients


def _addresses(parent: Fields, key: str) -> list[str]:
    found = parent.raw(key)
    if not isinstance(found, list) or not all(isinstance(a, str) and a for a in found):
        raise Malformed(f"{parent.path(key)} is not a list of addresses")
    return found


def _ours(mail: Fields, tag: str, header: str) -> str:
    """One of our ids: a message tag (``{"tag": ["value"]}``), else an original header SES included."""
    tags = mail.raw("tags")
    if isinstance(tags, dict):
        values = tags.get(tag)
        if isinstance(values, list) and values and isinstance(values[0], str):
            return values[0]
    headers = mail.raw("headers")
    if isinstance(headers, list):
        for one in headers:
            if isinstance(one, dict) and str(one.get("name", "")).lower() == header:
                return str(one.get("value", "")).strip()
    return ""


def _smtp(status: str, diagnostic: str) -> dict[str, Any]:
    return {
        "smtp_status": status or smtp_status_of(diagnostic),
        "smtp_code": smtp_code_of(diagnostic),
        "diagnostic": diagnostic,
    }


def _delivery(common: _Common, delivered: Fields, mail: Fields) -> _Events:
    smtp = _smtp("", delivered.text("smtpResponse"))
    return [common.event("delivered", r, "Delivery", **smtp) for r in _addresses(delivered, "recipients")]


def _bounce(common: _Common, bounce: Fields, mail: Fields) -> _Events:
    bounce_type, sub_type = bounce.text("bounceType"), bounce.text("bounceSubType")
    says = _BOUNCE_TYPES.get(bounce_type, "")
    kind: DeliveryKind = "dropped" if sub_type in _SUPPRESSED else "bounce"
    events = []
    for one in _recipients(bounce, "bouncedRecipients"):
        smtp = _smtp(one.text("status"), one.text("diagnosticCode"))
        verdict = classify(says, smtp["smtp_status"], smtp["smtp_code"], smtp["diagnostic"])
        provider_type = f"Bounce/{bounce_type}/{sub_type}"
        events.append(
            common.event(kind, one.text("emailAddress"), provider_type, bounce_type=verdict, **smtp)
        )
    return events


def _complaint(common: _Common, complaint: Fields, mail: Fields) -> _Events:
    feedback = complaint.text("complaintFeedbackType")
    if feedback == "not-spam":
        return "a not-spam complaint: the recipient says the mail is wanted (RFC 5965)"
    sub_type = complaint.text("complaintSubType")
    kind: DeliveryKind = "dropped" if sub_type in _SUPPRESSED else "complaint"
    provider_type = "/".join(p for p in ("Complaint", feedback, sub_type) if p)
    complained = _recipients(complaint, "complainedRecipients")
    return [common.event(kind, one.text("emailAddress"), provider_type) for one in complained]


def _delay(common: _Common, delay: Fields, mail: Fields) -> _Events:
    delay_type = delay.text("delayType")
    provider_type = f"DeliveryDelay/{delay_type}" if delay_type else "DeliveryDelay"
    return [
        common.event(
            "deferred",
            one.text("emailAddress"),
            provider_type,
            **_smtp(one.text("status"), one.text("diagnosticCode")),
        )
        for one in _recipients(delay, "delayedRecipients")
    ]


def _reject(common: _Common, reject: Fields, mail: Fields) -> _Events:
    # SES refused the whole message (a virus): every recipient of it is dropped.
    reason = reject.text("reason")
    return [common.event("dropped", r, "Reject", diagnostic=reason) for r in _addresses(mail, "destination")]


def _subscription(common: _Common, change: Fields, mail: Fields) -> _Events:
    # A recipient changed their preferences through SES's subscription management: stored when it opts out
    # (of everything, or of a topic); a change that only opts in says nothing against sending.
    preferences = change.raw("newTopicPreferences")
    if isinstance(preferences, dict) and not _opts_out(preferences):
        return "a subscription change that opts out of nothing"
    return [common.event("unsubscribe", r, "Subscription") for r in _addresses(mail, "destination")]


def _opts_out(preferences: dict[str, Any]) -> bool:
    if preferences.get("unsubscribeAll") is True:
        return True
    topics = preferences.get("topicSubscriptionStatus")
    return isinstance(topics, list) and any(
        isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut" for t in topics
    )


# Each type's reader and the object that holds its details (and its timestamp), by SES's own names.
_READERS: Final[dict[str, tuple[str, Callable[[_Common, Fields, Fields], _Events]]]] = {
    "Delivery": ("delivery", _delivery),
    "Bounce": ("bounce", _bounce),
    "Complaint": ("complaint", _complaint),
    "DeliveryDelay": ("deliveryDelay", _delay),
    "Reject": ("reject", _reject),
    "Subscription": ("subscription", _subscription),
}
