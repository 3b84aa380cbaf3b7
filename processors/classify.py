"""The per-hit classifier: was this pixel fetch or click a person, a machine on the reader's side, or a bot?

Owns the ordered rule table below: each rule names the signals it combines, the verdict and reason it gives,
and the public fact behind it; the first rule that applies decides. Pure and synchronous: the inputs are the
raw hit and its enrichment (`processors.useragent`, `processors.geo`, `processors.ranges`, which with
`processors.cloud_ranges` also holds the cloud platforms' compute ranges); no I/O, no clock, no state. It
sees one hit at a time, so it never judges a burst of clicks (several links of one message within a second or
two): the stateful click window after it does. Timing alone never condemns a person: people do
open mail seconds after it arrives, so time since sending only ever supports another signal.

Counting (the contract): HUMAN counts in opens/clicks; MACHINE (a prefetch, or a gateway or a cloud scanner
loading images) only in machine_opens; BOT in neither (link scanners' clicks are reported as bot_clicks);
INVALID never.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple, get_args

from processors.cloud_ranges import CLOUD_ROLE
from processors.geo import Geo
from processors.ranges import RangeMatch, RangeTable
from processors.useragent import MAIL_CLIENTS, Agent, UaSignal
from schemas.events import RawHit
from schemas.verdicts import Classification, Verdict

APPLE_ASNS: Final = frozenset({714, 6185})  # Apple Inc., Apple Inc. (Apple's CDN / iCloud)
GOOGLE_ASNS: Final = frozenset({15169})
YAHOO_ASNS: Final = frozenset({10310, 26101, 34010, 36646, 36647})
# Clouds where link scanners and sandboxes run: a browser-like UA from here right at delivery is a scanner.
DATACENTER_ASNS: Final = frozenset({8075, 15169, 396982})  # Microsoft, Google, Google Cloud
AT_DELIVERY_S: Final = 10.0
# A cloud platform's compute range (`processors.cloud_ranges`) is narrower evidence than an ASN: only the
# machines customers rent, never the platform's consumer or corporate networks. Delivery itself takes
# seconds to a minute after the send, and scanners act when the mail arrives: so "at delivery" is longer.
CLOUD_AT_DELIVERY_S: Final = 120.0
# Hosting providers that publish no list of their ranges, known by their own ASN (only with an ASN DB).
CLOUD_ASNS: Final[dict[int, str]] = {24940: "hetzner", 16276: "ovh"}


class HitFacts(NamedTuple):
    """Everything a rule may look at, computed once per hit. A NamedTuple: cheap to build on the hot path."""

    hit: RawHit
    agent: Agent
    geo: Geo
    place: RangeMatch | None  # the known owner's space the address is in
    after_s: float | None  # seconds from sending to this hit; None when the send time is unknown


_new_facts: Final = tuple.__new__  # a NamedTuple without its Python-level __new__, on every hit


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: ``signal → verdict → reason → source``."""

    name: str
    signal: str
    verdict: Verdict
    reason: str  # "{owner}", "{platform}" and "{token_error}" are filled in from the hit
    source: str
    applies: Callable[[HitFacts], bool]
    via_proxy: bool = False
    # The UA signals this rule can apply to (None: any). Only an index for speed: `applies` still decides.
    ua_signals: frozenset[UaSignal] | None = None
    _fixed: Classification | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = None if "{" in self.reason else Classification(self.verdict, self.reason, self.via_proxy)
        object.__setattr__(self, "_fixed", fixed)

    def decide(self, facts: HitFacts) -> Classification:
        if self._fixed is not None:
            return self._fixed  # frozen, so one instance serves every hit
        owner = facts.place.owner if facts.place is not None else "unknown"
        reason = self.reason.format(
            owner=owner,
            platform=_cloud_platform(facts) or "unknown",
            token_error=facts.hit.token_error or "invalid",
        )
        return _classification(self.verdict, reason, self.via_proxy)


