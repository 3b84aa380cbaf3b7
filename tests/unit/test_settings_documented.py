"""The README's Configuration table lists exactly the settings `pixelpipe.settings` reads, each with its real
default and range: several changes add settings at once, and the table is where a user looks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
VARIABLE = re.compile(r"PIXELPIPE_[A-Z0-9_]+")


def _table() -> dict[str, str]:
    """Each documented variable -> its row's default column."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `PIXELPIPE_"):
            names, _, default = line.strip("|").split(" | ")[:3]
            rows.update(dict.fromkeys(VARIABLE.findall(names), default))
    return rows


def test_every_setting_read_is_documented_and_nothing_else() -> None:
    read = set(VARIABLE.findall((ROOT / "pixelpipe" / "settings.py").read_text()))
    assert set(_table()) == read


def test_each_bounded_number_is_documented_with_its_range() -> None:
    source = (ROOT / "pixelpipe" / "settings.py").read_text()
    bounded = re.findall(r'_int\(env, "(PIXELPIPE_[A-Z0-9_]+)", (.+?), ([\d_]+), ([\d_]+)\)', source)
    assert len(bounded) >= 15
    table = _table()
    for name, _, low, high in bounded:
        assert f"{int(low)}..{int(high)}" in table[name], name
