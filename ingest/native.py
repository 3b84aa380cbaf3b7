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

The module says the wire version of the lines it writes (``WIRE_VERSION``), checked at load against
`schemas.events.SCHEMA_VERSION`: a module built from other sources than this Python (a stale build) would
publish lines the processors read as another version. The edge does not use such a module: under ``auto``
it says so in a warning naming both versions and serves every request in Python; under ``on`` it refuses
to start.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Final, Literal

from ingest.client_ip import Network
from schemas.events import SCHEMA_VERSION
from schemas.tokens import Keyring

try:
    import pixelpipe_native
    from pixelpipe_native import PixelPath
except ImportError:  # not built here: the Python path serves everything
    pixelpipe_native = None  # type: ignore[assignment]
    PixelPath = None  # type: ignore[assignment,misc]

__all__ = ["NATIVE_EDGE_CHOICES", "NativeEdge", "PixelPath", "available", "pixel_path", "wire_mismatch"]

log = logging.getLogger(__name__)

NativeEdge = Literal["auto", "on", "off"]
NATIVE_EDGE_CHOICES: Final = ("auto", "on", "off")

# Each path's random digits (for hit ids) are dropped in a forked child, as `ingest.edge._RandomHex` does.
_paths: weakref.WeakSet[PixelPath] = weakref.WeakSet()


def _discard_random_digits() -> None:
    for path in list(_paths):
        path.discard_random()


os.register_at_fork(after_in_child=_discard_random_digits)


def wire_mismatch(module: ModuleType | None) -> str | None:
    """Why the edge may not use ``module``: it writes another wire version than `SCHEMA_VERSION`, or does
    not say which (a build older than the check). None when it may, or when there is no module."""
    if module is None:
        return None
    written = getattr(module, "WIRE_VERSION", None)
    if written == SCHEMA_VERSION:
        return None
    return (
        f"the native edge fast path (pixelpipe-native) writes wire version "
        f"{'(unstated)' if written is None else written}, this edge writes {SCHEMA_VERSION}"
    )


_WIRE_MISMATCH: Final = wire_mismatch(pixelpipe_native)


def available() -> bool:
    """Whether the module is installed (`pixel_path` still declines it if `wire_mismatch` says so)."""
    return PixelPath is not None


def pixel_path(
    keyring: Keyring, choice: NativeEdge = "auto", trusted_proxies: Sequence[Network] = ()
) -> PixelPath | None:
    """A fast path verifying with ``keyring``'s keys and reading ``X-Forwarded-For`` from
    ``trusted_proxies``, or None (``off``; not installed, or of another wire version, under ``auto``)."""
    if choice == "off" or PixelPath is None:
        if choice == "on":
            raise RuntimeError("the native edge fast path (pixelpipe-native) is not installed")
        return None
    if _WIRE_MISMATCH is not None:
        if choice == "on":
            raise RuntimeError(f"{_WIRE_MISMATCH}: rebuild it (make install)")
        log.warning(
            "%s: not used, the Python path serves every request (rebuild it: make install)", _WIRE_MISMATCH
        )
        return None
    proxies = [(net.network_address.packed, net.prefixlen) for net in trusted_proxies]
    path = PixelPath(list(keyring.keys), proxies)
    _paths.add(path)
    return path
