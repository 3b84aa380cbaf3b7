"""The request bodies that register messages (`POST /v1/messages`, `/v1/messages/batch`, `/v1/instrument`),
with each field's rule as the OpenAPI document states it. Unknown fields are refused (400); the rules JSON
Schema cannot state are `api.registry`'s, listed in `RegistrationRules`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from api.account_settings import MAX_BASE_URL_CHARS
from api.context import Recipient
from api.errors import PATTERN_WORDS
from api.link_controls import MAX_LIST_UNSUBSCRIBE_CHARS, MAX_LIST_UNSUBSCRIBE_URLS
from api.openapi import bad_request
from api.registry import MAX_LINKS, MAX_PROVIDER_MESSAGE_ID, MAX_URL_CHARS

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


# The host is a name (or IPv4 address) or a bracketed IPv6 literal, with an optional port.
LINK_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9][^\s/?#@\\\[\]]*|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?)(?:[/?#]\S*)?$"
)
PATTERN_WORDS[LINK_PATTERN] = "an absolute http(s) URL with a host and no user name or password"
# What `api.registry.check_link` accepts, as the schema says it: an absolute http(s) URL with a host and no
# user name or password, at most 2048 characters.
Link = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_URL_CHARS,
        pattern=LINK_PATTERN,
        description="An absolute http(s) URL with a host, without a user name or password (`user:pass@`).",
    ),
]
SentAt = Annotated[
    datetime,
    msgspec.Meta(
        extra_json_schema={"format": "date-time"},
        description="When the email was sent (default: now). Refused (400) if older than the retention "
        "(`PIXELPIPE_RETENTION_DAYS`, 396 days by default) or more than 15 minutes in the future.",
    ),
]


# A mail service's id of the sent message (SendGrid's X-Message-Id, an SES MessageId, a Postmark MessageID,
# Mailgun's Message-Id): printable ASCII without spaces, as every provider's ids are.
PROVIDER_MESSAGE_ID_PATTERN = r"^[\x21-\x7e]+$"
PATTERN_WORDS[PROVIDER_MESSAGE_ID_PATTERN] = "printable ASCII without spaces or control characters"
ProviderMessageId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_PROVIDER_MESSAGE_ID,
        pattern=PROVIDER_MESSAGE_ID_PATTERN,
        description="The mail service's id of this sent message (what its send API answered: SendGrid's "
        "`X-Message-Id`, SES's `MessageId`, Postmark's `MessageID`, Mailgun's `id`), so that its delivery "
        "events find the message when they carry no `pixelpipe_message_id`. Printable ASCII without spaces, "
        f"at most {MAX_PROVIDER_MESSAGE_ID} characters; a Message-ID's angle brackets are dropped.",
    ),
]


# Link controls (issue 19, `api.link_controls`): the List-Unsubscribe URLs, never tracked, and UTM parameters.
LIST_UNSUBSCRIBE_URL_PATTERN = r"^(?:[Mm][Aa][Ii][Ll][Tt][Oo]:|[Hh][Tt][Tt][Pp][Ss]?://)[^\s<>]+$"
PATTERN_WORDS[LIST_UNSUBSCRIBE_URL_PATTERN] = "an http(s) URL or a mailto: address, without spaces or <>"
ListUnsubscribeUrl = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_URL_CHARS, pattern=LIST_UNSUBSCRIBE_URL_PATTERN)
]
ListUnsubscribe = Annotated[
    Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LIST_UNSUBSCRIBE_CHARS)]
    | Annotated[list[ListUnsubscribeUrl], msgspec.Meta(max_length=MAX_LIST_UNSUBSCRIBE_URLS)],
    msgspec.Meta(
        description="The message's List-Unsubscribe URLs, never tracked: the header's value "
        '(`"<https://example.com/unsub?u=1>, <mailto:unsub@example.com>"`, at most '
        f"{MAX_LIST_UNSUBSCRIBE_CHARS} characters) or a list of URLs, each an http(s) URL with a host or "
        f"a `mailto:` address, at most {MAX_LIST_UNSUBSCRIBE_URLS}. A link equal to one of them (scheme and "
        'host in any case) is left as it is, listed in `untracked_links` as `"list_unsubscribe"`.'
    ),
]
MAX_UTM_CHARS = 256
UtmValue = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_UTM_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class UtmIn(msgspec.Struct, forbid_unknown_fields=True):
    """UTM parameters appended to each tracked link's destination (signed into its click token): `source`,
    `medium`, `campaign` (default: the message's `campaign_id`), `term`, `content`, as `utm_source`, ... in
    that order, percent-encoded. A `utm_*` parameter the link already has is never overridden; the query
    and fragment are kept as they are (the fragment stays last). Untracked links are left as they are."""

    source: UtmValue | None = None
    medium: UtmValue | None = None
    campaign: UtmValue | None = None
    term: UtmValue | None = None
    content: UtmValue | None = None


# The base of this message's pixel, click and preferences URLs (issue 19: a branded domain), instead of the
# account's (`/v1/account/settings`) or the public URL: `api.account_settings.check_base_url`'s rule.
TrackingBaseUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_BASE_URL_CHARS,
        description="The base of this message's pixel, click and preferences URLs (a branded domain, a "
        "CNAME to the edge), instead of the account's `tracking_base_url` or `PIXELPIPE_PUBLIC_URL`: an "
        "absolute http(s) URL with a host, optionally a path, no user name or password, query or fragment.",
    ),
]
ReadTime = Annotated[
    bool,
    msgspec.Meta(
        description="Measure how long the open stays on screen (read time): the pixel's answer is held open "
        "as a slowly sent animated GIF and the time until the mail client closes it is recorded for the open "
        "(read / skimmed / glanced / unknown in the campaign's `read_time`, `read_seconds` in the message's "
        "timeline). Per message; default false (the pixel is answered at once, as without it).",
    ),
]


RegistrationRules = bad_request(
    "a recipient that is blank or holds a control character or line break; "
    "`sent_at` older than the retention (PIXELPIPE_RETENTION_DAYS) or more than 15 minutes in the future; "
    "a link that is not an absolute http(s) URL with a host, or that carries a user name or password; "
    "an unknown field; a batch of no message or more than 1000; more than 1000 links; "
    "a `provider_message_id` that is empty, longer than 256 characters or holds a space or control "
    "character; a `tracking_base_url` that is not an absolute http(s) URL with a host, or carries a user "
    "name or password, a query or a fragment; a `list_unsubscribe` that is not a List-Unsubscribe header "
    "value (`<URL>, <URL>`) or a list of at most 10 http(s) or mailto: URLs; a tracked link that, with its "
    "UTM parameters, no longer fits in a click token; "
    "a `read_time` that is not a boolean"
)


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown fields are refused (400)."""

    campaign_id: Id
    recipient: Recipient
    message_id: Id | None = None
    sent_at: SentAt | None = None
    links: Annotated[list[Link], msgspec.Meta(max_length=MAX_LINKS)] = msgspec.field(default_factory=list)
    provider_message_id: ProviderMessageId | None = None
    tracking_base_url: TrackingBaseUrl | None = None
    track_opens: Annotated[
        bool, msgspec.Meta(description="Add an open pixel (default true); false: `pixel_url` is null.")
    ] = True
    track_clicks: Annotated[
        bool,
        msgspec.Meta(
            description="Track the links (default true); false: no link is rewritten, each listed in "
            '`untracked_links` as `"clicks_off"`.'
        ),
    ] = True
    list_unsubscribe: ListUnsubscribe | None = None
    utm: UtmIn | None = None
    read_time: ReadTime = False


MAX_BATCH = 1000  # messages per POST /v1/messages/batch


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    messages: Annotated[list[MessageIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class InstrumentIn(MessageIn, forbid_unknown_fields=True):
    html: str = ""
