"""The native fast path's wire version (`ingest.native`): a module that writes another version than
`schemas.events.SCHEMA_VERSION` (a stale build) is checked at load, and the edge does not use it: under
``auto`` a warning names both versions and the Python path serves; under ``on`` the edge refuses."""

from __future__ import annotations

import importlib.util
import logging
import sys
from types import ModuleType

import pytest

import ingest.native
from schemas.events import SCHEMA_VERSION
from schemas.tokens import Keyring
from tests.native import require_native

KEYS = Keyring(((1, b"k" * 32),))


class _PixelPath:
    def __init__(self, keys: object, proxies: object) -> None: ...

    def discard_random(self) -> None: ...  # the loaded copy's at-fork hook calls it


def _fake_module(**attributes: object) -> ModuleType:
    module = ModuleType("pixelpipe_native")
    module.PixelPath = _PixelPath  # type: ignore[attr-defined]
    for name, value in attributes.items():
        setattr(module, name, value)
    return module


def _load_with(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh load of `ingest.native` (under another name, the real one untouched) that imports
    ``module`` as ``pixelpipe_native``."""
    monkeypatch.setitem(sys.modules, "pixelpipe_native", module)
    spec = importlib.util.spec_from_file_location("ingest_native_under_test", ingest.native.__file__)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.mark.parametrize(
    ("attributes", "written"),
    [({"WIRE_VERSION": SCHEMA_VERSION + 1}, str(SCHEMA_VERSION + 1)), ({}, "(unstated)")],
    ids=["another", "unstated"],
)
def test_a_module_of_another_wire_version_is_declined_with_a_warning(
    attributes: dict[str, object],
    written: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    native = _load_with(_fake_module(**attributes), monkeypatch)
    reason = (
        f"the native edge fast path (pixelpipe-native) writes wire version {written}, "
        f"this edge writes {SCHEMA_VERSION}"
    )
    assert native.wire_mismatch(sys.modules["pixelpipe_native"]) == reason
    assert native.available()  # installed, but not used
    with caplog.at_level(logging.WARNING, logger="ingest_native_under_test"):
        assert native.pixel_path(KEYS, "auto") is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"{reason}: not used, the Python path serves every request (rebuild it: make install)")
    ]
    with pytest.raises(RuntimeError) as refused:
        native.pixel_path(KEYS, "on")
    assert str(refused.value) == f"{reason}: rebuild it (make install)"
    caplog.clear()
    assert native.pixel_path(KEYS, "off") is None
    assert caplog.records == []


def test_a_module_of_this_wire_version_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    native = _load_with(_fake_module(WIRE_VERSION=SCHEMA_VERSION), monkeypatch)
    assert native.wire_mismatch(sys.modules["pixelpipe_native"]) is None
    assert isinstance(native.pixel_path(KEYS, "auto"), _PixelPath)


def test_the_built_module_writes_the_wire_version_this_edge_writes(caplog: pytest.LogCaptureFixture) -> None:
    require_native()
    import pixelpipe_native

    assert pixelpipe_native.WIRE_VERSION == SCHEMA_VERSION
    assert ingest.native.wire_mismatch(pixelpipe_native) is None
    with caplog.at_level(logging.WARNING, logger="ingest.native"):
        assert isinstance(ingest.native.pixel_path(KEYS, "auto"), pixelpipe_native.PixelPath)
    assert caplog.records == []
