"""The house's rules, read from the source: which stage may import which, no import circle inside a stage,
and ARCHITECTURE.md's ownership table naming every module (issue 15)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("schemas", "bus", "ingest", "processors", "notices", "deliveries", "api", "pixelpipe")

# Who may import whom: down the hit's path, never up; the API reaches the live feed through `schemas/live.py`.
MAY_IMPORT = {
    "schemas": {"schemas"},
    "bus": {"bus", "schemas"},
    "ingest": {"ingest", "bus", "schemas"},
    "processors": {"processors", "bus", "schemas"},
    "notices": {"notices", "processors", "bus", "schemas"},
    "deliveries": {"deliveries", "ingest", "bus", "schemas"},
    "api": {"api", "schemas"},
    "pixelpipe": set(STAGES),
}


def _modules(stage: str) -> list[Path]:
    return sorted((ROOT / stage).rglob("*.py"))


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports (absolute names), at module level only when asked."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_what_lies_before_it(stage: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(stage)
        for name in _imports(path)
        if name.split(".")[0] in STAGES and name.split(".")[0] not in MAY_IMPORT[stage]
    }
    assert sorted(wrong) == []


def test_settings_import_no_stage_at_run_time_but_plain_values() -> None:
    # Reading the environment must not load a stage's runtime (the native module, Kafka, the store's client).
    stages = {n for n in _imports(ROOT / "pixelpipe" / "settings.py") if n.split(".")[0] in STAGES}
    assert {n for n in stages if n.split(".")[0] in ("ingest", "processors", "notices", "api", "bus")} <= {
        "ingest.connection_bounds",
        "ingest.connection_bounds.ConnectionBounds",
    }


@pytest.mark.parametrize("stage", STAGES)
def test_no_import_circle_inside_a_stage(stage: str) -> None:
    def name(path: Path) -> str:
        return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")

    modules = {name(p): p for p in _modules(stage)}
    graph = {
        m: {n for n in _imports(p, top_level_only=True) if n in modules and n != m}
        for m, p in modules.items()
    }
    circles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(" -> ".join([*path[path.index(n) :], n]))
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_the_ownership_table_names_every_module_in_its_own_row() -> None:
    table = (ROOT / "ARCHITECTURE.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)/` \|.*$", table, re.M)}
    missing = [
        str(path.relative_to(ROOT))
        for stage in STAGES
        for path in _modules(stage)
        if path.name != "__init__.py"
        and f"`{path.relative_to(ROOT / stage)}`" not in rows.get(stage, "")
        and f"`{path.name}`" not in rows.get(stage, "")
    ]
    assert missing == []
