"""Strict decoding of the JSON records that travel on the bus (raw hits, notices). Pure.

A record is a JSON object with a version ``v`` and typed fields. Unknown fields are ignored (a newer writer
may add some; older readers carry on), missing or mistyped ones are an error of the caller's type.

Two ways to read one, which accept the same records: `typed_decoder` (msgspec, straight into the record's
dataclass, types checked in C: what runs on every record) and `strict_fields` (field by field: what says
why a record is refused, and reads the few records msgspec cannot, such as integers past 64 bits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import msgspec
import orjson

T = TypeVar("T")


class _Version(msgspec.Struct, frozen=True, gc=False):
    v: int  # required, unlike the records' own ``v``: a record must say which version it is


_decode_version: Final = msgspec.json.Decoder(_Version).decode


def version_tail(version: int) -> bytes:
    """How orjson ends every record of ``version`` (it writes a dataclass's fields in order, ``v`` last). In
    valid JSON these bytes at the very end can only be the top-level object's last member: ``"v"`` cannot
    be the tail of a longer string (its quote would be escaped) and the final brace closes the document. So
    a record that ends so and decodes says it is that version (of a repeated key the last one counts, in
    both decoders)."""
    return b',"v":%d}' % version


def typed_decoder(cls: type[T], version: int, checked: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """A decoder of ``cls`` records of ``version``: msgspec, strict (no int for a bool, no float or string for
    an int; unknown fields skipped); what it refuses goes to ``checked``, which raises with the reason."""
    fast = msgspec.json.Decoder(cls).decode
    tail = version_tail(version)

    def decode(raw: bytes) -> T:
        try:
            if raw.endswith(tail) or _decode_version(raw).v == version:
                return fast(raw)
        except (msgspec.DecodeError, AttributeError, TypeError):  # DecodeError: also ValidationError
            pass
        return checked(raw)

    return decode


def fast_constructor(record: type[T]) -> Callable[..., T]:
    """A constructor of a frozen, slotted dataclass that takes every field by keyword (no defaults) and sets
    the slots directly: a frozen dataclass's ``__init__`` goes through ``object.__setattr__`` per field,
    which on the edge's hot path cost more than a third of building the record. Same object, same checks
    (none): for code that already has every value, such as a decoded token or a hit as the edge saw it."""
    names = _field_names(record)
    build = _slot_filler(record, f"*, {', '.join(names)}", {name: name for name in names})
    build.__qualname__ = f"fast_constructor({record.__qualname__})"
    return build


def fast_replace(record: type[T], *changed: str) -> Callable[..., T]:
    """``dataclasses.replace(obj, **{name: value for name in changed})`` for a frozen, slotted dataclass, with
    exactly those fields changed (by keyword), the others copied slot by slot: a third of the cost, for a
    record replaced once per hit. Like `fast_constructor`, no checks."""
    names = _field_names(record)
    unknown = set(changed) - set(names)
    if unknown:
        raise ValueError(f"{record.__qualname__} has no fields {sorted(unknown)}")
    values = {name: name if name in changed else f"_source_.{name}" for name in names}
    replace = _slot_filler(record, f"_source_, *, {', '.join(changed)}", values)
    replace.__qualname__ = f"fast_replace({record.__qualname__}, {', '.join(changed)})"
    return replace


def _field_names(record: type) -> list[str]:
    return [f.name for f in dataclasses.fields(record)]


def _slot_filler(record: type[T], parameters: str, values: Mapping[str, str]) -> Callable[..., T]:
    """A generated function of ``parameters`` that makes a ``record`` without ``__init__`` and sets each slot
    to the expression ``values[name]`` (a parameter, or an attribute of one). Only the dataclass's own field
    names go into the source; the locals end in ``_`` so that no field name can shadow them."""
    namespace: dict[str, Any] = {"_new_": object.__new__, "_cls_": record}
    namespace.update({f"_set_{name}_": getattr(record, name).__set__ for name in values})
    source = f"def fill({parameters}):\n    _made_ = _new_(_cls_)\n"
    source += "".join(f"    _set_{name}_(_made_, {value})\n" for name, value in values.items())
    source += "    return _made_\n"
    exec(source, namespace)  # noqa: S102  # generated from the dataclass's own field names, nothing else
    fill: Callable[..., T] = namespace["fill"]
    return fill


def required_fields(record: type) -> frozenset[str]:
    """The fields of a record's dataclass that have no default: a record on the wire must carry them."""
    return frozenset(f.name for f in dataclasses.fields(record) if f.default is dataclasses.MISSING)


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