@functools.lru_cache(maxsize=1024)
def _classification(verdict: Verdict, reason: str, via_proxy: bool) -> Classification:
    return Classification(verdict, reason, via_proxy)


def _in_space(facts: HitFacts, owner: str, asns: frozenset[int]) -> bool:
    return (facts.place is not None and facts.place.owner == owner) or facts.geo.asn in asns


def _not_contradicted(facts: HitFacts, owner: str, asns: frozenset[int]) -> bool:
    """The address is the provider's, or nothing says whose it is: the range table is not exhaustive (and the
    ASN database optional), so only positive evidence that it is someone else's overrules the UA."""
    if _in_space(facts, owner, asns):
        return True
    return facts.place is None and facts.geo.asn == 0


def _token_invalid(f: HitFacts) -> bool:
    return not f.hit.token_ok


def _empty_ua(f: HitFacts) -> bool:
    return f.agent.signal == "empty"


def _apple_mpp(f: HitFacts) -> bool:
    return f.agent.signal == "bare_mozilla" and f.place is not None and f.place.owner == "apple"


def _apple_mpp_asn(f: HitFacts) -> bool:
    return f.agent.signal == "bare_mozilla" and f.geo.asn in APPLE_ASNS


def _bare_mozilla(f: HitFacts) -> bool:
    return f.agent.signal == "bare_mozilla"


def _gmail_prefetch(f: HitFacts) -> bool:
    return f.agent.signal == "gmail_prefetch" and _not_contradicted(f, "google", GOOGLE_ASNS)


def _gmail_proxy(f: HitFacts) -> bool:
    return f.agent.signal == "gmail_proxy" and _not_contradicted(f, "google", GOOGLE_ASNS)


def _yahoo_proxy(f: HitFacts) -> bool:
    return f.agent.signal == "yahoo_proxy" and _not_contradicted(f, "yahoo", YAHOO_ASNS)


def _provider_spoof(f: HitFacts) -> bool:
    # Reached only when the provider rules above did not apply: the address is known to be someone else's.
    return f.agent.signal in ("gmail_prefetch", "gmail_proxy", "yahoo_proxy")


def _gateway_open(f: HitFacts) -> bool:
    return f.hit.kind == "open" and f.place is not None and f.place.role == "security_gateway"


def _gateway_click(f: HitFacts) -> bool:
    return f.hit.kind == "click" and f.place is not None and f.place.role == "security_gateway"


def _headless(f: HitFacts) -> bool:
    return f.agent.signal == "headless"


def _http_library(f: HitFacts) -> bool:
    return f.agent.signal == "http_library"


def _crawler(f: HitFacts) -> bool:
    return f.agent.signal == "crawler"


def _datacenter_at_delivery(f: HitFacts) -> bool:
    # Browsers only: a mail client in a cloud is a person on a cloud PC (Windows 365, Azure Virtual Desktop).
    return (
        f.agent.client not in MAIL_CLIENTS
        and f.geo.asn in DATACENTER_ASNS
        and f.after_s is not None
        and f.after_s < AT_DELIVERY_S
    )


def _cloud_platform(f: HitFacts) -> str | None:
    """The cloud platform whose compute space the address is in: its published range, or for the providers
    known by ASN, its ASN. A curated owner's range (a gateway, a mail provider) is never a cloud's."""
    if f.place is not None:
        return f.place.owner if f.place.role == CLOUD_ROLE else None
    return CLOUD_ASNS.get(f.geo.asn)


def _cloud_at_delivery(f: HitFacts) -> bool:
    # Not a mail client: people read mail on cloud PCs (Windows 365, Azure Virtual Desktop, WorkSpaces) and
    # behind proxies and VPNs that run in clouds (Prisma Access...); scanners do not present a mail client.
    return (
        f.after_s is not None
        and f.after_s < CLOUD_AT_DELIVERY_S
        and f.agent.client not in MAIL_CLIENTS
        and _cloud_platform(f) is not None
    )


def _cloud_open(f: HitFacts) -> bool:
    return f.hit.kind == "open" and _cloud_at_delivery(f)


