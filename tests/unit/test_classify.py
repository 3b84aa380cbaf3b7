"""The per-hit classifier, rule by rule: each test names the signals combined and the verdict they give."""

from __future__ import annotations

import pytest

from processors.classify import RULES, classify, facts_for, rule_table_markdown
from processors.geo import Geo
from processors.ranges import RangeTable, load_ranges
from processors.useragent import Agent, parse_agent
from schemas.events import HitKind, RawHit
from schemas.verdicts import Classification, Verdict

SENT_AT = 1_767_225_600  # 2026-01-01T00:00:00Z
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
RESIDENTIAL = "24.6.101.33"


@pytest.fixture(scope="module")
def ranges() -> RangeTable:
    return load_ranges()


def hit(
    ua: str,
    ip: str = RESIDENTIAL,
    *,
    kind: HitKind = "open",
    after_s: float = 3600,
    sent_at: int = SENT_AT,
    token_ok: bool = True,
    token_error: str = "",
) -> RawHit:
    return RawHit(
        hit_id="h1",
        kind=kind,
        received_at_ms=int((SENT_AT + after_s) * 1000),
        ip=ip,
        user_agent=ua,
        token_ok=token_ok,
        account="acme",
        campaign_id="c1",
        message_id="m1",
        sent_at=sent_at,
        link_index=0 if kind == "click" else -1,
        url="https://example.com/" if kind == "click" else "",
        token_error=token_error,
    )


def verdict_of(h: RawHit, ranges: RangeTable, geo: Geo | None = None) -> Classification:
    return classify(h, parse_agent(h.user_agent), geo or Geo(), ranges)


def test_an_invalid_token_is_never_counted_whatever_else_it_looks_like(ranges: RangeTable) -> None:
    forged = hit(CHROME, token_ok=False, token_error="bad_signature")
    assert verdict_of(forged, ranges) == Classification(Verdict.INVALID, "token:bad_signature")
    garbled = hit("Mozilla/5.0", "17.58.63.200", token_ok=False)
    assert verdict_of(garbled, ranges) == Classification(Verdict.INVALID, "token:invalid")


def test_no_user_agent_is_a_bot(ranges: RangeTable) -> None:
    assert verdict_of(hit(""), ranges) == Classification(Verdict.BOT, "ua:empty")


@pytest.mark.parametrize("ip", ["17.58.63.200", "2620:149:a44::10", "::ffff:17.122.140.9"])
@pytest.mark.parametrize("after_s", [5, 30_000])
def test_bare_mozilla_from_apple_space_is_an_mpp_prefetch_at_any_time(
    ranges: RangeTable, ip: str, after_s: int
) -> None:
    assert verdict_of(hit("Mozilla/5.0", ip, after_s=after_s), ranges) == Classification(
        Verdict.MACHINE, "apple_mpp"
    )


def test_bare_mozilla_from_an_apple_asn_outside_the_listed_ranges_is_an_mpp_prefetch(
    ranges: RangeTable,
) -> None:
    got = verdict_of(hit("Mozilla/5.0", "63.92.224.10"), ranges, Geo(asn=714, as_org="Apple Inc."))
    assert got == Classification(Verdict.MACHINE, "apple_mpp_asn")


def test_bare_mozilla_from_anywhere_else_is_a_bot(ranges: RangeTable) -> None:
    assert verdict_of(hit("Mozilla/5.0"), ranges) == Classification(Verdict.BOT, "ua:bare_mozilla")
    comcast = Geo(asn=7922, as_org="Comcast Cable Communications, Inc.")
    assert verdict_of(hit("Mozilla/5.0", "50.130.1.1"), ranges, comcast).verdict is Verdict.BOT


def test_gmail_prefetch_from_google_space_is_a_machine_open(ranges: RangeTable) -> None:
    got = verdict_of(hit(GMAIL_PREFETCH, "66.102.6.15", after_s=3), ranges)
    assert got == Classification(Verdict.MACHINE, "gmail_prefetch")


