"""User-Agent parsing: mail clients that generic parsers get wrong, providers' fetchers, and automation."""

from __future__ import annotations

import pytest

from processors.useragent import AGENT_CACHE_SIZE, MAIL_CLIENTS, Agent, parse_agent

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        # Apple Mail sends WebKit's UA with no Safari or Version token.
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148",
            Agent("Apple Mail", "", "iOS", "mobile"),
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148",
            Agent("Apple Mail", "", "iOS", "tablet"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
            Agent("Apple Mail", "", "Mac OS X", "desktop"),
        ),
        # Outlook: "Microsoft Office" is on generic crawler lists; it is a person's mail client.
        (
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.16827; Pro)",
            Agent("Outlook", "16.0.16827", "Windows", "desktop"),
        ),
        ("Microsoft Outlook 16.0.5095; Windows NT 10.0", Agent("Outlook", "16.0.5095", "Windows", "desktop")),
        (
            "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
            "ms-office; MSOffice 16)",
            Agent("Outlook", "16", "Windows", "desktop"),
        ),
        (
            CHROME_WIN.replace(
                "Chrome/119.0.0.0 Safari/537.36", "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0 "
            )
            + "OneOutlook/1.2023.1214.100",
            Agent("New Outlook", "1.2023.1214.100", "Windows", "desktop"),
        ),
        ("Outlook-iOS/723.4027091.prod.iphone (4.2.1)", Agent("Outlook", "723.4027091", "iOS", "mobile")),
        ("Outlook-Android/2.0", Agent("Outlook", "2.0", "Android", "mobile")),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
            Agent("Thunderbird", "115.6.0", "Linux", "desktop"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
            "Chrome/118.0.0.0 Mobile Safari/537.36 SamsungEmail/6.1.90.2",
            Agent("Samsung Email", "6.1.90.2", "Android", "mobile"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Superhuman/1.0 Chrome/118.0.0.0 Electron/27.0.0 Safari/537.36",
            Agent("Superhuman", "1.0", "Mac OS X", "desktop"),
        ),
        # Mail providers' fetchers.
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            Agent("Gmail Image Proxy", "", "", "proxy", "gmail_proxy"),
        ),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            Agent("Yahoo Mail Proxy", "", "", "proxy", "yahoo_proxy"),
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0",
            Agent("Gmail Prefetch", "", "", "proxy", "gmail_prefetch"),
        ),
        ("Mozilla/5.0", Agent("", "", "", "unknown", "bare_mozilla")),
        (" Mozilla/5.0 ", Agent("", "", "", "unknown", "bare_mozilla")),
        ("", Agent("", "", "", "unknown", "empty")),
        ("   ", Agent("", "", "", "unknown", "empty")),
        # Browsers.
        (CHROME_WIN, Agent("Chrome", "119.0.0", "Windows", "desktop")),
        (
            "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/119.0.0.0 Mobile Safari/537.36",
            Agent("Chrome Mobile", "119.0.0", "Android", "mobile"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/119.0.0.0 Safari/537.36",
            Agent("Chrome", "119.0.0", "Android", "tablet"),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/16.6 Mobile/15E148 Safari/604.1",
            Agent("Mobile Safari", "16.6", "iOS", "mobile"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/119.0.0.0 Mobile Safari/537.36",
            Agent("Chrome Mobile", "119.0.0", "Android", "mobile"),
        ),
        # Automation.
        ("curl/7.88.1", Agent("curl", "7.88.1", "", "bot", "http_library")),
        ("Wget/1.21.3", Agent("Wget", "1.21.3", "", "bot", "http_library")),
        ("python-requests/2.28.2", Agent("Python Requests", "2.28", "", "bot", "http_library")),
        ("Go-http-client/1.1", Agent("Go-http-client", "1.1", "", "bot", "http_library")),
        ("okhttp/4.9.2", Agent("okhttp", "4.9.2", "", "bot", "http_library")),
        ("Python/3.11 aiohttp/3.9.1", Agent("Python aiohttp", "3.9.1", "", "bot", "http_library")),
        ("axios/1.6.2", Agent("axios", "1.6.2", "", "bot", "http_library")),
        (
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            Agent("node-fetch", "1.0", "", "bot", "http_library"),
        ),
        ("PostmanRuntime/7.36.0", Agent("PostmanRuntime", "7.36.0", "", "bot", "http_library")),
        ("Java/1.8.0_151", Agent("Java", "8.0.151", "", "bot", "http_library")),
        (
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            Agent("Apache-HttpClient", "4.5.14", "", "bot", "http_library"),
        ),
        ("libwww-perl/6.72", Agent("libwww-perl", "6.72", "", "bot", "http_library")),
        ("python-httpx/0.27.0", Agent("python-httpx", "0.27.0", "", "bot", "http_library")),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/116.0.5845.96 Safari/537.36",
            Agent("HeadlessChrome", "116.0.5845", "Linux", "bot", "headless"),
        ),
        (
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 "
            "Safari/538.1",
            Agent("PhantomJS", "2.1.1", "Linux", "bot", "headless"),
        ),
        (
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            Agent("AhrefsBot", "7.0", "", "bot", "crawler"),
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            Agent("bingbot", "2.0", "", "bot", "crawler"),
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Agent("Googlebot", "2.1", "", "bot", "crawler"),
        ),
        (
            "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
            Agent("SemrushBot", "7", "", "bot", "crawler"),
        ),
        ("facebookexternalhit/1.1", Agent("FacebookBot", "1.1", "", "bot", "crawler")),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            Agent("GPTBot", "1.2", "", "bot", "crawler"),
        ),
    ],
)
def test_parse_agent(ua: str, expected: Agent) -> None:
    assert parse_agent(ua) == expected


def test_every_recognised_mail_client_is_listed() -> None:
    assert {
        "Apple Mail",
        "Outlook",
        "New Outlook",
        "Thunderbird",
        "Samsung Email",
        "Superhuman",
    } <= MAIL_CLIENTS
    assert "Gmail Image Proxy" not in MAIL_CLIENTS  # a proxy, not the reader's client


def test_parse_agent_is_cached() -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0 (cache test)"
    before = parse_agent.cache_info()
    first = parse_agent(ua)
    second = parse_agent(ua)
    after = parse_agent.cache_info()
    assert first is second
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    assert after.maxsize == AGENT_CACHE_SIZE


def test_a_huge_or_binary_header_does_not_raise() -> None:
    assert parse_agent("A" * 20_000).device == "unknown"
    assert parse_agent("\x00\xff\ufffd").signal == ""
