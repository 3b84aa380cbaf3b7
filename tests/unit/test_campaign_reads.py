"""`api.campaign_reads.CampaignReads`: a campaign's value is computed again exactly when the signature of the
parts holding its rollup rows changes; nothing is kept for a campaign without rows or a failed computation."""

from __future__ import annotations

from typing import Any

import pytest

from api.campaign_reads import CampaignReads
from api.sql.common import Query


class Parts:
    """The store's answer to the signature query, as the test sets it."""

    def __init__(self) -> None:
        self.signature: tuple[int, int] = (11, 3)
        self.asked = 0

    def __call__(self, q: Query) -> list[tuple[Any, ...]]:
        assert "cityHash64(_part)" in q.sql
        assert q.parameters["campaign_id"] in ("c1", "c2")
        self.asked += 1
        return [self.signature]


def test_the_value_is_reused_while_the_parts_stay_and_computed_again_when_they_change() -> None:
    parts, reads, computed = Parts(), CampaignReads(), []

    def compute() -> int:
        computed.append(1)
        return len(computed)

    def read(campaign: str = "c1", variant: bool = False) -> int:
        return reads.read(parts, "db", "acme", campaign, variant=variant, compute=compute)

    assert [read(), read(), read()] == [1, 1, 1]
    assert read(variant=True) == 2  # another variant is another value
    parts.signature = (12, 3)  # a merge, an insert or an erasure wrote a new part
    assert [read(), read()] == [3, 3]
    assert read("c2") == 4
    assert parts.asked == 7  # every read asks for the signature


def test_nothing_is_kept_for_a_campaign_without_rows_or_a_failed_computation() -> None:
    parts, reads = Parts(), CampaignReads()
    parts.signature = (0, 0)
    values = iter(range(10))
    twice = [reads.read(parts, "db", "a", "c1", variant=0, compute=lambda: next(values)) for _ in "ab"]
    assert twice == [0, 1]
    parts.signature = (5, 1)

    def fail() -> int:
        raise LookupError("no campaign")

    with pytest.raises(LookupError):
        reads.read(parts, "db", "a", "c1", variant=0, compute=fail)
    assert reads.read(parts, "db", "a", "c1", variant=0, compute=lambda: 7) == 7


def test_the_oldest_campaign_leaves_first_beyond_the_bound() -> None:
    parts, reads = Parts(), CampaignReads(max_entries=2)
    for i in range(3):
        reads.read(parts, "db", "a", "c1", variant=i, compute=lambda i=i: i)
    assert reads.read(parts, "db", "a", "c1", variant=0, compute=lambda: 99) == 99  # variant 0 was dropped
    assert reads.read(parts, "db", "a", "c1", variant=2, compute=lambda: 99) == 2
    assert repr(reads) == "CampaignReads(2 kept)"


class PageParts:
    """The store's answer to the page's signature query (`campaigns_parts`), as the test sets it."""

    def __init__(self) -> None:
        self.signatures: dict[str, tuple[int, int]] = {"c1": (11, 3), "c2": (21, 4)}

    def __call__(self, q: Query) -> list[tuple[Any, ...]]:
        assert "cityHash64(_part)" in q.sql
        return [(c, *s) for c, s in self.signatures.items() if c in q.parameters["campaign_ids"]]


def test_a_page_of_campaigns_computes_only_those_whose_parts_changed_together() -> None:
    parts, reads, asked = PageParts(), CampaignReads(), []

    def compute(changed: list[str]) -> dict[str, str]:
        asked.append(changed)
        return {c: f"{c}@{parts.signatures.get(c, (0, 0))[0]}" for c in changed}

    def page(*ids: str) -> dict[str, str]:
        return reads.read_many(parts, "db", "a", list(ids), variant="list", compute=compute)

    assert page("c1", "c2", "c3") == {"c1": "c1@11", "c2": "c2@21", "c3": "c3@0"}
    assert page("c1", "c2", "c3") == {"c1": "c1@11", "c2": "c2@21", "c3": "c3@0"}
    parts.signatures["c2"] = (22, 5)  # an open of c2 wrote a part
    assert page("c2", "c1") == {"c2": "c2@22", "c1": "c1@11"}
    # c3 has no rollup rows: never kept, so computed each time; c2 once more after its change
    assert asked == [["c1", "c2", "c3"], ["c3"], ["c2"]]
    assert page() == {}
    assert reads.read(lambda q: [(11, 3)], "db", "a", "c1", variant="list", compute=lambda: "x") == "c1@11"
