"""What "the same recipient" is: the one rule every part of pixelpipe applies to a recipient's address.

A recipient is known by ``normalize_recipient(address)``: the address without surrounding whitespace, in
lower case (`str.strip`, `str.lower`). Registration stores that form in ``sends`` and computes the token's
recipient tag from it (`schemas.tokens.recipient_tag`); suppression, erasure, do-not-track and the lookups by
recipient apply it to what they are given, so ``Victim.Person@Example.org`` and ``victim.person@example.org ``
are one recipient everywhere. Lower-casing the local part is what mail services do for their suppression
lists (SendGrid, Postmark): two addresses that differ only in case reach the same mailbox in practice. The
rule is the one recipient tags were always computed with, so tokens issued before it keep their tag.

`checked_recipient` also refuses what cannot be an address: empty, only whitespace, or holding a control
character (NUL, CR, LF, TAB, DEL, C1 controls), a line or paragraph separator or a lone surrogate (which
could split a header or a log line, or not be encodable at all).

Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from schemas.errors import PixelpipeError

MAX_RECIPIENT_CHARS: Final = 512
# Cc: C0 and C1 controls and DEL; Cs: surrogates (not encodable); Zl, Zp: line and paragraph separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})


class BadRecipient(PixelpipeError, ValueError):
    """Not something that can name a recipient; the message says why (answered as 400)."""


def normalize_recipient(recipient: str) -> str:
    """The recipient's canonical form: what is stored, tagged and looked up."""
    return recipient.strip().lower()


def checked_recipient(recipient: str) -> str:
    """The canonical form of an address a client gave, or `BadRecipient`."""
    for char in recipient:
        if not char.isprintable() and unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise BadRecipient(f"recipient contains a control character (U+{ord(char):04X})")
    canonical = normalize_recipient(recipient)
    if not canonical:
        raise BadRecipient("recipient is empty or only whitespace")
    if len(canonical) > MAX_RECIPIENT_CHARS:
        raise BadRecipient(f"recipient is longer than {MAX_RECIPIENT_CHARS} characters")
    return canonical
