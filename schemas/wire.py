"""Strict decoding of the JSON records that travel on the bus (raw hits, notices). Pure.

A record is a JSON object with a version ``v`` and typed fields. Unknown fields are ignored (a newer writer
may add some; older readers carry on), missing or mistyped ones are an error of the caller's type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def strict_fields(
    raw: bytes,
    *,
    version: int,
    required: frozenset[str],
    types: Mapping[str, type],
    error: type[ValueError],
    what: str,
) -> dict[str, Any]:
    """The known fields of a ``what`` record, checked; raises ``error`` with the reason otherwise."""
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise error("not a JSON object")
    if obj.get("v") != version:
        raise error(f"unknown {what} version {obj.get('v')!r}")
    missing = required - obj.keys()
    if missing:
        raise error(f"missing fields: {', '.join(sorted(missing))}")
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        expected = types.get(name)
        if expected is None:
            continue
        # bool is an int in Python; keep the two apart.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise error(f"field {name} has the wrong type")
        fields[name] = value
    return fields
