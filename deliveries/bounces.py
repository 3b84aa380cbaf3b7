"""Bounce classification: whether a bounce is hard (the address will not take mail: stop sending to it) or
soft (this attempt failed, the address may take the next one), and reading the SMTP codes out of a mail
server's diagnostic text. Pure; every reader (provider webhooks, SES, DSN reports) calls `classify`.

Precedence, first that decides wins:

1. **The provider's own verdict** (``provider_says``: SendGrid ``bounce``/``blocked``, Mailgun ``severity``,
   Postmark ``Type``, SES ``bounceType``, our generic ``bounce_type``). The provider decides what it does next
   (it suppresses a hard-bounced address and never sends to it again), and it saw what we do not: its retries
   over hours, the whole SMTP conversation. Calling "soft" an address the provider no longer sends to would
   make our numbers disagree with the sender's own dashboard. So a 5.2.2 "mailbox full" that Mailgun calls
   permanent is hard here too.
2. **The enhanced status code** (RFC 3463), when no provider verdict came (DSN reports, SES "Undetermined",
   the generic format without ``bounce_type``). ``4.x.x`` is transient: soft. ``5.x.x`` is permanent: hard,
   except the permanent codes that say nothing against the *address* — they are about the mailbox's state,
   the message or the sender, and the same address takes mail later or from someone else:
   ``5.2.2`` mailbox full, ``5.2.3`` message too long for the mailbox, ``5.3.4`` message too big for the
   system, ``5.4.7`` delivery time expired (the sending MTA gave up on transient failures), and ``5.7.x``
   policy and security (spam blocks, blocklisted IPs, SPF/DKIM/DMARC, rate) except ``5.7.13`` user account
   disabled (RFC 7372), which is about the address. Mailbox full as soft is what SES and Postmark do.
   The catch-all ``X.0.0`` says nothing more than the reply code, so it does not decide.
3. **A 4xx reply code**: soft (a transient reply is never evidence against the address).
4. **The diagnostic text**, when no specific enhanced status came: words servers use for a full mailbox or a
   temporary refusal (soft), or for an unknown user or domain (hard). Old Exim and Yahoo answer a full mailbox
   with a bare ``552``/``550`` and words only.
5. **A 5xx reply code**: hard.
6. Nothing to go on: soft, since a hard bounce condemns an address and needs evidence.
"""

from __future__ import annotations

import re
from typing import Final, Literal

BounceVerdict = Literal["hard", "soft"]
ProviderSays = Literal["hard", "soft", ""]

# RFC 3463: class.subject.detail, subject and detail 1-3 digits; not inside a dotted address or version.
_STATUS: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# RFC 5321 reply code: three digits at a word's start, then a space, "-" (a continued reply) or the end,
# not part of an IP address or a longer number.
_CODE: Final = re.compile(r"(?<![\w.\-])([245][0-5]\d)(?=[ \-]|$)")

# Permanent codes that are about the mailbox's state, the message or the sender rather than the address.
_SOFT_DESPITE_PERMANENT: Final = frozenset({"2.2", "2.3", "3.4", "4.7"})
_HARD_POLICY: Final = frozenset({"7.13"})  # RFC 7372: user account disabled

_SOFT_WORDS: Final = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the |its |their )?(?:storage|quota)"
    r"|insufficient (?:system )?storage|mailbox size limit|out of storage|try again later|greylist"
    r"|temporar(?:y|ily)|rate limit|too many (?:messages|connections|recipients)",
    re.IGNORECASE,
)
_HARD_WORDS: Final = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|(?:does not|doesn't|dont) exist"
    r"|recipient not found|unknown recipient|invalid (?:recipient|mailbox|address)|mailbox not found"
    r"|address rejected|account (?:has been )?disabled|(?:host|domain) not found|nxdomain|unrouteable",
    re.IGNORECASE,
)


def smtp_status_of(text: str) -> str:
    """The first enhanced status code (RFC 3463) in a diagnostic text, e.g. ``"5.1.1"``; ``""`` if none."""
    found = _STATUS.search(text)
    return ".".join(found.groups()) if found else ""


def smtp_code_of(text: str) -> int:
    """The first SMTP reply code (2xx, 4xx, 5xx) in a diagnostic text, e.g. ``550``; ``0`` if none."""
    found = _CODE.search(text)
    return int(found.group(1)) if found else 0


def _by_status(status: str) -> BounceVerdict | None:
    klass, _, rest = status.partition(".")
    if klass == "4":
        return "soft"
    if klass != "5" or rest == "0.0":
        return None  # a 2.x.x on a bounce, or the catch-all: let the rest decide
    subject = rest.partition(".")[0]
    if rest in _HARD_POLICY:
        return "hard"
    if rest in _SOFT_DESPITE_PERMANENT or subject == "7":
        return "soft"
    return "hard"


def classify(
    provider_says: ProviderSays, smtp_status: str = "", smtp_code: int = 0, diagnostic: str = ""
) -> BounceVerdict:
    """Hard or soft for one bounce (precedence in the module's docstring).

    ``provider_says``: the provider's own verdict already mapped to ``"hard"``/``"soft"``, or ``""`` when it
    gave none (or an undetermined one). ``smtp_status`` (``"5.1.1"``) and ``smtp_code`` (``550``): what the
    provider gave in fields of their own; when empty/0 they are read from ``diagnostic``.
    """
    if provider_says:
        return provider_says
    # The code out of the field too: providers pass it as given ("5.2.2 (mailbox full)", "#5.1.1").
    status = smtp_status_of(smtp_status) or smtp_status_of(diagnostic)
    verdict = _by_status(status) if status else None
    if verdict is not None:
        return verdict
    code = smtp_code or smtp_code_of(diagnostic)
    if 400 <= code < 500:
        return "soft"
    if _SOFT_WORDS.search(diagnostic):
        return "soft"
    if _HARD_WORDS.search(diagnostic) or 500 <= code < 600:
        return "hard"
    return "soft"
