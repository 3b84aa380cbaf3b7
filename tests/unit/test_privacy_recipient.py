"""The one rule for "the same recipient" (schemas.recipient) and where registration applies it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.registry import BadMessage, register
from schemas.recipient import BadRecipient, checked_recipient, normalize_recipient
from schemas.suppression import DoNotTrack
from schemas.tokens import Keyring, TokenKind, recipient_tag, verify

KEYS = Keyring(((1, b"k" * 32),))
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Victim.Person@Example.org", "victim.person@example.org"),
        ("  victim.person@EXAMPLE.ORG ", "victim.person@example.org"),
        ("\u00c9LODIE@exemple.fr", "\u00e9lodie@exemple.fr"),
        ("a/b@example.com", "a/b@example.com"),
    ],
)
def test_every_spelling_of_an_address_has_one_canonical_form(given: str, canonical: str) -> None:
    assert checked_recipient(given) == canonical
    assert normalize_recipient(given) == canonical


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "recipient is empty or only whitespace"),
        ("   ", "recipient is empty or only whitespace"),
        ("\u3000\u00a0", "recipient is empty or only whitespace"),
        ("ann\x00@example.com", "recipient contains a control character (U+0000)"),
        ("ann@example.com\r\nBcc: eve@example.com", "recipient contains a control character (U+000D)"),
        ("ann@example.com\n", "recipient contains a control character (U+000A)"),
        ("\tann@example.com", "recipient contains a control character (U+0009)"),
        ("ann\x7f@example.com", "recipient contains a control character (U+007F)"),
        ("ann\x85@example.com", "recipient contains a control character (U+0085)"),
        ("ann\u2028@example.com", "recipient contains a control character (U+2028)"),
        ("ann\ud800@example.com", "recipient contains a control character (U+D800)"),
        ("a" * 513, "recipient is longer than 512 characters"),
    ],
)
def test_what_cannot_name_a_recipient_is_refused_with_the_reason(given: str, why: str) -> None:
    with pytest.raises(BadRecipient) as refused:
        checked_recipient(given)
    assert str(refused.value) == why


def test_the_rule_keeps_the_tags_of_tokens_issued_before_it() -> None:
    """Tags were always computed over the trimmed, lower-cased address: a fixed vector of that tag."""
    tag = recipient_tag(b"k" * 32, "acme", "Ann@Example.com ")
    assert tag == recipient_tag(b"k" * 32, "acme", "ann@example.com")
    assert tag.hex() == "dc64d3fd005a1b01"


def test_registration_stores_and_tags_the_canonical_form() -> None:
    plan = register(
        keyring=KEYS, public_url="https://t.example", account="acme", campaign_id="c", message_id="m",
        recipient=" Victim.Person@Example.org", sent_at=NOW, links=[], now=NOW,
    )  # fmt: skip
    assert plan.send_row[3] == "victim.person@example.org"
    token = plan.pixel_url.removeprefix("https://t.example/o/").removesuffix(".gif")
    claim = verify(token, KEYS, TokenKind.OPEN)
    assert claim.recipient_tag == recipient_tag(b"k" * 32, "acme", "victim.person@example.org")
    dnt = DoNotTrack(KEYS)
    dnt.add("acme", "VICTIM.person@example.org")
    assert claim.recipient_tag in dnt


@pytest.mark.parametrize("recipient", ["", " ", "ann@example.com\r\n", "a\x00b@example.com"])
def test_registration_refuses_a_recipient_that_is_no_address(recipient: str) -> None:
    with pytest.raises(BadMessage):
        register(
            keyring=KEYS, public_url="https://t.example", account="acme", campaign_id="c", message_id="m",
            recipient=recipient, sent_at=NOW, links=[], now=NOW,
        )  # fmt: skip
