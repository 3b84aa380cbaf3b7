"""Versioned ClickHouse DDL. Files are named ``NNNN_name.sql``; each is applied once, in order."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def migrations(database: str) -> list[Migration]:
    """Every migration, in version order, with ``{db}`` bound to the database name."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"database name {database!r} must be letters, digits and underscores")
    found = []
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(
                Migration(
                    int(number),
                    rest.removesuffix(".sql"),
                    _split(entry.read_text().replace("{db}", database)),
                )
            )
    return sorted(found, key=lambda m: m.version)
