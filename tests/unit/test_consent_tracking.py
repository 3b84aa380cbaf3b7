"""The pure parts of consent (issue 19): how a send is tracked and why, the tracking base URL's rule, the
account settings' copy and its bound, the aggregate pixel's token, and rates over individually tracked
sends."""

from __future__ import annotations

from typing import Any

import pytest

from api.account_settings import (
    AccountSettings,
    AccountSettingsCache,
    BadSetting,
    check_base_url,
    settings_of,
)
from api.sql import campaigns, deliveries
from api.sql.common import Query
from api.tracking import aggregate_pixel_url, decide
from schemas.consent import ConsentMode, ConsentState, Tracking, consent_blocks, effective_mode
from schemas.tokens import Keyring, TokenKind, verify

KEYRING = Keyring(((1, b"k" * 32),))
OFF, OPT_OUT, OPT_IN = ConsentMode.OFF, ConsentMode.OPT_OUT, ConsentMode.OPT_IN
GRANTED, REFUSED, UNKNOWN = ConsentState.GRANTED, ConsentState.REFUSED, ConsentState.UNKNOWN


@pytest.mark.parametrize(
    ("mode", "state", "dnt", "aggregate", "expected"),
    [
        (OFF, UNKNOWN, False, True, ("individual", None)),
        (OFF, REFUSED, False, True, ("individual", None)),
        (OFF, GRANTED, True, True, ("none", "do_not_track")),
        (OPT_OUT, UNKNOWN, False, True, ("individual", None)),
        (OPT_OUT, REFUSED, False, True, ("aggregate", "consent_refused")),
        (OPT_OUT, REFUSED, False, False, ("none", "consent_refused")),
        (OPT_OUT, REFUSED, True, True, ("none", "do_not_track")),
        (OPT_IN, UNKNOWN, False, True, ("aggregate", "consent_not_granted")),
        (OPT_IN, UNKNOWN, False, False, ("none", "consent_not_granted")),
        (OPT_IN, REFUSED, False, True, ("aggregate", "consent_refused")),
        (OPT_IN, GRANTED, False, False, ("individual", None)),
        (OPT_IN, GRANTED, True, True, ("none", "do_not_track")),
    ],
)
def test_decide(
    mode: ConsentMode, state: ConsentState, dnt: bool, aggregate: bool, expected: tuple[str, str | None]
) -> None:
    decision = decide(mode, state, do_not_track=dnt, aggregate_wanted=aggregate)
    assert (decision.tracking.value, decision.reason) == expected
    assert decision.individual is (decision.tracking is Tracking.INDIVIDUAL)


def test_a_refusal_blocks_the_edge_and_is_honoured_in_every_mode() -> None:
    blocked = {(m, s) for m in ConsentMode for s in ConsentState if consent_blocks(m, s)}
    assert blocked == {(OFF, REFUSED), (OPT_OUT, REFUSED), (OPT_IN, REFUSED)}
    assert effective_mode(OFF, REFUSED) is OPT_OUT
    assert [effective_mode(OFF, s) for s in (GRANTED, UNKNOWN)] == [OFF, OFF]
    assert [effective_mode(m, REFUSED) for m in (OPT_OUT, OPT_IN)] == [OPT_OUT, OPT_IN]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://t.brand.example", "https://t.brand.example"),
        ("HTTPS://T.Brand.Example/", "https://t.brand.example"),
        ("http://t.brand.example:8080/px/", "http://t.brand.example:8080/px"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_base_urls_accepted(given: str, stored: str) -> None:
    assert check_base_url(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "ftp://t.example",
        "t.example",
        "https://",
        "https://u:p@t.example",
        "https://t.example/?q",
        "https://t.example/#x",
        "https://t.example:0x10",
        "https://t.example/a b",
        "https://" + "a" * 520 + ".example",
    ],
)
def test_base_urls_refused(given: str) -> None:
    with pytest.raises(BadSetting, match=r"^tracking_base_url: "):
        check_base_url(given)


def test_settings_are_read_at_most_once_per_ttl_and_forgotten_on_change() -> None:
    now = [100.0]
    reads: list[Query] = []
    rows: list[tuple[Any, ...]] = [("opt_in", "https://t.example", False)]

    def run(q: Query) -> list[tuple[Any, ...]]:
        reads.append(q)
        return rows

    cache = AccountSettingsCache(ttl_s=1.0, clock=lambda: now[0])
    expected = AccountSettings(OPT_IN, "https://t.example", aggregate_opens=False)
    assert cache.get(run, "db", "acme") == expected
    now[0] += 0.9
    assert cache.get(run, "db", "acme") == expected
    assert len(reads) == 1
    rows[:] = [("opt_out", "", True)]
    now[0] += 0.2  # past the bound: read again
    assert cache.get(run, "db", "acme") == AccountSettings(OPT_OUT, None, aggregate_opens=True)
    rows[:] = []
    cache.forget("db", "acme")
    assert cache.get(run, "db", "acme") == AccountSettings()  # never set: the defaults
    assert len(reads) == 3
    assert settings_of(("bogus", "", True)).consent_mode is OFF


def test_the_aggregate_pixel_names_nobody() -> None:
    url = aggregate_pixel_url(KEYRING, "https://t.example", "acme", "spring", 1_796_120_430)
    later = aggregate_pixel_url(KEYRING, "https://t.example", "acme", "spring", 1_796_122_799)
    assert url == later  # every send of the campaign within the hour: one URL
    token = url.removeprefix("https://t.example/o/").removesuffix(".gif")
    claim = verify(token, KEYRING, expect=TokenKind.AGGREGATE_OPEN)
    assert (claim.account, claim.campaign_id, claim.message_id, claim.recipient_tag, claim.sent_at) == (
        "acme", "spring", "", bytes(8), 1_796_119_200,
    )  # fmt: skip


def test_rates_are_over_individually_tracked_sends() -> None:
    hits = [("open", "human", "", 3), ("click", "human", "", 1)]
    every = [("sent", "", 4), ("sent", "individual", 4), ("open", "human", 2), ("click", "human", 1)]
    summary = campaigns.shape_summary("c", hits, every)
    assert "tracked_sends" not in summary  # every send tracked: answered as before
    assert (summary["open_rate"], summary["click_rate"]) == (0.5, 0.25)
    some = [("sent", "", 4), ("sent", "individual", 2), ("open", "human", 2), ("click", "human", 1)]
    summary = campaigns.shape_summary("c", hits, some, unregistered=1)
    assert (summary["sent"], summary["tracked_sends"], summary["rate_basis"]) == (5, 3, "tracked_sends")
    assert (summary["open_rate"], summary["click_rate"]) == (0.6667, 0.3333)
    # with delivery data: over the messages delivered and tracked individually
    row = [4, 1, 0, 0, 0, 0, 0, 0, 1, 2]  # `deliveries.COUNTS`
    assert len(row) == len(deliveries.COUNTS)
    answer = deliveries.with_deliveries(summary, row)
    assert (answer["rate_basis"], answer["tracked_delivered"], answer["open_rate"]) == (
        "tracked_delivered",
        2,
        1.0,
    )
    assert (
        deliveries.with_deliveries(campaigns.shape_summary("c", hits, every), row)["rate_basis"]
        == "delivered"
    )
