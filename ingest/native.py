"""The edge's native fast path for pixels (``native/``, Rust), when it is installed.

`pixelpipe_native.PixelPath.answer` takes what one read brought from a connection and, when that is
one complete ``GET /o/{token}.gif`` whose token verifies, returns the raw hit's line as
`schemas.events.encode_hit` writes it, in one call: no parser callbacks, no claim or hit objects.
Everything else it declines, and the Python path (`ingest.http_protocol`, `ingest.edge`) serves it as
before: that path is the reference, and ``tests/unit/test_native_fast_path.py`` holds the two to the same
bytes.

The module is built from source (it needs cargo); without it the edge serves every request in Python.
``PIXELPIPE_NATIVE_EDGE`` chooses: ``auto`` (the default: use it when installed), ``on`` (refuse to start
without it), ``off``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Final, Literal

from ingest.client_ip import Network
from schemas.tokens import Keyring

try:
    from pixelpipe_native import PixelPath
except ImportError:  # not built here: the Python path serves everything
    PixelPath = None  # type: ignore[assignment,misc]

__all__ = ["NATIVE_EDGE_CHOICES", "NativeEdge", "PixelPath", "available", "pixel_path"]

NativeEdge = Literal["auto", "on", "off"]
NATIVE_EDGE_CHOICES: Final = ("auto", "on", "off")

# Each path's random digits (for hit ids) are dropped in a forked child, as `ingest.edge._RandomHex` does.
_paths: weakref.WeakSet[PixelPath] = weakref.WeakSet()


def _discard_random_digits() -> None:
    for path in list(_paths):
        path.discard_random()


os.register_at_fork(after_in_child=_discard_random_digits)


def available() -> bool:
    return PixelPath is not None


def pixel_path(
    keyring: Keyring, choice: NativeEdge = "auto", trusted_proxies: Sequence[Network] = ()
) -> PixelPath | None:
    """A fast path verifying with ``keyring``'s keys and reading ``X-Forwarded-For`` from
    ``trusted_proxies``, or None (``off``, or not installed under ``auto``)."""
    if choice == "off" or PixelPath is None:
        if choice == "on":
            raise RuntimeError("the native edge fast path (pixelpipe-native) is not installed")
        return None
    proxies = [(net.network_address.packed, net.prefixlen) for net in trusted_proxies]
    path = PixelPath(list(keyring.keys), proxies)
    _paths.add(path)
    return path
