"""User-Agent parsing: which mail client, browser or program made a hit, and what its UA alone signals.

Owns the recognition of mail clients and mail providers' fetchers that generic parsers get wrong (Apple Mail
has no product token, Outlook is flagged as a crawler by generic lists, Gmail's and Yahoo's proxies are not
bots), on top of ua-parser for everything else. It reads only the header: it never decides what a hit was
(the address and timing matter too; that is `processors.classify`) and never does I/O.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, Literal

import ua_parser

AGENT_CACHE_SIZE: Final = 32_768  # distinct UA strings; a campaign's readers share a few hundred

Device = Literal["desktop", "mobile", "tablet", "proxy", "bot", "unknown"]
# What the UA alone says about who is fetching; `processors.classify` weighs it with the address and timing.
UaSignal = Literal[
    "",  # an ordinary mail client or browser
    "empty",  # no User-Agent at all
    "bare_mozilla",  # exactly "Mozilla/5.0": Apple Mail Privacy Protection's prefetcher (or a lazy script)
    "gmail_prefetch",  # Gmail's prefetcher: Chrome/42.0.2311.135 ... Edge/12.246
    "gmail_proxy",  # GoogleImageProxy fetching for a reader
    "yahoo_proxy",  # YahooMailProxy fetching for a reader
    "headless",  # a headless or automated browser
    "http_library",  # an HTTP tool or library
    "crawler",  # a search engine, SEO or preview crawler
]

GMAIL_IMAGE_PROXY: Final = "Gmail Image Proxy"
GMAIL_PREFETCH: Final = "Gmail Prefetch"
YAHOO_MAIL_PROXY: Final = "Yahoo Mail Proxy"
APPLE_MAIL: Final = "Apple Mail"


@dataclass(frozen=True, slots=True)
class Agent:
    """What the User-Agent header says: who fetched (for reports) and ``signal`` (for the classifier)."""

    client: str  # mail client, proxy or browser: "Apple Mail", "Outlook", "Gmail Image Proxy", "Chrome"
    client_version: str
    os: str  # family: "iOS", "Mac OS X", "Windows", "Android"
    device: Device
    signal: UaSignal = ""


UNKNOWN_AGENT: Final = Agent("", "", "", "unknown", "empty")

# Mail clients recognised by a product token: (token in the lower-cased UA, client, version pattern).
_MAIL_CLIENTS: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = (
    ("oneoutlook", "New Outlook", re.compile(r"OneOutlook/(\d+(?:\.\d+)*)", re.I)),
    ("outlook-windows", "New Outlook", re.compile(r"Outlook-Windows/(\d+(?:\.\d+)*)", re.I)),
    ("outlook-ios", "Outlook", re.compile(r"Outlook-iOS/(\d+(?:\.\d+)*)", re.I)),
    ("outlook-android", "Outlook", re.compile(r"Outlook-Android/(\d+(?:\.\d+)*)", re.I)),
    ("microsoft outlook", "Outlook", re.compile(r"Microsoft Outlook[ /](\d+(?:\.\d+)*)", re.I)),
    ("microsoft office", "Outlook", re.compile(r"Microsoft Office/(\d+(?:\.\d+)*)", re.I)),
    ("ms-office", "Outlook", re.compile(r"MSOffice (\d+(?:\.\d+)*)", re.I)),
    ("msoffice", "Outlook", re.compile(r"MSOffice (\d+(?:\.\d+)*)", re.I)),
    ("thunderbird/", "Thunderbird", re.compile(r"Thunderbird/(\d+(?:\.\d+)*)", re.I)),
    ("samsungemail", "Samsung Email", re.compile(r"SamsungEmail/(\d+(?:\.\d+)*)", re.I)),
    ("superhuman", "Superhuman", re.compile(r"Superhuman/(\d+(?:\.\d+)*)", re.I)),
    ("airmail", "Airmail", re.compile(r"Airmail/(\d+(?:\.\d+)*)", re.I)),
    ("postbox/", "Postbox", re.compile(r"Postbox/(\d+(?:\.\d+)*)", re.I)),
    ("emclient", "eM Client", re.compile(r"eM ?Client/(\d+(?:\.\d+)*)", re.I)),
    ("em client", "eM Client", re.compile(r"eM ?Client/(\d+(?:\.\d+)*)", re.I)),
    ("mailbird", "Mailbird", re.compile(r"Mailbird/(\d+(?:\.\d+)*)", re.I)),
)

MAIL_CLIENTS: Final = frozenset({APPLE_MAIL, *(client for _, client, _ in _MAIL_CLIENTS)})

_HEADLESS: Final = re.compile(
    r"headless|phantomjs|puppeteer|playwright|selenium|webdriver|slimerjs|htmlunit|electron-fetch"
)
# Libraries announce themselves as "name/version", at the start or after a separator. Not CFNetwork or
# Dart: native iOS and Flutter mail apps fetch images with those stacks' default UAs.
_HTTP_LIBRARY: Final = re.compile(
    r"(?:^|[\s;(,])(?:curl|libcurl|wget|python-requests|python-urllib\d?|python-httpx|httpx|aiohttp|python"
    r"|urllib3|go-http-client|okhttp|java|jakarta commons-httpclient|apache-httpclient|libwww-perl|lwp-\w+"
    r"|axios|node-fetch|undici|postmanruntime|insomnia|guzzlehttp|ruby|faraday|rest-client|restsharp"
    r"|httpie|winhttp|windowspowershell|powershell|reqwest|scrapy|http_request2|unirest-java)/"
    r"|^(?:ruby|java|python|php|perl|node)$"
)
_CRAWLER: Final = re.compile(
    # "(?<!cu)": the Cubot phone brand is not a bot. Browser brands (DuckDuckGo, YaBrowser, Baidu's and
    # Pinterest's apps) are deliberately absent: only their crawlers, which say "bot" or "spider", are.
    r"(?<!cu)bot\b|crawl|spider|slurp|facebookexternalhit|facebookcatalog|bytespider|gptbot|ahrefs"
    r"|semrush|mj12|petalbot|bingpreview|whatsapp/|skypeuripreview|embedly|quora link preview|ccbot"
    r"|claudebot|anthropic-ai|amazonbot|dataforseo|ia_archiver|httrack|nutch|heritrix|\+https?://"
)
_DESKTOP_OS: Final = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Chrome OS", "FreeBSD"})


def _version(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _device(low: str, os_family: str) -> Device:
    # Android browsers say "Mobile" on phones only; app tokens like "Outlook-Android/" say neither.
    if "ipad" in low or "tablet" in low or ("(linux; android" in low and "mobile" not in low):
        return "tablet"
    if "mobi" in low or "iphone" in low or "ipod" in low or os_family in ("iOS", "Android"):
        return "mobile"
    if os_family in _DESKTOP_OS or "windows nt" in low or "macintosh" in low or "x11" in low:
        return "desktop"
    return "unknown"


def _is_apple_mail(low: str) -> bool:
    # Apple Mail renders with WebKit and sends WebKit's UA without the Safari or Version tokens that
    # Safari itself adds; in-app browsers add their own product tokens (FBAN, GSA, CriOS...).
    return (
        "applewebkit/" in low
        and "(khtml, like gecko)" in low
        and ("(iphone" in low or "(ipad" in low or "(macintosh" in low)
        and "safari/" not in low
        and "version/" not in low
        and not any(t in low for t in ("crios/", "fxios/", "edgios/", "gsa/", "fban", "fbav", "instagram"))
    )


_PROVIDER_FETCHERS: Final[tuple[tuple[tuple[str, ...], Agent], ...]] = (
    (("googleimageproxy",), Agent(GMAIL_IMAGE_PROXY, "", "", "proxy", "gmail_proxy")),
    (("yahoomailproxy",), Agent(YAHOO_MAIL_PROXY, "", "", "proxy", "yahoo_proxy")),
    (("chrome/42.0.2311.135", "edge/12.246"), Agent(GMAIL_PREFETCH, "", "", "proxy", "gmail_prefetch")),
)
BARE_MOZILLA: Final = Agent("", "", "", "unknown", "bare_mozilla")
# A program ua-parser does not know still names itself first: "python-httpx/0.27.0".
_PRODUCT: Final = re.compile(r"^([A-Za-z][\w.-]*)/(\d+(?:\.\d+)*)")


def _parse(ua: str) -> Agent:
    text = ua.strip()
    if not text:
        return UNKNOWN_AGENT
    low = text.lower()  # once: every token test below is on the lower-cased header
    # Mail providers fetching for (or ahead of) the reader: recognised here, confirmed by address later.
    for tokens, fetcher in _PROVIDER_FETCHERS:
        if all(t in low for t in tokens):
            return fetcher
    if low == "mozilla/5.0":
        return BARE_MOZILLA
    parsed = ua_parser.parse(text)
    os_family = parsed.os.family if parsed.os is not None and parsed.os.family != "Other" else ""
    return _mail_client(text, low, os_family) or _other(parsed, low, os_family)


def _mail_client(text: str, low: str, os_family: str) -> Agent | None:
    """Checked before the bot patterns: Outlook's "Microsoft Office" UA is on generic crawler lists."""
    for token, client, version in _MAIL_CLIENTS:
        if token in low:
            found = version.search(text)
            device = _device(low, os_family)
            if client == "Outlook" and device == "unknown":
                device = "desktop"  # "Microsoft Outlook 16.0.5095; ..." may name no platform
            return Agent(client, found.group(1) if found else "", os_family, device)
    if _is_apple_mail(low):
        return Agent(APPLE_MAIL, "", os_family, _device(low, os_family))
    return None


