"""The environments the settings tests load: the two variables a deployment sets (`GOOD`) and a data
directory of the test's own; and `refusal`, the one check that a value `load` refuses is named by its
variable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from pixelpipe.settings import SettingsError, load

GOOD = {"PIXELPIPE_SECRET": "s" * 32, "PIXELPIPE_API_KEYS": "acme=key-12345678"}


def refusal(data_dir: Path, variable: str, value: str, base: Mapping[str, str] = GOOD) -> SettingsError:
    """What `load` raises for ``base`` with its data in ``data_dir`` and ``variable`` set to ``value``; it
    names ``variable``."""
    with pytest.raises(SettingsError) as info:
        load({**base, "PIXELPIPE_DATA_DIR": str(data_dir), variable: value})
    assert info.value.variable == variable
    return info.value