def _cloud_click(f: HitFacts) -> bool:
    return f.hit.kind == "click" and _cloud_at_delivery(f)


def _anything(_: HitFacts) -> bool:
    return True


def _only(*signals: UaSignal) -> frozenset[UaSignal]:
    return frozenset(signals)


CORPUS: Final = "tests/data/corpus_hits.jsonl (shared/corpus README)"
CLOUD_LISTS: Final = (
    "AWS ip-ranges.json (EC2), Google cloud.json, Azure Service Tags (AzureCloud), Oracle "
    "public_ip_ranges.json (OCI), DigitalOcean and Linode geofeeds; Hetzner AS24940, OVH AS16276"
)
CONTRACT: Final = "shared/contract.md, counting rules"

RULES: Final[tuple[Rule, ...]] = (
    Rule("token_invalid", "token did not verify", Verdict.INVALID, "token:{token_error}",
         CONTRACT + ": a forged or garbled token is not counted", _token_invalid),
    Rule("empty_ua", "no User-Agent", Verdict.BOT, "ua:empty",
         "every mail client and provider proxy sends one; " + CORPUS, _empty_ua, ua_signals=_only("empty")),
    Rule("apple_mpp", 'UA exactly "Mozilla/5.0" + Apple address space (17.0.0.0/8, Apple IPv6)',
         Verdict.MACHINE, "apple_mpp",
         "Apple Mail Privacy Protection prefetch; Apple's networks: support.apple.com/101555", _apple_mpp,
         ua_signals=_only("bare_mozilla")),
    Rule("apple_mpp_asn", 'UA exactly "Mozilla/5.0" + ASN 714/6185 (Apple) outside the listed ranges',
         Verdict.MACHINE, "apple_mpp_asn", "Apple Mail Privacy Protection prefetch; RIR whois AS714/AS6185",
         _apple_mpp_asn, ua_signals=_only("bare_mozilla")),
    Rule("bare_mozilla", 'UA exactly "Mozilla/5.0" from anywhere else', Verdict.BOT, "ua:bare_mozilla",
         "no client sends a bare product token; only Apple's relays are known to", _bare_mozilla,
         ua_signals=_only("bare_mozilla")),
    Rule("gmail_prefetch", "Chrome/42.0.2311.135 + Edge/12.246 UA, Google space (or unknown space)",
         Verdict.MACHINE, "gmail_prefetch", "Gmail prefetches images at delivery; " + CORPUS,
         _gmail_prefetch, ua_signals=_only("gmail_prefetch")),
    Rule("gmail_proxy", "GoogleImageProxy UA, Google space (or unknown space)", Verdict.HUMAN, "gmail_proxy",
         "Gmail fetches images through its proxy when the reader opens; " + CONTRACT, _gmail_proxy,
         via_proxy=True, ua_signals=_only("gmail_proxy")),
    Rule("yahoo_proxy", "YahooMailProxy UA, Yahoo space (or unknown space)", Verdict.HUMAN, "yahoo_proxy",
         "help.yahoo.com/kb/SLN28749 (Yahoo Mail proxy); " + CONTRACT, _yahoo_proxy, via_proxy=True,
         ua_signals=_only("yahoo_proxy")),
    Rule("provider_spoof", "mail provider's UA from an address known to be someone else's", Verdict.BOT,
         "ua:provider_spoof", "providers fetch only from their own networks (Google SPF, Yahoo whois)",
         _provider_spoof, ua_signals=_only("gmail_prefetch", "gmail_proxy", "yahoo_proxy")),
    Rule("gateway_open", "open from a security gateway's published range", Verdict.MACHINE,
         "gateway_range:{owner}", "gateways load images at delivery (Microsoft 365 EOP ranges...); "
         + CONTRACT + ": machine_opens", _gateway_open),
    Rule("gateway_click", "click from a security gateway's published range", Verdict.BOT,
         "gateway_range:{owner}", "link scanners (Safe Links, URL Defense...) follow every link; "
         + CONTRACT + ": bot_clicks", _gateway_click),
    Rule("headless", "HeadlessChrome, PhantomJS, Puppeteer, Playwright, Selenium... in the UA", Verdict.BOT,
         "ua:headless", CONTRACT + ": headless browsers count in neither", _headless,
         ua_signals=_only("headless")),
    Rule("http_library", "curl, Wget, python-requests, Go-http-client, okhttp, Java/... UA", Verdict.BOT,
         "ua:http_library", CONTRACT + ": scripts count in neither", _http_library,
         ua_signals=_only("http_library")),
    Rule("crawler", 'ua-parser device "Spider" or bot/crawler/spider tokens (mail clients excepted)',
         Verdict.BOT, "ua:crawler", CONTRACT + ": crawlers count in neither", _crawler,
         ua_signals=_only("crawler")),
    Rule("cloud_open", "open from a cloud platform's compute range (or hosting ASN), not a mail client, "
         "< 120 s after sending", Verdict.MACHINE, "cloud_{platform}",
         "security products scan mail from cloud VMs at delivery (issue 19); " + CLOUD_LISTS + "; "
         + CONTRACT + ": machine_opens", _cloud_open),
    Rule("cloud_click", "click from a cloud platform's compute range (or hosting ASN), not a mail client, "
         "< 120 s after sending", Verdict.BOT, "cloud_{platform}",
         "link scanners and sandboxes run on cloud VMs (issue 19); " + CLOUD_LISTS + "; "
         + CONTRACT + ": bot_clicks", _cloud_click),
    Rule("datacenter_at_delivery",
         "browser UA (not a mail client) + Microsoft/Google cloud ASN + < 10 s after sending",
         Verdict.BOT, "asn_datacenter_at_delivery",
         "scanners run in clouds at delivery; neither signal alone is enough (shared/corpus README)",
         _datacenter_at_delivery),
    Rule("client", "any other UA: a mail client or browser", Verdict.HUMAN, "ua:client",
         "timing alone never condemns a person (shared/corpus README)", _anything),
)  # fmt: skip


