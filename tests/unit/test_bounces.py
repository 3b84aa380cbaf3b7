"""Bounce classification over diagnostics in the styles real mail servers answer with (Gmail, Outlook and
Office 365, Yahoo, Postfix, Exim), and the precedence of the provider's verdict over the codes."""

from __future__ import annotations

import pytest

from deliveries.bounces import classify, smtp_code_of, smtp_status_of

# (diagnostic, enhanced status read, reply code read, verdict with no provider verdict)
DIAGNOSTICS = [
    # Gmail
    (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking "
        "the recipient's email address for typos. 41be03b00d2f7-b4c1 - gsmtp",
        "5.1.1",
        550,
        "hard",
    ),
    ("552-5.2.2 The recipient's inbox is out of storage space. - gsmtp", "5.2.2", 552, "soft"),
    ("452-4.2.2 The email account that you tried to reach is over quota. - gsmtp", "4.2.2", 452, "soft"),
    (
        "550-5.7.1 Our system has detected that this message is likely unsolicited mail. - gsmtp",
        "5.7.1",
        550,
        "soft",
    ),
    ("421-4.7.0 Try again later, closing connection. (EHLO) - gsmtp", "4.7.0", 421, "soft"),
    ("550-5.2.1 The email account that you tried to reach is disabled. - gsmtp", "5.2.1", 550, "hard"),
    (
        "550-5.7.26 Unauthenticated email from example.com is not accepted due to DMARC policy. - gsmtp",
        "5.7.26",
        550,
        "soft",
    ),
    # Outlook.com and Office 365
    (
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [BN1NAM02FT012]",
        "5.5.0",
        550,
        "hard",
    ),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; x@contoso.com not found by SMTP address lookup",
        "5.1.10",
        550,
        "hard",
    ),
    (
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM12FT055.eop-nam12.prod]",
        "5.4.1",
        550,
        "hard",
    ),
    (
        "#550 5.2.2 RESOLVER.RST.RecipSizeLimit; mailbox full ##",
        "5.2.2",
        550,
        "soft",
    ),
    (
        "550 5.7.606 Access denied, banned sending IP [203.0.113.9]. To request removal from this list ...",
        "5.7.606",
        550,
        "soft",
    ),
    ("451 4.7.500 Server busy. Please try again later from [198.51.100.7]. (S77719)", "4.7.500", 451, "soft"),
    # Yahoo: no enhanced status
    (
        "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - "
        "mta1234.mail.gq1.yahoo.com",
        "",
        554,
        "hard",
    ),
    ("552 1 Requested mail action aborted, mailbox full", "", 552, "soft"),
    ("421 4.7.0 [TSS04] Messages from 192.0.2.15 temporarily deferred", "4.7.0", 421, "soft"),
    # Postfix (the sending MTA's DSN text and the remote's answer)
    (
        "host mx.example.org[192.0.2.25] said: 550 5.1.1 <x@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table (in reply to RCPT TO command)",
        "5.1.1",
        550,
        "hard",
    ),
    (
        "host mx.example.org[192.0.2.25] said: 450 4.7.1 <x@example.org>: Recipient address rejected: "
        "Greylisted, see http://postgrey.schweikert.ch/help/example.org.html (in reply to RCPT TO command)",
        "4.7.1",
        450,
        "soft",
    ),
    (
        "Host or domain name not found. Name service error for name=example.invalid type=A: Host not found",
        "",
        0,
        "hard",
    ),
    ("smtp; 5.4.4 Host or domain name not found", "5.4.4", 0, "hard"),
    ("smtp; 4.4.3 Host or domain name not found. Name service error: try again", "4.4.3", 0, "soft"),
    (
        "host mx.example.org[192.0.2.25] said: 554 5.7.1 Service unavailable; Client host [198.51.100.3] "
        "blocked using zen.spamhaus.org (in reply to RCPT TO command)",
        "5.7.1",
        554,
        "soft",
    ),
    ("smtp; 552 5.3.4 Message size exceeds fixed limit", "5.3.4", 552, "soft"),
    ("smtp; 550 5.0.0 Mailbox quota exceeded", "5.0.0", 550, "soft"),
    ("smtp; 550 5.0.0 <x@example.org>... User unknown", "5.0.0", 550, "hard"),
    ("smtp; 550 5.7.13 User account disabled", "5.7.13", 550, "hard"),
    ("smtp; 5.4.7 Delivery time expired", "5.4.7", 0, "soft"),
    # Exim: often a bare reply code and words
    ("SMTP error from remote mail server after RCPT TO:<x@b.net>: 550 Unrouteable address", "", 550, "hard"),
    ("SMTP error from remote mail server after end of data: 552 Mailbox quota exceeded", "", 552, "soft"),
    (
        "SMTP error from remote mail server after RCPT TO:<x@example.net>: 451 Temporary local problem",
        "",
        451,
        "soft",
    ),
    ("retry timeout exceeded", "", 0, "soft"),
    ("", "", 0, "soft"),
]


@pytest.mark.parametrize(("diagnostic", "status", "code", "verdict"), DIAGNOSTICS)
def test_codes_read_and_verdict_of_a_real_world_diagnostic(
    diagnostic: str, status: str, code: int, verdict: str
) -> None:
    assert smtp_status_of(diagnostic) == status
    assert smtp_code_of(diagnostic) == code
    assert classify("", diagnostic=diagnostic) == verdict


@pytest.mark.parametrize(
    "text",
    [
        "delivered to 10.4.5.6 after 2 attempts",  # an IP address holds no status code
        "version 2.5.10.1",
        "relay 192.168.1.1",
    ],
)
def test_no_code_is_read_out_of_addresses_or_versions(text: str) -> None:
    assert smtp_status_of(text) == ""
    assert smtp_code_of(text) == 0


def test_the_providers_verdict_wins_over_the_codes() -> None:
    mailbox_full = "552 5.2.2 Mailbox full"
    assert classify("", diagnostic=mailbox_full) == "soft"
    assert classify("hard", diagnostic=mailbox_full) == "hard"  # e.g. Mailgun's "permanent"
    assert classify("soft", smtp_status="5.1.1", smtp_code=550) == "soft"


def test_fields_given_apart_win_over_the_text() -> None:
    assert classify("", smtp_status="4.2.2", diagnostic="550 5.1.1 User unknown") == "soft"
    assert classify("", smtp_code=450, diagnostic="User unknown") == "soft"
    assert classify("", smtp_code=550, diagnostic="") == "hard"
    assert classify("", smtp_status=" 5.1.1 ") == "hard"


def test_a_status_field_with_more_than_the_code_is_read_for_its_code() -> None:
    assert classify("", smtp_status="5.2.2 (mailbox full)") == "soft"
    assert classify("", smtp_status="#5.7.1 blocked", smtp_code=550) == "soft"
    assert classify("", smtp_status="5.1.1 (bad destination mailbox address)") == "hard"
    assert classify("", smtp_status="n/a", diagnostic="452 4.2.2 Over quota") == "soft"


def test_a_success_status_on_a_bounce_lets_the_reply_code_decide() -> None:
    assert classify("", smtp_status="2.0.0", smtp_code=550) == "hard"
    assert classify("", smtp_status="2.0.0") == "soft"