def test_gmail_proxy_is_a_person_through_a_proxy(ranges: RangeTable) -> None:
    expected = Classification(Verdict.HUMAN, "gmail_proxy", via_proxy=True)
    assert verdict_of(hit(GMAIL_PROXY, "66.249.88.12"), ranges) == expected
    assert verdict_of(hit(GMAIL_PROXY, "2a00:1450:4864:20::135"), ranges) == expected
    # Google's space outside the published mail blocks: the ASN confirms it.
    assert verdict_of(hit(GMAIL_PROXY, "142.250.1.1"), ranges, Geo(asn=15169)) == expected
    # Nothing known about the address either way: the UA is believed (the table is not exhaustive).
    assert verdict_of(hit(GMAIL_PROXY, "142.250.1.1"), ranges) == expected


def test_yahoo_proxy_is_a_person_through_a_proxy(ranges: RangeTable) -> None:
    expected = Classification(Verdict.HUMAN, "yahoo_proxy", via_proxy=True)
    assert verdict_of(hit(YAHOO_PROXY, "98.138.10.4"), ranges) == expected
    assert verdict_of(hit(YAHOO_PROXY, "2001:4998:124:1507::f000"), ranges) == expected


@pytest.mark.parametrize("ua", [GMAIL_PROXY, GMAIL_PREFETCH, YAHOO_PROXY])
def test_a_providers_ua_from_someone_elses_known_space_is_a_spoof(ranges: RangeTable, ua: str) -> None:
    comcast = Geo(asn=7922, as_org="Comcast Cable Communications, Inc.")
    assert verdict_of(hit(ua, "50.130.1.1"), ranges, comcast) == Classification(
        Verdict.BOT, "ua:provider_spoof"
    )
    # Another known owner's range is evidence enough without an ASN database.
    assert verdict_of(hit(ua, "17.58.63.200"), ranges).reason == "ua:provider_spoof"


def test_a_security_gateway_loading_images_is_a_machine_open_and_its_clicks_are_bot_clicks(
    ranges: RangeTable,
) -> None:
    open_ = hit(CHROME, "40.107.8.77", after_s=2)
    assert verdict_of(open_, ranges) == Classification(Verdict.MACHINE, "gateway_range:microsoft_eop")
    click = hit(CHROME, "52.101.4.9", kind="click", after_s=4)
    assert verdict_of(click, ranges) == Classification(Verdict.BOT, "gateway_range:microsoft_eop")
    proofpoint = hit(CHROME, "148.163.150.10", kind="click", after_s=1)
    assert verdict_of(proofpoint, ranges) == Classification(Verdict.BOT, "gateway_range:proofpoint")
    # Even with a mail client's UA: people do not read mail from a gateway's address.
    assert verdict_of(hit(OUTLOOK, "40.107.8.77"), ranges).verdict is Verdict.MACHINE


@pytest.mark.parametrize(
    ("ua", "reason"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/116.0 "
         "Safari/537.36", "ua:headless"),
        ("curl/7.88.1", "ua:http_library"),
        ("python-requests/2.28.2", "ua:http_library"),
        ("Go-http-client/1.1", "ua:http_library"),
        ("okhttp/4.9.2", "ua:http_library"),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "ua:crawler"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "ua:crawler"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["open", "click"])
def test_automation_is_a_bot_for_opens_and_clicks(
    ranges: RangeTable, ua: str, reason: str, kind: HitKind
) -> None:
    assert verdict_of(hit(ua, kind=kind), ranges) == Classification(Verdict.BOT, reason)


def test_outlook_is_a_person_although_crawler_lists_flag_it(ranges: RangeTable) -> None:
    assert verdict_of(hit(OUTLOOK, "89.160.20.128"), ranges) == Classification(Verdict.HUMAN, "ua:client")


