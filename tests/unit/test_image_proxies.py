"""`schemas.image_proxies` (what the edge reads to send a proxy the read-time GIF whole) says the same as the
processors' User-Agent parser: one list of whole-image fetchers, by the same tokens."""

from __future__ import annotations

import pytest

from processors import useragent
from schemas.image_proxies import BARE_MOZILLA, WHOLE_IMAGE_FETCHERS, fetches_whole_images

# The UA signals of a fetcher that loads images whole, whoever reads.
WHOLE = {"gmail_proxy", "yahoo_proxy", "gmail_prefetch", "bare_mozilla"}
AGENTS = [
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
    "Safari/537.36 Edge/12.246",
    "Mozilla/5.0",
    " mozilla/5.0 ",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36",
    "python-httpx/0.27.0",
    "",
]


@pytest.mark.parametrize("agent", AGENTS)
def test_the_edge_and_the_processors_agree_on_who_fetches_whole_images(agent: str) -> None:
    assert fetches_whole_images(agent) == (useragent.parse_agent(agent).signal in WHOLE)


def test_one_list_of_tokens() -> None:
    processors_tokens = {tokens for tokens, _ in useragent._PROVIDER_FETCHERS}
    assert processors_tokens == set(WHOLE_IMAGE_FETCHERS)
    assert useragent._parse(BARE_MOZILLA).signal == "bare_mozilla"
