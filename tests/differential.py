"""The differential check of a fast decoder against the checked reference one: on the same bytes both give
the same record, or both refuse with the same message."""

from __future__ import annotations

from collections.abc import Callable


def same_outcome(
    raw: bytes, slow: Callable[[bytes], object], fast: Callable[[bytes], object], refused: type[Exception]
) -> bool:
    """Asserts that ``fast`` decodes ``raw`` as ``slow`` does (the same record, or ``refused`` with the same
    message); whether it was a record."""
    outcomes: list[object] = []
    for decode in (slow, fast):
        try:
            outcomes.append(decode(raw))
        except refused as exc:
            outcomes.append(str(exc))
    slow_outcome, fast_outcome = outcomes
    assert fast_outcome == slow_outcome, raw
    return not isinstance(fast_outcome, str)