def _other(parsed: ua_parser.Result, low: str, os_family: str) -> Agent:
    """Browsers and programs: ua-parser names them; the patterns above say which ones are automated."""
    signal: UaSignal = ""
    if _HEADLESS.search(low):
        signal = "headless"
    elif _HTTP_LIBRARY.search(low):
        signal = "http_library"
    elif (parsed.device is not None and parsed.device.family == "Spider") or _CRAWLER.search(low):
        signal = "crawler"
    device: Device = "bot" if signal else _device(low, os_family)
    family, version = _family(parsed), _ua_version(parsed)
    if not family and (product := _PRODUCT.match(parsed.string)) is not None and product[1] != "Mozilla":
        family, version = product[1], product[2]
    return Agent(family, version, os_family, device, signal)


def _family(parsed: ua_parser.Result) -> str:
    ua = parsed.user_agent
    return ua.family if ua is not None and ua.family != "Other" else ""


def _ua_version(parsed: ua_parser.Result) -> str:
    ua = parsed.user_agent
    return "" if ua is None else _version(ua.major, ua.minor, ua.patch)


@functools.lru_cache(maxsize=AGENT_CACHE_SIZE)
def parse_agent(ua: str) -> Agent:
    """Never raises. Cached: UA strings repeat across hits far more than addresses do."""
    return _parse(ua)
