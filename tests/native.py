"""The native fast path in tests: required under ``CI=true`` (the pipeline builds it), skipped elsewhere when
it is not built (a machine without cargo)."""

from __future__ import annotations

import os

import pytest

from ingest import native


def require_native() -> None:
    if native.available():
        return
    reason = "the native fast path (pixelpipe-native) is not installed: uv sync --group native (needs cargo)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)
