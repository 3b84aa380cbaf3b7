"""Clients that fetch an email's images whole, ahead of or instead of the reader: the mail providers' image
proxies and prefetchers, known by their User-Agent alone. Pure.

The edge reads this list to decide, without a lookup, that holding a read-time pixel open would measure the
fetcher and not a person (`ingest.read_time`: such a pixel is sent whole, ``ReadEnd.PROXY``). The processors'
User-Agent parser (`processors.useragent`) recognises the same fetchers by the same tokens before anything
else it does; ``tests/unit/test_image_proxies.py`` holds the two to the same list.

Only the User-Agent: a gateway or scanner that sends a browser's UA is not recognised here (its open is
classified `machine` or `bot` later, from its address, so its read time is named ``unknown`` all the same).
"""

from __future__ import annotations

from typing import Final

# Each entry: the tokens that must all appear in the lower-cased User-Agent.
WHOLE_IMAGE_FETCHERS: Final[tuple[tuple[str, ...], ...]] = (
    ("googleimageproxy",),  # Gmail's image proxy: fetches once for the reader, caches, serves from its cache
    ("yahoomailproxy",),  # Yahoo Mail's image proxy
    ("chrome/42.0.2311.135", "edge/12.246"),  # Gmail's prefetcher
)
# Exactly this, nothing else: Apple Mail Privacy Protection's prefetcher (it loads every image on delivery).
BARE_MOZILLA: Final = "mozilla/5.0"


def fetches_whole_images(user_agent: str) -> bool:
    """Whether ``user_agent`` is a fetcher that loads an image whole, whoever reads (never raises)."""
    low = user_agent.strip().lower()
    if low == BARE_MOZILLA:
        return True
    return any(all(token in low for token in tokens) for tokens in WHOLE_IMAGE_FETCHERS)