def test_timing_alone_never_condemns_a_person(ranges: RangeTable) -> None:
    for after_s in (0, 1, 5, 9.9):
        assert verdict_of(hit(CHROME, after_s=after_s), ranges).verdict is Verdict.HUMAN
    # Even a reader on a residential ISP whose ASN is known.
    assert verdict_of(hit(CHROME, "50.130.1.1", after_s=2), ranges, Geo(asn=7922)).verdict is Verdict.HUMAN


def test_a_browser_in_a_microsoft_or_google_cloud_at_delivery_is_a_scanner(ranges: RangeTable) -> None:
    azure = Geo(country="US", asn=8075, as_org="Microsoft Corporation")
    bot = Classification(Verdict.BOT, "asn_datacenter_at_delivery")
    assert verdict_of(hit(CHROME, "20.42.1.1", after_s=4), ranges, azure) == bot
    assert verdict_of(hit(CHROME, "20.42.1.1", kind="click", after_s=9), ranges, azure) == bot
    # The cloud alone is not enough: people browse from cloud PCs (Windows 365, Azure Virtual Desktop).
    assert verdict_of(hit(CHROME, "20.42.1.1", after_s=4000), ranges, azure).verdict is Verdict.HUMAN
    # Nor is it for a mail client there, even at delivery.
    assert verdict_of(hit(OUTLOOK, "20.42.1.1", after_s=4), ranges, azure).verdict is Verdict.HUMAN
    # Without a send time, "at delivery" is unknown: the timing rule cannot apply.
    assert verdict_of(hit(CHROME, "20.42.1.1", after_s=4, sent_at=0), ranges, azure).verdict is Verdict.HUMAN


def test_an_ordinary_client_is_a_person(ranges: RangeTable) -> None:
    assert verdict_of(hit(CHROME), ranges) == Classification(Verdict.HUMAN, "ua:client")
    assert verdict_of(hit(CHROME, "garbage-address"), ranges) == Classification(Verdict.HUMAN, "ua:client")


def test_the_rule_table_is_complete_and_printable() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) == 18  # issue 19 added cloud_open and cloud_click
    assert names[0] == "token_invalid"
    assert names[-1] == "client"
    assert all(r.signal and r.reason and r.source for r in RULES)
    table = rule_table_markdown()
    assert table.count("\n") == len(RULES) + 1
    assert "| `gateway_range:{owner}` |" in table


def test_the_per_signal_index_gives_the_same_answers_as_the_whole_table(ranges: RangeTable) -> None:
    uas = ["", "Mozilla/5.0", CHROME, OUTLOOK, GMAIL_PROXY, GMAIL_PREFETCH, YAHOO_PROXY, "curl/8.0",
           "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
           "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/116.0 Safari/537.36"]  # fmt: skip
    ips = [RESIDENTIAL, "17.58.63.200", "66.102.6.15", "98.138.10.4", "40.107.8.77", "20.42.1.1", "x"]
    geos = [Geo(), Geo(asn=714), Geo(asn=8075), Geo(asn=15169), Geo(asn=7922)]
    for ua in uas:
        agent = parse_agent(ua)
        for ip in ips:
            for geo in geos:
                for kind in ("open", "click"):
                    for after_s in (2, 4000):
                        h = hit(ua, ip, kind=kind, after_s=after_s)  # type: ignore[arg-type]
                        facts = facts_for(h, agent, geo, ranges)
                        whole = next(r.decide(facts) for r in RULES if r.applies(facts))
                        assert classify(h, agent, geo, ranges) == whole, (ua, ip, geo, kind, after_s)


def test_an_agent_with_a_signal_the_index_does_not_know_still_gets_a_verdict(ranges: RangeTable) -> None:
    odd = Agent("Thing", "", "", "unknown", "not-a-signal")  # type: ignore[arg-type]
    assert classify(hit(CHROME), odd, Geo(), ranges) == Classification(Verdict.HUMAN, "ua:client")