# Per UA signal, the rules that can apply, in table order: most hits skip the rules about other signals.
_RULES_BY_SIGNAL: Final[dict[str, tuple[Rule, ...]]] = {
    signal: tuple(r for r in RULES if r.ua_signals is None or signal in r.ua_signals)
    for signal in get_args(UaSignal)
}


def facts_for(hit: RawHit, agent: Agent, geo: Geo, ranges: RangeTable) -> HitFacts:
    return hit_facts(hit, agent, geo, ranges.match(hit.ip))


def hit_facts(hit: RawHit, agent: Agent, geo: Geo, place: RangeMatch | None) -> HitFacts:
    """`facts_for` with the range lookup done (``place`` is ``ranges.match(hit.ip)``)."""
    after_s = hit.received_at_ms / 1000 - hit.sent_at if hit.sent_at > 0 else None
    return _new_facts(HitFacts, (hit, agent, geo, place, after_s))


def classify(hit: RawHit, agent: Agent, geo: Geo, ranges: RangeTable) -> Classification:
    """The first rule of `RULES` that applies. ``agent`` must be `parse_agent(hit.user_agent)`."""
    return judge(facts_for(hit, agent, geo, ranges))


def judge(facts: HitFacts) -> Classification:
    """`classify` over facts already gathered."""
    for rule in _RULES_BY_SIGNAL.get(facts.agent.signal, RULES):
        if rule.applies(facts):
            return rule.decide(facts)
    raise AssertionError("unreachable: the last rule applies to every hit")  # pragma: no cover


def rule_table_markdown() -> str:
    """The rule table as the closing note prints it: signal → verdict → reason → source."""
    lines = ["| # | signal | verdict | reason | source |", "|---|---|---|---|---|"]
    lines += [
        f"| {i} | {r.signal} | {r.verdict.value} | `{r.reason}` | {r.source} |"
        for i, r in enumerate(RULES, 1)
    ]
    return "\n".join(lines)
